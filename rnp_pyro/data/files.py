"""Where dataset files are found on disk, and how they are fetched and opened.

Named datasets are looked for, in order, in the ``data_dir`` argument, the folder named
by ``$RNP_PYRO_DATA`` and the cache folder (``$XDG_CACHE_HOME/rnp-pyro``, by default
``~/.cache/rnp-pyro``), in the layout torchvision uses (``ROOT/FashionMNIST/raw/``,
``ROOT/MNIST/raw/``, ``ROOT/omniglot-py/``). The four MNIST-style files, plain or
``.gz``, may also lie directly in ``data_dir``; Fashion-MNIST is also taken from the
Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``).
What is missing is downloaded by torchvision into the first writable of those roots.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import zlib
from pathlib import Path

from ..errors import DataError

ENV_VAR = "RNP_PYRO_DATA"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def search_roots(data_dir) -> list[Path]:
    """Where named datasets are looked for, in order, without repeats."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    roots = [data_dir, os.environ.get(ENV_VAR), Path(cache_home) / "rnp-pyro"]
    unique = []
    for root in roots:
        if root and Path(root).expanduser() not in unique:
            unique.append(Path(root).expanduser())
    return unique


def mnist_places(name: str, class_name: str, roots: list[Path], data_dir) -> list[Path]:
    """Folders that may hold ``name``'s four MNIST-format files, in the order they are tried."""
    places = [root / class_name / "raw" for root in roots]
    if data_dir is not None:
        places.insert(1, Path(data_dir).expanduser())  # the four files directly in data_dir
    if name == "fashion":
        places.append(DEBIAN_FASHION_MNIST)
    return places


def has_mnist_files(folder: Path) -> bool:
    return all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in MNIST_FILES)


def first_writable(roots: list[Path]) -> Path | None:
    for root in roots:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(root, os.W_OK):
            return root
    return None


def download_into_first_writable(make_dataset, roots: list[Path]):
    """``make_dataset(root)`` with torchvision downloading into the first writable root.

    Returns (dataset, None) or (None, why it failed).
    """
    root = first_writable(roots)
    if root is None:
        return None, "none of them is writable, so nothing could be downloaded"
    try:
        return make_dataset(root), None
    except (OSError, RuntimeError) as err:
        return None, f"downloading into {root} failed ({one_line(err)})"


def one_line(err: Exception, width: int = 200) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= width else text[:width] + "..."


def read_mnist_files(dataset_class, folder: Path, train: bool):
    """Let torchvision read the files in ``folder``, plain or gzipped, without writing there.

    torchvision reads plain files from ROOT/<Class>/raw/, so they are linked, or
    decompressed, into that layout in a temporary folder.
    """
    with tempfile.TemporaryDirectory(prefix="rnp-pyro-") as tmp:
        raw = Path(tmp, dataset_class.__name__, "raw")
        raw.mkdir(parents=True)
        for file in MNIST_FILES:
            plain = folder / file
            if plain.is_file():
                _link_or_copy(plain, raw / file)
            else:
                _gunzip(folder / f"{file}.gz", raw / file)
        try:
            return dataset_class(tmp, train=train)
        except (AssertionError, RuntimeError, ValueError, TypeError) as err:
            raise DataError(f"cannot read {dataset_class.__name__} files in {folder} "
                            f"({one_line(err)}); they are corrupt: delete them and "
                            f"download them again") from err


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        target.symlink_to(source.resolve())
    except OSError:
        shutil.copyfile(source, target)


def _gunzip(source: Path, target: Path) -> None:
    try:
        with gzip.open(source, "rb") as packed, open(target, "wb") as plain:
            shutil.copyfileobj(packed, plain)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{source} is corrupt or truncated ({one_line(err)}); "
                        f"delete it and download it again") from err

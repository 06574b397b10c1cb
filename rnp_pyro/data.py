"""Datasets as whole tensors: where they are found, how they are read, and synthetic strokes.

Every dataset here is small enough to keep whole on the training device, so training
slices minibatches out of one tensor (:func:`batches`) rather than running a DataLoader,
whose per-item collation and worker processes would cost more than the model step.

Named datasets are looked for, in order, in the ``data_dir`` argument, the folder named
by ``$RNP_PYRO_DATA`` and the cache folder (``$XDG_CACHE_HOME/rnp-pyro``, by default
``~/.cache/rnp-pyro``), in the layout torchvision uses (``ROOT/FashionMNIST/raw/``,
``ROOT/MNIST/raw/``, ``ROOT/omniglot-py/``). The four MNIST-style files, plain or
``.gz``, may also lie directly in ``data_dir``; Fashion-MNIST is also taken from the
Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``).
What is missing is downloaded by torchvision into the first writable of those roots.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import datasets
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms.functional import pil_to_tensor

from .spatial import warp

DATASETS = ("fashion", "mnist", "omniglot", "strokes", "folder:PATH", "scenes:NAME")
ENV_VAR = "RNP_PYRO_DATA"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
STROKES_SPLITS = {True: (10000, 0), False: (2000, 1)}  # train?: (size, seed)
MAX_STROKES = 4
SCENE_SEEDS = {True: 0, False: 1}  # train?: seed of the objects' placement

_MNIST_FAMILY = {"fashion": datasets.FashionMNIST, "mnist": datasets.MNIST}


class DataError(Exception):
    """A dataset that cannot be found or read, or images the model cannot take."""


@dataclass
class ImageSet:
    """Images as one float32 tensor (N, C, H, W) in [0, 1], with optional labels.

    ``parts`` (N, P, C, H, W) holds the true parts of synthetic images, zeros where an
    image has fewer than P parts.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    parts: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def _apply(self, fn) -> "ImageSet":
        keep = lambda t: None if t is None else fn(t)  # noqa: E731
        return dataclasses.replace(self, images=fn(self.images), labels=keep(self.labels),
                                   parts=keep(self.parts))

    def to(self, device) -> "ImageSet":
        """A copy with every tensor on ``device``."""
        return self._apply(lambda t: t.to(device))

    def subset(self, n: int) -> "ImageSet":
        """The first ``n`` images."""
        return self._apply(lambda t: t[:n])

    def filter_classes(self, classes=None, exclude=()) -> "ImageSet":
        """Only the images whose label is in ``classes`` (None: any) and not in ``exclude``."""
        if classes is None and not exclude:
            return self
        if self.labels is None:
            raise DataError(f"{self.name} has no labels to filter by; use a labelled dataset")
        keep = ~torch.isin(self.labels, torch.as_tensor(list(exclude), dtype=self.labels.dtype,
                                                        device=self.labels.device))
        if classes is not None:
            keep &= torch.isin(self.labels, torch.as_tensor(list(classes), dtype=self.labels.dtype,
                                                            device=self.labels.device))
        if not keep.any():
            raise DataError(f"no image of {self.name} is left after keeping classes {classes} "
                            f"and excluding {list(exclude)}; its labels are "
                            f"{sorted(self.labels.unique().tolist())}")
        return self._apply(lambda t: t[keep])


# ---------------------------------------------------------------------------- loading
def load_images(name: str, *, train: bool = True, data_dir: str | Path | None = None,
                image_size: int = 28, channels: int = 1, download: bool = True,
                limit: int | None = None) -> ImageSet:
    """The train or test images of a named dataset, resized to ``image_size``.

    ``name`` is one of fashion, mnist, omniglot, strokes, ``folder:PATH`` for a
    folder of images (optionally in one subfolder per class, and in ``train``/``test``
    subfolders to split them; otherwise both splits are the whole folder), or
    ``scenes:NAME`` for pairs of NAME's images placed on one canvas (:func:`compose_scenes`).
    Named datasets are grey; folder images are converted to ``channels``. ``limit``
    keeps only the first images.
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
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of fashion, mnist, omniglot, "
                        f"strokes, folder:PATH for a folder of images, or scenes:NAME for "
                        f"pairs of NAME's images on one canvas")
    if channels != 1:
        raise DataError(f"{name} is a grey dataset; set channels=1 "
                        f"(only folder:PATH datasets are converted to RGB)")
    if name == "strokes":
        size, seed = STROKES_SPLITS[train]
        strokes = draw_strokes(size if limit is None else min(size, limit),
                               image_size=image_size, seed=seed)
        return dataclasses.replace(strokes, name=f"strokes {split}")

    roots = _roots(data_dir)
    if name == "omniglot":
        pixels, labels = _read_omniglot(roots, train, download, limit)
    else:
        pixels, labels = _read_mnist_family(name, roots, data_dir, train, download, limit)
    return ImageSet(_to_unit_images(pixels, image_size), labels, f"{name} {split}")


def _roots(data_dir) -> list[Path]:
    """Where named datasets are looked for, in order, without repeats."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    roots = [data_dir, os.environ.get(ENV_VAR), Path(cache_home) / "rnp-pyro"]
    unique = []
    for root in roots:
        if root and Path(root).expanduser() not in unique:
            unique.append(Path(root).expanduser())
    return unique


def _first_writable(roots: list[Path]) -> Path | None:
    for root in roots:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(root, os.W_OK):
            return root
    return None


def _download(make_dataset, roots: list[Path]):
    """``make_dataset(root)`` with torchvision downloading into the first writable root.

    Returns (dataset, None) or (None, why it failed).
    """
    root = _first_writable(roots)
    if root is None:
        return None, "none of them is writable, so nothing could be downloaded"
    try:
        return make_dataset(root), None
    except (OSError, RuntimeError) as err:
        return None, f"downloading into {root} failed ({_one_line(err)})"


def _one_line(err: Exception, width: int = 200) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= width else text[:width] + "..."


def _read_mnist_family(name, roots, data_dir, train, download, limit):
    """uint8 images (N, 1, 28, 28) and labels, read by torchvision's MNIST classes."""
    dataset_class = _MNIST_FAMILY[name]
    places = [root / dataset_class.__name__ / "raw" for root in roots]
    if data_dir is not None:
        places.insert(1, Path(data_dir).expanduser())  # the four files directly in data_dir
    if name == "fashion":
        places.append(DEBIAN_FASHION_MNIST)

    found = next((place for place in places if _has_mnist_files(place)), None)
    if found is not None:
        dataset = _read_mnist_files(dataset_class, found, train)
    elif download:
        dataset, why = _download(lambda root: dataset_class(str(root), train=train, download=True),
                                 roots)
    else:
        dataset, why = None, "downloading is off (download=False)"
    if dataset is None:
        raise DataError(_missing_mnist_message(name, dataset_class, places, why))

    pixels, labels = dataset.data[:limit], dataset.targets[:limit]
    if len(pixels) != len(labels):
        raise DataError(f"{name}: {len(pixels)} images but {len(labels)} labels in "
                        f"{found or dataset.raw_folder}; delete the files there and get them again")
    return pixels.unsqueeze(1), labels


def _has_mnist_files(folder: Path) -> bool:
    return all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in MNIST_FILES)


def _read_mnist_files(dataset_class, folder: Path, train: bool):
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
                            f"({_one_line(err)}); they are corrupt: delete them and "
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
        raise DataError(f"{source} is corrupt or truncated ({_one_line(err)}); "
                        f"delete it and download it again") from err


def _missing_mnist_message(name, dataset_class, places, why) -> str:
    files = ", ".join(f"{f}.gz" for f in MNIST_FILES)
    get = (f"install the Debian package (apt-get install dataset-fashion-mnist), or "
           if name == "fashion" else "")
    return (f"{name} data not found: looked for {files} (or the same files uncompressed) "
            f"in {', '.join(map(str, places))}; {why}. To get it, {get}download those "
            f"four files from {dataset_class.mirrors[0]} into a folder and pass it as "
            f"data_dir (--data-dir) or set ${ENV_VAR}")


class _Omniglot(datasets.Omniglot):
    """torchvision's Omniglot that also accepts an extracted image folder without its zip."""

    def _check_integrity(self) -> bool:
        return Path(self.root, self._get_target_folder()).is_dir() or super()._check_integrity()


def _read_omniglot(roots, train, download, limit):
    """uint8 images (N, 1, 105, 105), inverted so strokes are bright, and character labels."""
    subset = "images_background" if train else "images_evaluation"
    places = [root / _Omniglot.folder / subset for root in roots]

    def make(root, fetch):
        return _Omniglot(str(root), background=train, download=fetch, transform=pil_to_tensor)

    found = next((place for place in places if place.is_dir()), None)
    if found is not None:
        dataset = make(found.parent.parent, fetch=False)
    elif download:
        dataset, why = _download(lambda root: make(root, fetch=True), roots)
    else:
        dataset, why = None, "downloading is off (download=False)"
    if dataset is None:
        raise DataError(
            f"omniglot data not found: looked for {', '.join(map(str, places))}; {why}. To get "
            f"it, unzip images_background.zip and images_evaluation.zip from "
            f"{_Omniglot.download_url_prefix} into DIR/{_Omniglot.folder}/ and pass DIR as "
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
            raise DataError(f"cannot read Omniglot image {index} in {source} ({_one_line(err)}); "
                            f"delete that folder and download it again") from err
        pictures.append(picture)
        labels.append(label)
    return 255 - torch.stack(pictures), torch.tensor(labels)


def _read_folder(folder: Path, train: bool, channels: int, image_size: int, limit):
    """Every image under ``folder``, converted and resized; labels from class subfolders."""
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
                pixels = pil_to_tensor(picture.convert(mode))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise DataError(f"cannot read image {path} ({_one_line(err)}); "
                            f"delete or replace it") from err
        images.append(_to_unit_images(pixels.unsqueeze(0), image_size)[0])
    labels = torch.tensor([classes.index(parts[0]) for parts in tops]) if labelled else None
    return torch.stack(images), labels


def _to_unit_images(pixels: torch.Tensor, image_size: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1] at ``image_size``, bilinear with antialiasing.

    Converted in chunks so that large sets never hold more than one float copy.
    """
    out = torch.empty(len(pixels), pixels.shape[1], image_size, image_size)
    for start in range(0, len(pixels), chunk):
        images = pixels[start:start + chunk].float().div_(255)
        if images.shape[-2:] != (image_size, image_size):
            images = F.interpolate(images, size=(image_size, image_size), mode="bilinear",
                                   antialias=True, align_corners=False).clamp_(0, 1)
        out[start:start + chunk] = images
    return out


# ---------------------------------------------------------------------------- strokes
def draw_strokes(n: int, *, image_size: int = 28, seed: int = 0) -> ImageSet:
    """``n`` grey images of 2 to 4 pen strokes, with each stroke's own image as ``parts``.

    A stroke is a straight line or a circular arc drawn under a random affine map
    (scale, rotation, shear, translation), antialiased through its distance field;
    an image is the sum of its strokes clipped to [0, 1]. The true parts make this the
    dataset on which a parse can be checked. Labels are the number of strokes. The same
    seed gives the same images, and a smaller ``n`` gives a prefix of a larger one.
    """
    if n < 1:
        raise DataError(f"draw_strokes needs a positive number of images, got {n}")
    generator = torch.Generator().manual_seed(seed)
    # one row of uniforms per image, drawn in one call so that rows do not depend on n
    uniforms = torch.rand(n, 1 + MAX_STROKES * 9, generator=generator)
    counts = 2 + (uniforms[:, 0] * (MAX_STROKES - 1)).long().clamp(max=MAX_STROKES - 2)
    strokes = uniforms[:, 1:].reshape(n, MAX_STROKES, 9)

    line = torch.linspace(-1, 1, image_size)
    grid = torch.stack(torch.meshgrid(line, line, indexing="xy"), -1).reshape(-1, 2)  # (HW, 2) x, y
    parts = torch.cat([_draw_stroke_chunk(chunk, grid, image_size)
                       for chunk in strokes.split(1000)])
    present = torch.arange(MAX_STROKES) < counts[:, None]
    parts = parts * present[:, :, None].float()
    parts = parts.reshape(n, MAX_STROKES, 1, image_size, image_size)
    images = parts.sum(1).clamp(max=1)
    return ImageSet(images, counts, "strokes", parts=parts)


def _draw_stroke_chunk(u: torch.Tensor, grid: torch.Tensor, image_size: int) -> torch.Tensor:
    """(n, P, 9) uniforms -> (n, P, HW) ink of each stroke."""
    is_line = u[..., 0] < 0.5
    half_span = math.pi / 4 + u[..., 1] * (3 * math.pi / 4)  # an arc spans 90 to 360 degrees
    scale = 0.25 + 0.35 * u[..., 2]  # half the stroke's length, in image units [-1, 1]
    aspect = torch.exp(0.5 * (u[..., 3] - 0.5))
    angle = math.pi * (2 * u[..., 4] - 1)
    shear = 0.6 * (u[..., 5] - 0.5)
    shift = 0.8 * (u[..., 6:8] - 0.5)
    width = (1.5 + u[..., 8]) * image_size / 28  # pen width in pixels

    # stroke frame -> image: A = R(angle) @ Shear(shear) @ diag(sx, sy), then + shift
    sx, sy = scale * aspect, scale / aspect
    cos, sin = torch.cos(angle), torch.sin(angle)
    a, b, c, d = cos * sx, (cos * shear - sin) * sy, sin * sx, (sin * shear + cos) * sy
    det = a * d - b * c
    inverse = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2)
    inverse = inverse / det[..., None, None]
    local = (grid - shift[:, :, None, :]) @ inverse.transpose(-1, -2)  # (n, P, HW, 2) stroke frame
    x, y = local.unbind(-1)

    line_distance = torch.hypot((x.abs() - 1).clamp(min=0), y)
    # a unit-circle arc over angles [-half_span, half_span], its extent centred on the origin;
    # a point is beside the arc when its angle is within the span, else nearest an end
    end_x, end_y = torch.cos(half_span)[..., None], torch.sin(half_span)[..., None]
    ax = x + (1 + end_x) / 2
    radius = torch.hypot(ax, y)
    beside = ax >= radius * end_x
    arc_distance = torch.where(beside, (radius - 1).abs(), torch.hypot(ax - end_x, y.abs() - end_y))

    distance = torch.where(is_line[..., None], line_distance, arc_distance)
    # back to pixels: the map's mean stretch, times pixels per image unit
    pixels = distance * det.abs().sqrt()[..., None] * (image_size - 1) / 2
    return (width[..., None] / 2 + 0.5 - pixels).clamp(0, 1)


# ---------------------------------------------------------------------------- scenes
def compose_scenes(objects: ImageSet, *, image_size: int = 48, per_scene: int = 2,
                   seed: int = 0, chunk: int = 2048) -> ImageSet:
    """Scenes of ``per_scene`` randomly transformed objects on an ``image_size`` canvas
    (the PNAS paper's pairs of digits, Fig. 4B), with each placed object as ``parts``.

    Scene i holds object i and ``per_scene - 1`` others chosen at random. Each is
    drawn 1/s of the canvas across, s uniform in [1.8, 2.4], turned by up to 30
    degrees either way, and centred anywhere its unturned box stays on the canvas;
    a scene is the sum of its objects clipped to [0, 1]. Labels are those of object i.
    The same seed and objects give the same scenes.
    """
    count = len(objects)
    if per_scene < 1 or (per_scene > 1 and count < 2):
        raise DataError(f"scenes of {per_scene} objects need at least 2 objects and "
                        f"per_scene >= 1; got {count} objects")
    generator = torch.Generator().manual_seed(seed)
    uniforms = torch.rand(count, per_scene, 5, generator=generator)
    others = (torch.arange(count)[:, None] + 1 +
              (uniforms[:, 1:, 0] * (count - 1)).long().clamp(max=count - 2)) % count
    which = torch.cat([torch.arange(count)[:, None], others], 1)  # (N, per_scene)

    scale = 1.8 + 0.6 * uniforms[..., 1]
    angle = (math.pi / 6) * (2 * uniforms[..., 2] - 1)
    centre = (1 - 1 / scale)[..., None] * (2 * uniforms[..., 3:5] - 1)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    linear = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    # canvas point p -> object frame: s R (p - centre)
    shift = -(linear @ centre[..., None])
    theta = torch.cat([linear, shift], -1)  # (N, per_scene, 2, 3)

    channels = objects.images.shape[1]
    parts = torch.empty(count, per_scene, channels, image_size, image_size)
    for start in range(0, count, chunk):
        rows = slice(start, start + chunk)
        drawn = warp(objects.images[which[rows]], theta[rows], image_size)
        parts[rows] = drawn.clamp_(0, 1)
    labels = None if objects.labels is None else objects.labels.clone()
    return ImageSet(parts.sum(1).clamp(max=1), labels, f"scenes of {objects.name}", parts=parts)


# ---------------------------------------------------------------------------- checks
def check_images(images, *, channels: int, image_size: int) -> None:
    """Raise a DataError saying what is wrong unless ``images`` is (N, C, H, W) float in [0, 1]."""
    expected = f"(N, {channels}, {image_size}, {image_size})"
    if not isinstance(images, torch.Tensor):
        raise DataError(f"images must be a torch.Tensor, got {type(images).__name__}; "
                        f"convert with torch.as_tensor(images)")
    if images.ndim != 4:
        raise DataError(f"images must be 4-D {expected}, got shape {tuple(images.shape)}; reshape "
                        f"them, e.g. images.reshape(-1, {channels}, {image_size}, {image_size})")
    if not images.is_floating_point():
        raise DataError(f"images must be floating point in [0, 1], got {images.dtype}; "
                        f"convert with images.float() / 255")
    count, found_channels, height, width = images.shape
    if count == 0:
        raise DataError(f"no images: got shape {tuple(images.shape)}; pass at least one image")
    if found_channels != channels:
        raise DataError(f"images have {found_channels} channels, expected {channels}; convert "
                        f"them or set channels={found_channels}")
    if (height, width) != (image_size, image_size):
        raise DataError(f"images are {height}x{width}, expected {image_size}x{image_size}; "
                        f"resize them (e.g. torch.nn.functional.interpolate) or set image_size")
    bad = (~torch.isfinite(images)).sum().item()
    if bad:
        raise DataError(f"images contain {bad} NaN or infinite values; "
                        f"replace or drop those images")
    low, high = images.min().item(), images.max().item()
    if low < 0 or high > 1:
        if low >= 0 and high <= 255:
            fix = "divide by 255"
        elif low >= -1 and high <= 1:
            fix = "map [-1, 1] to [0, 1] with (images + 1) / 2"
        else:
            fix = "rescale them, e.g. (images - images.min()) / (images.max() - images.min())"
        raise DataError(f"pixels must be in [0, 1]; found min {low:.3g} max {high:.3g}: {fix}")


# ---------------------------------------------------------------------------- batches
def batch_indices(count: int, batch_size: int, *, shuffle: bool,
                  generator: torch.Generator | None = None, device=None):
    """Index tensors of minibatches over ``count`` items, the last one possibly smaller.

    Shuffled order comes from ``generator`` (on any device) and covers every index once;
    the indices end up on ``device``.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be positive, got {batch_size}")
    if shuffle:
        gen_device = generator.device if generator is not None else device
        order = torch.randperm(count, generator=generator, device=gen_device).to(device)
    else:
        order = torch.arange(count, device=device)
    yield from order.split(batch_size)


def batches(images: torch.Tensor, batch_size: int, *, shuffle: bool,
            generator: torch.Generator | None = None, labels: torch.Tensor | None = None):
    """Minibatches of a tensor kept whole on its device (see :func:`batch_indices`).

    Yields image batches, or (images, labels) pairs when ``labels`` (on the same device)
    is given.
    """
    if labels is not None and len(labels) != len(images):
        raise DataError(f"{len(images)} images but {len(labels)} labels; pass one label per image")
    for index in batch_indices(len(images), batch_size, shuffle=shuffle, generator=generator,
                               device=images.device):
        yield images[index] if labels is None else (images[index], labels[index])

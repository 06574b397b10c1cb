"""Datasets as whole tensors: named datasets found on disk, synthetic ones, checks, batches.

Every dataset is small enough to keep whole on the training device, so training slices
minibatches out of one tensor instead of running a DataLoader. The modules:
:mod:`~rnp_pyro.data.images` holds what every dataset shares (:class:`ImageSet`,
:func:`check_images`, :func:`batches`); failures are :class:`~rnp_pyro.errors.DataError`;
:mod:`~rnp_pyro.data.files` finds the files on disk or downloads them;
:mod:`~rnp_pyro.data.named` reads each named dataset (:func:`load_images`);
:mod:`~rnp_pyro.data.synthetic` draws strokes and composes scenes.
"""

from .files import DEBIAN_FASHION_MNIST, ENV_VAR, MNIST_FILES
from ..errors import DataError
from .images import ImageSet, batch_indices, batches, check_images, unit_images
from .named import DATASETS, SCENE_SEEDS, STROKES_SPLITS, load_images
from .synthetic import MAX_STROKES, compose_scenes, draw_strokes, tint

__all__ = [
    "ImageSet", "DataError", "load_images", "check_images", "unit_images", "batch_indices",
    "batches",
    "draw_strokes", "compose_scenes", "tint",
    "DATASETS", "ENV_VAR", "DEBIAN_FASHION_MNIST", "MNIST_FILES", "STROKES_SPLITS",
    "SCENE_SEEDS", "MAX_STROKES",
]

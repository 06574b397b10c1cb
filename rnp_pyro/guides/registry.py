"""Guides by name: the settings a run config keeps for its guide, the registry of guide
classes, and what each class declares it supports.

A research script adds a guide in one file::

    @rnp_pyro.guides.register
    class MyGuide(rnp_pyro.guides.EncoderGuide):
        name = "mine"

after which ``GuideConfig(kind="mine")``, ``fit --guide mine`` (from a script that
calls ``rnp_pyro.cli.main()``) and ``evaluate --guide mine`` build it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from ..errors import ConfigError, check_fields

_CLASSES: dict[str, type] = {}
STOCHASTIC_LEVELS = ("optional", "required", "unsupported")


class Guide:
    """What the library asks of a guide class it finds by name; mix it into a PyroModule.

    Every guide takes the model's arguments ``(x, indices=None, dataset_size=None)``.
    """

    name: ClassVar[str] = ""
    # keeps parameters per dataset image: called with the batch's indices and the
    # dataset size, and fitted anew to test images
    per_image: ClassVar[bool] = False
    # the same parameters serve every image, so data-parallel processes can share them
    data_parallel: ClassVar[bool] = False
    # a model with stochastic per-level latents: "optional" (works with or without),
    # "required" (infers them) or "unsupported"
    stochastic_levels: ClassVar[str] = "optional"
    # a training step with it is the same device work every time (a CUDA graph can
    # capture it)
    graph_capturable: ClassVar[bool] = False

    @classmethod
    def from_config(cls, model, config: "GuideConfig", *, example=None,
                    dataset_size: int | None = None, bf16_encoder: bool = False):
        """A fresh guide for ``model``. Per-image guides lay out their parameters for
        ``dataset_size`` images from an ``example`` batch."""
        return cls(model)


def register(cls: type) -> type:
    """Make a guide class (a :class:`Guide` with a ``name``) available by that name; a
    class decorator. A later class of the same name replaces the earlier one."""
    if not (isinstance(cls, type) and issubclass(cls, Guide)) or not cls.name:
        raise TypeError(f"register takes a subclass of rnp_pyro.guides.Guide with a name; "
                        f"got {cls!r}")
    if cls.stochastic_levels not in STOCHASTIC_LEVELS:
        raise TypeError(f"{cls.__name__}.stochastic_levels must be one of {STOCHASTIC_LEVELS}")
    _CLASSES[cls.name] = cls
    return cls


def guide_class(name: str) -> type:
    """The guide class registered as ``name``."""
    if name not in _CLASSES:
        raise ConfigError(f"unknown guide {name!r}; choose one of {', '.join(names())}, or "
                          f"register your own with rnp_pyro.guides.register")
    return _CLASSES[name]


def guide_for_model(name: str, stochastic_levels: bool) -> type:
    """The guide class ``name``, after checking it can guide a model with (or without)
    stochastic per-level latents."""
    cls = guide_class(name)
    if cls.stochastic_levels == "required" and not stochastic_levels:
        raise ConfigError(f"the {name} guide infers the per-level latents: it needs "
                          f"stochastic_levels=True")
    if cls.stochastic_levels == "unsupported" and stochastic_levels:
        raise ConfigError(f"the {name} guide does not support stochastic per-level latents: "
                          f"set stochastic_levels=False")
    return cls


def names() -> list[str]:
    """The names of the registered guides, in the order they were registered."""
    return list(_CLASSES)


def is_per_image(guide) -> bool:
    """Whether a guide (any callable) keeps parameters per dataset image."""
    return bool(getattr(guide, "per_image", False))


def keeps_positions(guide) -> bool:
    """Whether a guide knows images only by their position in the batch it was built on:
    Pyro's autoguides other than the library's per-image ones. Such a guide is fitted
    and evaluated on its whole set of images as one batch; a smaller batch would be
    given the parameters of other images."""
    from pyro.infer.autoguide import AutoGuide

    return isinstance(guide, AutoGuide) and not is_per_image(guide)


@dataclass(frozen=True)
class GuideConfig:
    """Which guide a run trains, and the settings of its networks."""

    kind: str = "encoder"  # a registered guide's name (names())
    encoder_channels: int = 32
    encoder_convs: int = 4  # 5x5 valid convolutions
    encoder_blocks: int = 4  # ResNet BasicBlocks
    encoder_dense: tuple[int, ...] = (64, 64, 64)
    refine_steps: int = 20  # "refined" guide: Adam steps on each image's own ELBO ...
    refine_lr: float = 0.05  # ... with this step size, over (loc, log scale) of q(z^K | x)
    # "ladder" guide: side in pixels of the crops of x its crop encoder reads under each
    # node (None: half the image's). A part covers 1/scale of its parent's frame
    # (scale >= scale_offset), so a crop of half the image's side still samples x about
    # as finely as the image holds the part, for a quarter of the work of a full one
    crop_size: int | None = None

    def __post_init__(self):
        check_fields(self)
        guide_class(self.kind)
        if self.encoder_convs < 0 or self.encoder_blocks < 0:
            raise ConfigError(f"encoder_convs and encoder_blocks must be 0 or more; got "
                              f"{self.encoder_convs}, {self.encoder_blocks}")
        if self.encoder_channels < 1 or min(self.encoder_dense, default=1) < 1:
            raise ConfigError(f"encoder_channels and the encoder_dense widths must be at least "
                              f"1; got {self.encoder_channels}, {self.encoder_dense}")
        if self.crop_size is not None and self.crop_size < 4:
            raise ConfigError(f"crop_size must be at least 4 pixels (or None for half the "
                              f"image's side), got {self.crop_size}")
        if self.refine_steps < 0 or self.refine_lr <= 0:
            raise ConfigError(f"refine_steps must be 0 or more and refine_lr positive; got "
                              f"{self.refine_steps}, {self.refine_lr}")

    @property
    def guide_class(self) -> type:
        return guide_class(self.kind)

    def replace(self, **changes) -> "GuideConfig":
        return dataclasses.replace(self, **changes)

    def encoder_options(self) -> dict:
        """Keyword arguments of :class:`rnp_pyro.encoder.ResNetEncoder`."""
        return dict(width=self.encoder_channels, convs=self.encoder_convs,
                    blocks=self.encoder_blocks, dense=self.encoder_dense)

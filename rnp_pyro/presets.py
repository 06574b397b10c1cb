"""Named configurations taken from the papers and the authors' code.

``get(name, **overrides)`` returns a fresh :class:`~rnp_pyro.config.RunConfig`, the
overrides given by flat names (``z_dim=32``, ``lr=1e-3``, ``guide="ladder"``). Sources:
PNAS Nexus 2023 (|z| = 8-16 for MNIST/Fashion-MNIST, 64 for Omniglot, four parts in
the figures, Adam 1e-4, 200 epochs, 400 for Omniglot), the NeurIPS workshop paper
(|z| = 32 for MNIST and Fashion-MNIST) and the authors' scripts (scale offsets 1.6 to
2.4, beta = 0.1, lr x0.67 every 50 epochs, batch 64).

Fashion-MNIST's objects fill most of the frame, so its preset takes the largest
latent (32) and the smallest scale offset (1.6) the authors used: parts may then
cover up to 1/1.6 of their parent per axis. Its leaves are drawn at most 28/1.6^2,
about 11 pixels across, so it decodes 10x10 leaf patches instead of the papers'
full-size ones: placement then uses every patch pixel, and training is faster.
With patches that small, generating each node's patch decoder (6,400 numbers) is
cheaper than applying it unmaterialised, so these presets materialise it. One-epoch
runs and timings comparing these choices are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

from pathlib import Path

from .config import ConfigError, RunConfig

_SMALL_PATCHES = dict(patch_size=10, materialize_weights=True)

_PRESETS: dict[str, dict] = {
    # three latent levels (digit/object, parts, sub-parts), four steps per program
    "fashion": dict(dataset="fashion", z_dim=32, taus=(4, 4), scale_offset=1.6, **_SMALL_PATCHES),
    # the MNIST model of the authors' code: |z| = 16, four steps per program, parts at
    # most half their parent's size (scale offset 2.0), so 10x10 leaf patches suffice
    "mnist": dict(dataset="mnist", z_dim=16, taus=(4, 4), scale_offset=2.0, **_SMALL_PATCHES),
    "omniglot": dict(dataset="omniglot", z_dim=64, taus=(4, 4), epochs=400),
    # procedural strokes: small and quick, for tests and demos
    "strokes": dict(dataset="strokes", z_dim=8, taus=(3, 3), epochs=20, lr=1e-3),
    # four latent levels (the depth of the PNAS paper's pairs-of-digits model),
    # tau = 3 at every level, on Fashion-MNIST
    "fashion4": dict(dataset="fashion", z_dim=32, taus=(3, 3, 3), scale_offset=1.6,
                     **_SMALL_PATCHES),
    # pairs of objects on a 48-pixel canvas (the PNAS paper's Fig. 4B): the
    # fashion4 tree, whose top program places whole objects
    "scenes": dict(dataset="scenes:fashion", image_size=48, z_dim=32, taus=(3, 3, 3),
                   scale_offset=1.6, **_SMALL_PATCHES),
    # the NeurIPS workshop paper's model on Fashion-MNIST: one hypernetwork H (six
    # layers of 64, ELU) whose seven heads make both streams; a shared three-layer
    # encoder of the last patch and action; three-layer decoders D and T; each parent
    # reads its child program's drawing (its Fig. 2b); its eq. 1, which adds the part
    # loss with weight 1 (each part's drawing against its crop of x); an encoder of
    # five ResNet blocks and four dense layers of 64; |z| = 32 and Adam at 4e-5, as there
    "workshop": dict(dataset="fashion", z_dim=32, taus=(4, 4), scale_offset=1.6,
                     hypernetworks=1, hyper_state_layers=5, program_encoder=(64, 64, 64),
                     three_layer_decoders=True, program_input="patch",
                     parent_input="child_output", part_loss_lambda=1.0, part_loss="composite",
                     encoder_blocks=5, encoder_dense=(64, 64, 64, 64), lr=4e-5,
                     **_SMALL_PATCHES),
    # the PNAS text's reading of the same model: programs read their last decoded
    # patch (its Fig. 5), every part is decoded, and eq. 2 compares each part's own
    # patch with the crop of x under its action, its weight ramped up over training
    "pnas-parts": dict(dataset="fashion", z_dim=32, taus=(4, 4), scale_offset=1.6,
                       program_input="patch", decode_parts=True, part_loss="patch",
                       part_loss_lambda=0.01, part_loss_ramp=50, **_SMALL_PATCHES),
    # coloured objects as in the PNAS paper's ETH-80 model (|z| = 32, four parts, RGB
    # canvases of 50 pixels); the data is a folder: fit --dataset folder:PATH --preset eth80
    "eth80": dict(dataset="folder:eth80", channels=3, image_size=50, z_dim=32, taus=(4, 4)),
    # Fashion-MNIST with each image in a colour of its own, on the eth80 canvas: the
    # target of that model's transfer (PNAS, with H_state frozen)
    "fashion-tinted": dict(dataset="tinted:fashion", channels=3, image_size=50, z_dim=32,
                           taus=(4, 4)),
}


def names() -> list[str]:
    return sorted(_PRESETS)


def get(name: str, **overrides) -> RunConfig:
    """The preset ``name`` with ``overrides`` applied."""
    if name not in _PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(names())}")
    return RunConfig().replace(**{**_PRESETS[name], **overrides})


def for_dataset(dataset: str, **overrides) -> RunConfig:
    """The preset for a dataset name (``scenes:NAME`` uses the scenes settings,
    ``tinted:NAME`` the fashion-tinted ones, omniglot-evaluation the omniglot ones,
    ``folder:PATH`` the fashion ones)."""
    prefixes = {"scenes:": "scenes", "tinted:": "fashion-tinted", "omniglot-": "omniglot"}
    base = dataset if dataset in _PRESETS else next(
        (preset for prefix, preset in prefixes.items() if dataset.startswith(prefix)), "fashion")
    return get(base, dataset=dataset, **overrides)


def truncation(source: RunConfig, source_dir: str | Path, levels: int = 1,
               **overrides) -> RunConfig:
    """Settings that start from the run ``source`` (its config) in ``source_dir`` with
    its top ``levels`` program levels cut off (the PNAS paper's Fig. 4C): the same
    networks below them, a fresh guide, and the hypernetworks frozen unless ``freeze``
    says otherwise.

    The dataset, epochs and the rest come from the source run unless overridden; the
    canvas keeps its size, so a lower level draws in a frame as large as the image.
    """
    taus = source.model.taus
    if source.model.kind != "rnp":
        raise ConfigError(f"{source_dir} holds a {source.model.kind} model; only an RNP has a "
                          f"tree to truncate")
    if not 1 <= levels < len(taus):
        raise ConfigError(f"{source_dir} has {len(taus)} program levels (taus {taus}); "
                          f"truncate 1 to {len(taus) - 1} of them, not {levels}")
    hypernetworks = ("hyper_state", "hyper_policy") if source.model.hypernetworks == 2 else ("hyper",)
    fresh = dict(init_from=str(Path(source_dir).resolve()), truncate=levels, taus=taus[levels:],
                 freeze=hypernetworks, classes=None, exclude_classes=(),
                 notes={})
    return source.replace(**{**fresh, **overrides})

"""Named configurations taken from the papers and the authors' code.

``get(name, **overrides)`` returns a fresh :class:`RNPConfig`. Sources:
PNAS Nexus 2023 (|z| = 8-16 for MNIST/Fashion-MNIST, 64 for Omniglot, four parts in
the figures, Adam 1e-4, 200 epochs, 400 for Omniglot), the NeurIPS workshop paper
(|z| = 32 for MNIST and Fashion-MNIST) and the authors' scripts (scale offsets 1.6 to
2.4, beta = 0.1, lr x0.67 every 50 epochs, batch 64).

Fashion-MNIST's objects fill most of the frame, so its preset takes the largest
latent (32) and the smallest scale offset (1.6) the authors used: parts may then
cover up to 1/1.6 of their parent per axis. Its leaves are drawn at most 28/1.6^2,
about 11 pixels across, so it decodes 10x10 leaf patches instead of the papers'
full-size ones: placement then uses every patch pixel, and training is faster.
One-epoch runs comparing these choices are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

from .config import ConfigError, RNPConfig

_PRESETS: dict[str, dict] = {
    # three latent levels (digit/object, parts, sub-parts), four steps per program
    "fashion": dict(dataset="fashion", z_dim=32, taus=(4, 4), scale_offset=1.6, patch_size=10),
    "mnist": dict(dataset="mnist", z_dim=16, taus=(3, 3)),
    "omniglot": dict(dataset="omniglot", z_dim=64, taus=(4, 4), epochs=400),
    # procedural strokes: small and quick, for tests and demos
    "strokes": dict(dataset="strokes", z_dim=8, taus=(3, 3), epochs=20, lr=1e-3),
    # four latent levels (the depth of the PNAS paper's pairs-of-digits model),
    # tau = 3 at every level, on Fashion-MNIST
    "fashion4": dict(dataset="fashion", z_dim=32, taus=(3, 3, 3), scale_offset=1.6,
                     patch_size=10),
}


def names() -> list[str]:
    return sorted(_PRESETS)


def get(name: str, **overrides) -> RNPConfig:
    """The preset ``name`` with ``overrides`` applied."""
    if name not in _PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(names())}")
    return RNPConfig(**{**_PRESETS[name], **overrides})


def for_dataset(dataset: str, **overrides) -> RNPConfig:
    """The preset for a dataset name (``folder:PATH`` uses the fashion settings)."""
    base = dataset if dataset in _PRESETS else "fashion"
    return get(base, dataset=dataset, **overrides)

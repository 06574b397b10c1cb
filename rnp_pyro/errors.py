"""The errors a user can cause and fix: each says what was wrong and what to do.

The command line prints them as one ``Error:`` line; anything else is a bug.
"""

import dataclasses
import math


class ConfigError(ValueError):
    """Settings that cannot describe a model, a guide, data or a training run."""


class DataError(ValueError):
    """A dataset that cannot be found or read, or images the model cannot take."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged, or belongs to another configuration."""


class DataParallelError(RuntimeError):
    """A process of a data-parallel run failed; the message is its error's."""


class TrainingDiverged(RuntimeError):
    """So many steps in a row were not finite that training cannot go on as set."""


class RunStopped(Exception):
    """A run stopped by a signal (SIGTERM, or SIGINT from Ctrl-C) at a step boundary,
    after saving its checkpoint."""

    def __init__(self, message: str, signal_name: str):
        super().__init__(message)
        self.signal_name = signal_name


EXPECTED_ERRORS = (ConfigError, DataError, CheckpointError, DataParallelError, TrainingDiverged)


def check_fields(settings) -> None:
    """Raise a ConfigError naming the field unless every field of a (frozen) settings
    dataclass holds its declared type: a whole number, a finite number, true or false,
    text, a list of those, or None where allowed. Lists (as JSON gives them) become
    tuples."""
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        kind = str(field.type)  # a string: the settings modules postpone annotations
        optional = kind.endswith(" | None")
        kind = kind.removesuffix(" | None")
        if kind.startswith("tuple[") and isinstance(value, list):
            value = tuple(value)
            object.__setattr__(settings, field.name, value)
        if value is None:
            if not optional:
                raise ConfigError(f"{field.name} must be given; got None")
            continue
        if kind.startswith("tuple["):
            check, _, wanted = _KINDS[kind[len("tuple["):].split(",")[0].rstrip("]")]
            ok = isinstance(value, tuple) and all(check(v) for v in value)
        else:
            check, wanted, _ = _KINDS[kind]
            ok = check(value)
        if not ok:
            raise ConfigError(f"{field.name} must be {wanted}{' or None' if optional else ''}; "
                              f"got {value!r}")


def check_count(name: str, value) -> None:
    """Raise a ConfigError naming ``name`` unless ``value`` is a whole number of at least 1
    (a count of steps, samples or images)."""
    if not _is_whole(value) or value < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# declared type -> (check, what one is, what a list of them is)
_KINDS = {
    "int": (_is_whole, "a whole number",
            "a list of whole numbers"),
    "float": (_is_number, "a finite number", "a list of finite numbers"),
    "bool": (lambda v: isinstance(v, bool), "true or false", "a list of true or false"),
    "str": (lambda v: isinstance(v, str), "text", "a list of names"),
    "dict": (lambda v: isinstance(v, dict), "a mapping", "a list of mappings"),
}

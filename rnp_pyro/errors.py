"""The errors a user can cause and fix: each says what was wrong and what to do.

The command line prints them as one ``Error:`` line; anything else is a bug.
"""


class ConfigError(ValueError):
    """Settings that cannot describe a model, a guide, data or a training run."""


class DataError(Exception):
    """A dataset that cannot be found or read, or images the model cannot take."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged, or belongs to another configuration."""


class DataParallelError(RuntimeError):
    """A process of a data-parallel run failed; the message is its error's."""


EXPECTED_ERRORS = (ConfigError, DataError, CheckpointError, DataParallelError)

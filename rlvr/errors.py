"""User-facing errors. The CLI turns these into one line on stderr and exit status 2 (no traceback unless --debug)."""


class UserError(Exception):
    """A problem with the user's input (recipe, data, model path). Message names the field, the value and the fix."""

    exit_code = 2


class ConfigError(UserError):
    """The recipe or a CLI override is invalid."""


class DataError(UserError):
    """The dataset is missing, unreadable, or lacks a required column."""


class ModelError(UserError):
    """The model cannot be found or loaded."""

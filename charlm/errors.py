"""Errors a user can cause and fix. The CLI prints their message on one line and exits 1."""


class CharlmError(Exception):
    """Base class: the message names the problem and the fix."""

    exit_code = 1


class CorpusError(CharlmError):
    """The training or validation text is missing, empty, unreadable or too small."""


class ModelFileError(CharlmError):
    """A model file is missing, corrupt, from a newer version or inconsistent."""


class OptionError(CharlmError):
    """An option value is out of range (a usage error: exit status 2)."""

    exit_code = 2


class DivergenceError(CharlmError):
    """Training produced NaN/inf repeatedly and could not recover."""


class MetricsError(CharlmError):
    """A training metrics file is missing, unreadable or has nothing to plot."""


class MissingExtraError(CharlmError):
    """An optional dependency (an extra such as charlm[plot]) is not installed."""

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


def read_error(error: type[CharlmError], path, exc: OSError, instead: str,
               missing: str | None = None) -> CharlmError:
    """An `error` for `exc`, raised opening or reading `path`: what went wrong, then the fix.

    instead: the other way out, offered after each fix (e.g. "pass a model file with -m/--model");
    missing: the whole message for a file that does not exist, where "no such file" says too little.
    """
    if isinstance(exc, FileNotFoundError):
        return error(missing or f"no such file: {path}: check the path or {instead}")
    if isinstance(exc, IsADirectoryError):
        return error(f"{path} is a directory: {instead}")
    if isinstance(exc, PermissionError):
        return error(f"cannot read {path}: permission denied: make it readable (chmod +r) or {instead}")
    return error(f"cannot read {path}: {exc.strerror or exc}: check the file or {instead}")


def write_error(error: type[CharlmError], path, exc: OSError, instead: str) -> CharlmError:
    """An `error` for `exc`, raised creating or writing `path`; instead: the other way out
    (e.g. "choose another -o/--output")."""
    return error(f"cannot write {path}: {exc.strerror or exc}: {instead}")

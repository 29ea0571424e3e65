"""What every command shares: the stderr console, the model option, turning library errors
into one line on stderr and an exit status, and text cleaning for arguments."""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

from charlm.io.checkpoint import MODEL_ENVVAR
from charlm.errors import CharlmError, OptionError


class _Console(Console):
    """Rich's default on a closed pipe is exit status 1 (and /dev/null on stdout, even for a
    stderr console). Here a closed stderr only silences the messages for people (a training
    run goes on and saves), and a closed stdout ends the command quietly via user_errors."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _silence(self.file)
        if not self.stderr:
            raise BrokenPipeError


err = _Console(stderr=True, highlight=False)

ModelOpt = Annotated[
    Optional[str],
    typer.Option("-m", "--model", metavar="MODEL", envvar=MODEL_ENVVAR, show_envvar=True,
                 help="Model file. \\[default: ./charlm.safetensors]"),
]


ThreadsOpt = Annotated[
    Optional[int],
    typer.Option("--threads", envvar="CHARLM_THREADS", show_envvar=True, min=1,
                 help="Threads to compute on; results are the same for any count. \\[default: all cores]"),
]


def use_threads(count: int | None) -> None:
    """Compute on `count` threads (None: the default, every core this process may use)."""
    from charlm.nn.stack import set_threads

    set_threads(count)


# ---- error handling at the edge ----------------------------------------------------------
@contextmanager
def user_errors():
    """CharlmError -> one line on stderr + exit status; a closed stdout ends quietly.

    Under MPI (charlm.train.distributed), a rank that fails says which it is and ends every rank:
    the others would otherwise wait for it forever."""
    try:
        yield
    except CharlmError as exc:
        fail(str(exc), exc.exit_code)
    except BrokenPipeError:
        _silence(sys.stdout)
        raise typer.Exit(0) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if ranks().size == 1:
            raise
        import traceback

        traceback.print_exc()
        fail(f"{type(exc).__name__}: {exc}", 1)


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr, then exit with `code` (under MPI, every rank ends)."""
    where = ranks()
    prefix = f"rank {where.rank} of {where.size}: " if where.size > 1 else ""
    err.print(f"[red]error:[/] {escape(prefix + message)}", soft_wrap=True)
    if where.size > 1:
        where.abort(code)
    raise typer.Exit(code) from None


def ranks():
    """This process's place among MPI ranks (charlm.train.distributed.world: MPI is imported only
    when an MPI launcher started the process)."""
    from charlm.train.distributed import world

    return world()


def _silence(stream) -> None:
    """After EPIPE, point the stream's file descriptor at /dev/null so that later writes and
    the interpreter's final flush stay quiet."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. in tests)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _valid_text(text: str) -> str:
    """Undecodable bytes (surrogate escapes from argv or a non-UTF-8 locale) -> U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def parse_duration(text: str | None) -> float | None:
    """'90s', '10m', '1.5h', '45' (seconds) -> seconds."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", text.lower())
    if not m:
        raise OptionError(f"--time {text!r} is not a duration: use e.g. 90s, 10m or 1.5h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


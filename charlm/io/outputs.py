"""The files a training run writes (the model given by -o/--output and its sidecars): checked
before the corpus is read, and written by one run at a time.

A symbolic link at -o is followed: the run writes the file it points to (atomically, by a
rename beside it), and the sidecars go beside that file. A directory, a device, a FIFO or a
socket is refused. One run per output: `RunLock` holds an exclusive `flock` on NAME.lock
beside the model for the whole run.
"""

from __future__ import annotations

import fcntl
import os
import stat

from charlm.errors import CharlmError, OptionError

# Attempts at locking when the holder removes the lock file just as it is opened.
LOCK_ATTEMPTS = 10


def follow_link(path: str) -> str:
    """The file a symbolic link points to (its target, even a missing one); other paths as given."""
    return os.path.realpath(path) if os.path.islink(path) else path


def special_kind(path: str) -> str | None:
    """What `path` is when it exists and is not a regular file ("a directory", ...), else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing (or a dangling link): a new file will be created
        return None
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), None)


def check_outputs(model: str, others: list[str]) -> None:
    """Raise OptionError when the model path or a sidecar exists and is not a regular file."""
    kind = special_kind(model)
    if kind == "a directory":
        raise OptionError(f"-o/--output {model} is a directory: pass a file path such as "
                          f"{os.path.join(model, 'charlm.safetensors')}")
    if kind:
        raise OptionError(f"-o/--output {model} is {kind}, not a regular file: choose another -o/--output")
    for path in others:
        kind = special_kind(path)
        if kind:
            raise OptionError(f"{path}, which a run writes beside -o/--output {model}, is {kind}: "
                              "remove it or choose another -o/--output")


class RunLockedError(CharlmError):
    """Another run holds the output's lock."""


class RunLock:
    """An exclusive flock on a lock file beside the model, held while a run writes its files.

    The kernel drops the lock when its holder dies, however it dies (kill -9 included), so the
    lock file that a killed run leaves behind is simply taken over. The holder's PID is written
    into the file for the message of a run that finds the lock taken. release() removes the
    file; acquire() checks that the file it locked is still the one at the path (the holder may
    have removed it in between) and tries again otherwise.
    """

    def __init__(self, path: str, fd: int):
        self.path, self._fd = path, fd

    @classmethod
    def acquire(cls, path: str, model: str) -> RunLock:
        for _ in range(LOCK_ATTEMPTS):
            fd = _open_lock_file(path, model)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise RunLockedError(
                    f"another charlm run{holder} is writing {model} (it holds {path}): wait for it "
                    "to end, or choose another -o/--output") from None
            if _is_file_at(fd, path):
                lock = cls(path, fd)
                lock._write_pid(model)
                return lock
            os.close(fd)
        raise RunLockedError(f"could not lock {path} for {model}: other runs keep replacing it; "
                             "choose another -o/--output")

    def _write_pid(self, model: str) -> None:
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            self.release()
            raise CharlmError(f"cannot write {model}: writing {self.path} failed ({exc.strerror or exc}): "
                              "free some disk space or choose another -o/--output") from None

    def release(self) -> None:
        """Remove the lock file and drop the lock (once; later calls do nothing)."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __del__(self):
        try:
            self.release()
        except Exception:  # at interpreter exit, when os may be gone: the kernel drops the lock
            pass


def _open_lock_file(path: str, model: str) -> int:
    """The lock file's descriptor; creating it is the check that the output directory is writable."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except FileNotFoundError:
        directory = os.path.dirname(os.path.abspath(path))
        raise OptionError(f"cannot write {model}: the directory {directory} does not exist: create "
                          "it or choose another -o/--output") from None
    except OSError as exc:
        directory = os.path.dirname(os.path.abspath(path))
        raise OptionError(f"cannot write {model}: cannot create files in {directory} "
                          f"({exc.strerror or exc}): choose another -o/--output") from None


def _holder(fd: int) -> str:
    """' (PID n)' from the lock file, or '' when the holder has not written it yet."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (PID {text})" if text.isdigit() else ""


def _is_file_at(fd: int, path: str) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)

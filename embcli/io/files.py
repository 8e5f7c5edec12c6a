"""File helpers: atomic replacement and checksums, shared by every writer."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import tempfile
from collections.abc import Iterator

from embcli.errors import EmbcliError, UsageError


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename inside ``directory`` durable."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


STDOUT = "stdout"


class StdoutClosed(Exception):
    """stdout's reader is gone (`| head -1`): the CLI ends quietly, as cat and jq do.

    Not an OSError, so that nothing on the way up (click) takes it for another failure.
    """


def write_error(err: OSError, where: str) -> Exception:
    """A failed write as one line: what went wrong (from errno) and the path or "stdout"."""
    if where == STDOUT and isinstance(err, BrokenPipeError):
        return StdoutClosed()
    what = os.strerror(err.errno) if err.errno else str(err)
    return EmbcliError(f"{what[:1].lower()}{what[1:]}, writing {where}")


class CheckedFile(io.BufferedWriter):
    """A buffered binary file whose failed writes name the file (exit 1), never an internal error.

    ``io.BufferedWriter`` already retries short writes until all bytes are out or
    the system says why not; this only puts the path into that why.
    """

    def __init__(self, raw: io.RawIOBase, where: str) -> None:
        super().__init__(raw)
        self.where = where
        self.failed: Exception | None = None  # the first failure, once raised: what is left can't go out

    def write(self, data: bytes) -> int:  # type: ignore[override]
        try:
            return super().write(data)
        except OSError as e:
            raise self._failure(e) from None

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as e:
            raise self._failure(e) from None

    def _failure(self, err: OSError) -> Exception:
        self.failed = self.failed or write_error(err, self.where)
        return self.failed


def output_target(path: str | os.PathLike) -> tuple[str, os.stat_result | None]:
    """Where writing ``path`` really goes, and what is there now (None: nothing yet).

    A symlink (dangling or not) is followed, so its target is replaced and the
    link stays a link. Anything but a regular file is opened through ``path``
    itself: /dev/stdout's link to a pipe names no file that could be renamed.
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise UsageError(f"cannot write output: {e.strerror}, {path}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError(f"cannot write output: it is a directory, {path}")
    if st is not None and not stat.S_ISREG(st.st_mode):
        return path, st
    return (os.path.realpath(path) if os.path.islink(path) else path), st


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[CheckedFile]:
    """A file that appears at ``path`` only when the block succeeds (DESIGN §5 Guarantees).

    Regular files and new paths: temp + fsync + rename in the target's directory,
    keeping the replaced file's permissions. A device or FIFO is written in
    place: renaming over it would destroy it, and a FIFO's reader would get
    nothing. Every failed write raises one line that names ``path``.
    """
    path = os.fspath(path)
    target, st = output_target(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as e:
            raise UsageError(f"cannot write output: {e.strerror}, {path}") from None
        with _checked(fd, path) as f:
            yield f
            if stat.S_ISBLK(st.st_mode):  # character devices and FIFOs have nothing to sync
                _fsync(f.fileno(), path)
        return
    directory = os.path.dirname(os.path.abspath(target))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise UsageError(f"cannot write output: {e.strerror}, {path}") from None
    try:
        with _checked(fd, path) as f:
            yield f
            _fsync(f.fileno(), path)
            _keep_owner_and_mode(f.fileno(), st)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


@contextlib.contextmanager
def _checked(fd: int, where: str) -> Iterator[CheckedFile]:
    """``fd`` as a CheckedFile, flushed when the block ends well, dropped unflushed when not."""
    f = CheckedFile(io.FileIO(fd, "wb"), where)
    try:
        yield f
        f.flush()
    except BaseException:
        # Closing the raw file first makes close() skip its flush: after a failure or a
        # Ctrl-C nothing half-written goes out (to a FIFO, say), and the first error stands.
        f.raw.close()
        raise
    f.close()


def _fsync(fd: int, where: str) -> None:
    try:
        os.fsync(fd)
    except OSError as e:
        raise write_error(e, where) from None


def _keep_owner_and_mode(fd: int, old: os.stat_result | None) -> None:
    """The new file gets the replaced one's permissions (and owner, where allowed), else the umask's."""
    if old is None:
        os.fchmod(fd, 0o666 & ~_umask())
        return
    with contextlib.suppress(OSError):  # only root may give a file away; others keep their own
        if (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
            os.fchown(fd, old.st_uid, old.st_gid)
    os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

"""Write a file so that it appears under its final name only when complete.

A crash, a kill or a full disk in the middle of a write leaves the previous good file (or none)
under the final name, never a truncated one: the bytes go to a temp file in the same directory,
which is flushed, fsynced and renamed over the target (a rename within one filesystem is atomic).
Errors keep the final path in their message, so "no space left on device" names the file.
"""

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path` for a library that writes to a path; publish it on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.filename is None:  # name the file being written, not the temp file
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """`open(path, mode)` for writing, published atomically when the block ends without error."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


#: below this many free bytes, a write that failed without saying why is taken as a full disk
_NEARLY_FULL = 64 * 2**20


def failed_write(path: str | Path, err: BaseException) -> OSError:
    """The OSError behind a write that a library reported otherwise, naming `path`.

    `torch.save` reports a failed write as a RuntimeError ('file write failed', 'unexpected pos',
    'iostream error'), without the errno: a disk with (almost) nothing left is taken as ENOSPC,
    anything else as EIO.
    """
    if isinstance(err, OSError) and err.errno is not None:
        return OSError(err.errno, err.strerror or str(err), str(path))
    try:
        stat = os.statvfs(Path(path).parent)
        nearly_full = stat.f_bavail * stat.f_frsize < _NEARLY_FULL
    except OSError:
        nearly_full = False
    code = errno.ENOSPC if nearly_full else errno.EIO
    return OSError(code, os.strerror(code), str(path))


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save(obj, path)` atomically; a failed write is an OSError naming `path` (see above),
    never torch's RuntimeError, and leaves no temp file."""
    import torch

    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as err:  # its messages vary: "file write failed", "unexpected pos"
            cause = failed_write(path, err)
            if cause.errno != errno.ENOSPC and "write" not in str(err).lower():
                raise
            raise cause from err

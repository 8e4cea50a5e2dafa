"""Writing output files safely: whole or not at all, with the permissions ``open()`` gives.

Every file lucidnet writes (model files, ONNX graphs, predictions CSVs, metrics JSON, HTML
reports, PNG plots) goes through this module, so that

* **a reader never sees half a file, and a failure never destroys the old one.** The data goes
  to a temporary file in the target's own directory (the same file system, so the final rename
  is atomic), is flushed and ``fsync``-ed, and only then ``os.replace``-d onto the target. An
  exception at any point, ``KeyboardInterrupt`` included, removes the temporary file and leaves
  the target as it was. A process killed outright (SIGKILL, or SIGTERM without a handler) may
  leave a hidden temporary file ``.<name>.<random>.tmp`` next to the target, but the target
  itself is either the old file or the complete new one, never a mix: two processes writing the
  same path at once each rename a complete file, and the last rename wins.
* **the file gets ordinary permissions.** A new file is created with mode 0666, which the
  kernel reduces by the umask (and any default ACL of the directory), exactly as ``open(path,
  "w")`` would; ``tempfile.mkstemp`` instead creates 0600, which made files unreadable to the
  group. Replacing an existing regular file keeps its permission bits, as writing into it with
  ``open()`` would.

Two cases are not renamed over: a target that is not a regular file (``/dev/null``, a named pipe,
``/dev/stdout``) is written directly, as ``open()`` would (a rename would replace the device
node itself); and a symbolic link is *replaced* by the new file, not followed, so that writing
``latest.lnet -> runs/7.lnet`` never rewrites the run it points to.

Standard library only: the base utility every layer of the package may use (the import
contracts in ``pyproject.toml`` list it with ``_validation`` and ``registry``).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO, Literal, TextIO, overload

__all__ = ["open_atomically", "write_bytes_atomically", "write_text_atomically"]

#: the longest part of the target's name kept in the temporary file's name (file systems limit a
#: name to 255 bytes; the random suffix needs room).
_NAME_CHARS = 100
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows only: no newline translation at the OS level


def _naming(exc: OSError, path: str) -> OSError:
    """The same error about ``path`` (the user's name), not about the temporary file."""
    return type(exc)(exc.errno, exc.strerror, path)


def _temporary_path(target: str, given: str) -> tuple[str, int]:
    """Create an empty temporary file next to ``target``; return its path and an open fd.

    Created with ``O_EXCL`` (never an existing file, never through a planted link) and mode 0666,
    which the kernel reduces by the umask just as for ``open()``. An error (missing or read-only
    directory) names ``given``, the path the caller asked for.
    """
    directory, name = os.path.split(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | _O_BINARY
    for _ in range(100):
        tmp = os.path.join(directory, f".{name[:_NAME_CHARS]}.{os.urandom(6).hex()}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:  # 48 random bits: only a planted name can collide
            continue
        except OSError as exc:
            raise _naming(exc, given) from None
    raise FileExistsError(f"could not create a temporary file next to {given!r}")


def _existing_mode(target: str) -> int | None:
    """The permission bits to keep: those of ``target`` when it is a regular file (not a link),
    else None (a new file: 0666 minus the umask)."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    # setuid / setgid / sticky bits are not carried over to a file with new content
    return stat.S_IMODE(st.st_mode) & 0o777 if stat.S_ISREG(st.st_mode) else None


def _is_special(target: str) -> bool:
    """True when ``target`` (links followed) exists and is not a regular file or a directory: a
    device, a pipe, a socket. Those are written in place; renaming over them would replace
    the node itself (``/dev/null`` as a regular file)."""
    try:
        st = os.stat(target)
    except OSError:
        return False
    return not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode))


def _sync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); best effort, a no-op where unsupported."""
    if not hasattr(os, "O_DIRECTORY"):
        return  # Windows: directories cannot be opened or fsync-ed
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the data itself is synced
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_binary(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """The binary form of :func:`open_atomically`."""
    given = os.fspath(path)
    if _is_special(given):
        with open(given, "wb") as fh:
            yield fh
        return
    target = os.path.abspath(given)
    keep_mode = _existing_mode(target)
    tmp, fd = _temporary_path(target, given)
    try:
        with open(fd, "wb", closefd=True) as fh:  # owns fd from here: closed on any exit
            if keep_mode is not None:
                if hasattr(os, "fchmod"):
                    os.fchmod(fh.fileno(), keep_mode)
                else:  # pragma: no cover - Windows before Python 3.13
                    os.chmod(tmp, keep_mode)
            yield fh
            fh.flush()
            os.fsync(fh.fileno())  # the data is on disk before the name points to it
        try:
            os.replace(tmp, target)
        except OSError as exc:  # e.g. the target is a directory
            raise _naming(exc, given) from None
    except BaseException:  # KeyboardInterrupt and SystemExit too: never leave a stray file
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_directory(os.path.dirname(target))


@overload
def open_atomically(
    path: str | os.PathLike[str],
    mode: Literal["wb"] = "wb",
    *,
    encoding: None = None,
    newline: None = None,
) -> contextlib.AbstractContextManager[BinaryIO]: ...


@overload
def open_atomically(
    path: str | os.PathLike[str],
    mode: Literal["w"],
    *,
    encoding: str = "utf-8",
    newline: str | None = None,
) -> contextlib.AbstractContextManager[TextIO]: ...


def open_atomically(
    path: str | os.PathLike[str],
    mode: Literal["w", "wb"] = "wb",
    *,
    encoding: str | None = None,
    newline: str | None = None,
) -> contextlib.AbstractContextManager[BinaryIO] | contextlib.AbstractContextManager[TextIO]:
    """A file to write ``path`` through: the target appears, complete, when the block ends
    without an exception; on any exception it is left untouched and nothing else remains.

    Use it to stream a large output (``DataFrame.to_csv(fh)``) without building it in memory
    first; :func:`write_bytes_atomically` / :func:`write_text_atomically` write a value.

    Args:
        path: the file to create or replace (its directory must exist).
        mode: ``"wb"`` (a binary file) or ``"w"`` (text).
        encoding: text mode only; default UTF-8 (not the locale's encoding).
        newline: text mode only, as for ``open()`` (``""`` for the ``csv`` module and pandas).

    Raises:
        ValueError: an unknown ``mode``, or ``encoding`` / ``newline`` in binary mode.
        OSError: the directory does not exist or is not writable, the disk is full, ...
    """
    if mode == "wb":
        if encoding is not None or newline is not None:
            raise ValueError("open_atomically: encoding and newline apply to mode 'w' only")
        return _atomic_binary(path)
    if mode == "w":
        return _atomic_text(path, encoding or "utf-8", newline)
    raise ValueError(f"open_atomically: mode must be 'w' or 'wb', got {mode!r}")


@contextlib.contextmanager
def _atomic_text(
    path: str | os.PathLike[str], encoding: str, newline: str | None
) -> Iterator[TextIO]:
    with _atomic_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding=encoding, newline=newline, write_through=True)
        try:
            yield text
            text.flush()
        finally:
            # hand the file back: the binary block closes (and syncs, or removes) it itself
            with contextlib.suppress(Exception):  # never mask the exception of the block
                text.detach()


def write_bytes_atomically(path: str | os.PathLike[str], data: bytes | bytearray) -> None:
    """Write ``data`` to ``path`` atomically, with ordinary permissions (module docstring).

    Raises:
        OSError: the directory does not exist or is not writable, the disk is full, ...
    """
    with _atomic_binary(path) as fh:
        fh.write(data)


def write_text_atomically(
    path: str | os.PathLike[str], text: str, encoding: str = "utf-8", newline: str | None = None
) -> None:
    """Write ``text`` to ``path`` atomically, with ordinary permissions (module docstring).

    ``encoding`` and ``newline`` as for ``open()`` (default UTF-8 and the platform's line ends).

    Raises:
        OSError: the directory does not exist or is not writable, the disk is full, ...
        UnicodeEncodeError: ``text`` cannot be encoded (the target is left untouched).
    """
    with _atomic_text(path, encoding, newline) as fh:
        fh.write(text)

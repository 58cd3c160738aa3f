"""Atomic file writes: a file kdlib writes is either the old one or the complete new one.

Every file goes first to a temporary file in the same folder (same file system, so the final
``os.replace`` is atomic), is flushed to disk (``fsync``), and only then renamed onto the
target. On any failure, ``KeyboardInterrupt`` included, the temporary file is removed and
the previous file is untouched: no 0-byte or half-written file is ever left behind.

:class:`OutputSet` does the same for several files that belong together (the JSON, plot and
model of one run): all are written to temporaries first and renamed only when every one is
complete, with Ctrl-C held back during the renames, so a reader never finds the files of two
different runs side by side.

Examples
--------
>>> from kdlib import io
>>> io.write_text("results.json", text)
>>> with io.atomic_path("student.keras") as tmp:
...     model.save(tmp)            # anything that writes to a path
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "write_json",
]


def _temporary_path(target: Path) -> Path:
    """Create an empty, hidden temporary file next to ``target``, with the same suffix
    (Keras and matplotlib choose the format from it) and umask-respecting permissions."""
    for _ in range(100):
        candidate = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.tmp{target.suffix}")
        try:
            fd = os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(f"could not create a temporary file next to {target}")


def probe_folder(target: str | os.PathLike[str]) -> None:
    """Raise OSError unless a temporary file can be created next to ``target`` (it is
    removed again): the check that writing ``target`` atomically will work."""
    _remove(_temporary_path(Path(target)))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable; not every platform can open a folder (Windows), so best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C back while the block runs (main thread only), then deliver it.

    It is delivered as the process would have received it: a ``KeyboardInterrupt`` under
    Python's default handler, the program's own handler if it set one, nothing where SIGINT
    is ignored (a background job).
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield  # not ours to change: another thread, or a handler set outside Python
        return
    received: list[Any] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)


class OutputSet:
    """Files written together: staged as temporaries, published together, or not at all.

    Use as a context manager; :meth:`stage` gives the temporary path to write each target
    to. When the block ends without an exception every temporary is flushed to disk and
    renamed onto its target (Ctrl-C waits until the renames are done); on an exception, or
    Ctrl-C, every temporary is removed and the previous files stay as they were.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def stage(self, target: str | os.PathLike[str]) -> Path:
        """A new temporary file next to ``target``; write the content there."""
        target = Path(target)
        if any(target.resolve() == t.resolve() for t, _ in self._staged):
            raise ValueError(f"{target} is staged twice in one output set.")
        temporary = _temporary_path(target)
        self._staged.append((target, temporary))
        return temporary

    @property
    def targets(self) -> list[Path]:
        """The final paths, in the order they were staged."""
        return [target for target, _ in self._staged]

    def publish(self) -> None:
        """Flush every temporary to disk, then rename them all onto their targets."""
        for _, temporary in self._staged:
            _fsync_file(temporary)
        with _sigint_deferred():
            for target, temporary in self._staged:
                os.replace(temporary, target)
            for folder in {target.parent for target, _ in self._staged}:
                _fsync_folder(folder)
        self._staged = []

    def discard(self) -> None:
        """Remove every temporary; the targets are not touched."""
        for _, temporary in self._staged:
            _remove(temporary)
        self._staged = []

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:
                self.publish()
            except BaseException:
                self.discard()
                raise
        else:
            self.discard()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it replaces ``path`` if the block succeeds.

    For writers that take a path (``model.save``, ``fig.savefig``, ``numpy.save``).
    """
    with OutputSet() as outputs:
        yield outputs.stage(path)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; return the path."""
    return write_bytes(path, text.encode(encoding))


def write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON (with a final newline) to ``path`` atomically; return the path.

    The JSON text is built before the file is touched, so an object that cannot be
    serialised leaves the previous file as it was.
    """
    return write_text(path, json.dumps(obj, indent=indent) + "\n")

"""Atomic file writes: a file kdlib writes is either the old one or the complete new one.

Every file goes first to a temporary file in the same folder (same file system, so the final
``os.replace`` is atomic), is flushed to disk (``fsync``), and only then renamed onto the
target. On any failure, ``KeyboardInterrupt`` included, the temporary file is removed and
the previous file is untouched: no 0-byte or half-written file is ever left behind. SIGTERM
and SIGHUP (``kill``, a closed terminal), which end a process without unwinding it, remove
the temporaries before they end it (where the signal still has its default action). A
target that is a symbolic link is followed: the file it points to is replaced.

JSON is written strictly (:func:`json_text`): NaN and infinities become ``null``.

:class:`OutputSet` does the same for several files that belong together (the JSON, plot and
model of one run): all are written to temporaries first and renamed only when every one is
complete, with Ctrl-C (SIGTERM, SIGHUP) held back during the renames, so a reader never
finds the files of two different runs side by side.

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
import math
import os
import secrets
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "write_json",
    "json_safe",
    "json_text",
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


#: Signals that end a process without an exception (``kill``, a closed terminal): while
#: temporaries exist, a handler removes them first (Ctrl-C unwinds and cleans up by itself).
_TERMINATING = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)

#: The temporary files of every open output set, for the SIGTERM/SIGHUP handler.
_live_temporaries: set[Path] = set()
#: The handlers that :func:`_on_terminate` replaced, by signal, while it is installed.
_replaced_handlers: dict[int, Any] = {}


def _on_terminate(signum: int, frame: Any) -> None:
    """Remove every live temporary, then end the process by ``signum`` as it would have."""
    for path in list(_live_temporaries):
        _remove(path)
    _live_temporaries.clear()
    _restore_terminate_handlers()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install_terminate_handlers() -> None:
    """Clean up on SIGTERM and SIGHUP where they would kill the process outright (their
    default action); a program's own handler, or an ignored signal, is left alone."""
    if not _in_main_thread():
        return
    for signum in _TERMINATING:
        if signum not in _replaced_handlers and signal.getsignal(signum) is signal.SIG_DFL:
            _replaced_handlers[signum] = signal.signal(signum, _on_terminate)


def _restore_terminate_handlers() -> None:
    if not _in_main_thread():
        return
    for signum, previous in list(_replaced_handlers.items()):
        signal.signal(signum, previous)
        del _replaced_handlers[signum]


def _track(path: Path) -> None:
    _live_temporaries.add(path)
    _install_terminate_handlers()


def _untrack(path: Path) -> None:
    _live_temporaries.discard(path)
    if not _live_temporaries:
        _restore_terminate_handlers()


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP back while the block runs (main thread only), then
    deliver them.

    Each is delivered as the process would have received it: a ``KeyboardInterrupt`` under
    Python's default handler, the program's own handler if it set one, nothing where the
    signal is ignored (Ctrl-C in a background job).
    """
    signals = (signal.SIGINT, *_TERMINATING)
    previous = {signum: signal.getsignal(signum) for signum in signals}
    if not _in_main_thread():
        yield  # not ours to change: only the main thread may set handlers
        return
    received: list[int] = []
    for signum, handler in previous.items():
        if handler is not None:  # None: a handler set outside Python, not ours to change
            signal.signal(signum, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)


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
        """A new temporary file next to ``target``; write the content there.

        A ``target`` that is a symbolic link is followed: the file it points to is replaced
        (the temporary goes next to that file) and the link stays.
        """
        target = Path(target)
        if target.is_symlink():
            target = Path(os.path.realpath(target))
        if any(target.resolve() == t.resolve() for t, _ in self._staged):
            raise ValueError(f"{target} is staged twice in one output set.")
        temporary = _temporary_path(target)
        self._staged.append((target, temporary))
        _track(temporary)
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
        for _, temporary in self._staged:
            _untrack(temporary)
        self._staged = []

    def discard(self) -> None:
        """Remove every temporary; the targets are not touched."""
        for _, temporary in self._staged:
            _remove(temporary)
            _untrack(temporary)
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


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float (NumPy's too) replaced by None, recursively
    through dicts, lists and tuples (a tuple becomes a list), NumPy scalars as Python numbers.

    Strict JSON has no NaN or Infinity (``json.dumps`` writes them anyway, and many parsers
    then refuse the whole file); an undefined statistic is ``null``.
    """
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(value) for value in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_text(obj: Any, indent: int = 2) -> str:
    """``obj`` as strict JSON text with a final newline (non-finite numbers as null, see
    :func:`json_safe`)."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON (:func:`json_text`) to ``path`` atomically; return the path.

    The JSON text is built before the file is touched, so an object that cannot be
    serialised leaves the previous file as it was.
    """
    return write_text(path, json_text(obj, indent=indent))

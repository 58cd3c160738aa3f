"""Small helpers shared by several test files (importable because tests/ is on sys.path)."""

from __future__ import annotations

import importlib
import importlib.util
import signal
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: Data sizes of the end-to-end runs of fast mode in tests: a tenth of fast mode's own 5,000
#: training, 1,000 validation and 2,000 test images. Only the sizes change, not the code path.
SMALL_FAST_SIZES = {"train_size": 500, "val_size": 100, "test_size": 200}


class Deferred:
    """A module imported on first use of one of its public names, so that a test file can name
    a slow import at the top without every pytest process paying for it at collection.

    Names starting with ``_`` are not forwarded: pytest's collection probes each module-level
    object for some (``__wrapped__``, ``_mock_name``), and that must not import the module.
    Read-only: patch the module itself (setting a name here would patch nothing).
    """

    def __init__(self, load: Callable[[], types.ModuleType]) -> None:
        object.__setattr__(self, "_load", load)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._load(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"cannot set {name!r} on a deferred module: patch the module itself")

    def __delattr__(self, name: str) -> None:
        raise TypeError(f"cannot delete {name!r} from a deferred module: patch the module itself")


def lazy_import(name: str) -> Deferred:
    """``import name``, done on first use (see :class:`Deferred`)."""
    return Deferred(lambda: importlib.import_module(name))


def load_script(name: str, folder: str = "scripts") -> types.ModuleType:
    """``<folder>/<name>.py`` as a module, loaded once (registered in ``sys.modules``)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses in the script look their module up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def lazy_script(name: str) -> Deferred:
    """:func:`load_script`, done on first use (see :class:`Deferred`)."""
    return Deferred(lambda: load_script(name))


def small_fast_data(monkeypatch, data_dir: Path) -> Path:
    """Fast mode's data sizes cut to :data:`SMALL_FAST_SIZES` (``KDLIB_FAST`` itself is left
    as it is), and ``KDLIB_DATA_DIR`` pointed at ``data_dir``, where a learnable MNIST-shaped
    file large enough for them is written. Returns that file; monkeypatch undoes the rest."""
    from reference import write_learnable_mnist

    from kdlib.experiment import config as experiment_config

    for name, value in SMALL_FAST_SIZES.items():
        monkeypatch.setitem(experiment_config.FAST_SETTINGS, name, value)
    data_dir.mkdir(exist_ok=True)
    path = write_learnable_mnist(data_dir / "mnist.npz", n_train=1000, n_test=300)
    monkeypatch.setenv("KDLIB_DATA_DIR", str(data_dir))
    return path


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (a hang becomes a failure)."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

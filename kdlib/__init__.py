"""kdlib: the knowledge-distillation course library.

Modules: :mod:`kdlib.losses` (softmax with temperature, entropy, KL, distillation loss),
:mod:`kdlib.distiller` (the Keras ``Distiller``), :mod:`kdlib.soft_targets` (cached teacher
logits; ``tf.data`` in :mod:`kdlib.soft_targets_dataset`), :mod:`kdlib.data` (MNIST; reading,
checking and downloading the file in :mod:`kdlib.mnist_file`), :mod:`kdlib.models` (teacher
and student factories), :mod:`kdlib.experiment` (the MNIST experiment;
:mod:`kdlib.experiment_config`, :mod:`kdlib.report`, :mod:`kdlib.conclusions`),
:mod:`kdlib.stats` (paired t-test, confidence interval, McNemar), :mod:`kdlib.export` (LiteRT
files; running them in :mod:`kdlib.litert_model`), :mod:`kdlib.plotting` and
:mod:`kdlib.experiment_plots` (result plots in :mod:`kdlib.result_plots`),
:mod:`kdlib.widgets`, :mod:`kdlib.check` (exercise self-checks; the distillation ones in
:mod:`kdlib.check_distillation`, engine in :mod:`kdlib.grading`), :mod:`kdlib.formatting`
(``fmt``), :mod:`kdlib.validate` (argument checks), :mod:`kdlib.config` (fast mode).

``kdlib.Distiller`` is imported lazily, so ``import kdlib.config`` (and ``kdlib --help``)
does not pay for importing Keras and its backend.

Saved Distillers reload after a plain ``import kdlib``: Keras finds classes by the name they
were registered under (``"kdlib>Distiller"``), and registration happens when
:mod:`kdlib.distiller` runs. So ``import kdlib`` registers kdlib's classes as soon as Keras
is imported: at once if it already is, otherwise right after ``import keras`` completes
(a one-shot import hook that then removes itself). The names stand for the classes until
their module is imported, on the first load (see :data:`KERAS_CLASSES`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kdlib.distiller import Distiller

__version__ = "0.2.0"

#: The modules homework may import (with the names in each one's ``__all__``): kdlib's public
#: API, recorded in tests/public_api.json and kept stable (README, "Stability"). The other
#: modules (the command line, the self-check engine, the Distiller's model checks and argument
#: adapters, and the halves that a public module re-exports) are internal.
PUBLIC_MODULES = (
    "check",
    "conclusions",
    "config",
    "dark_knowledge",
    "data",
    "distiller",
    "experiment",
    "experiment_config",
    "experiment_plots",
    "export",
    "formatting",
    "io",
    "losses",
    "measurements",
    "models",
    "plotting",
    "report",
    "runtime",
    "soft_targets",
    "stacked",
    "stats",
    "sweep",
    "sweep_explorer",
    "sweep_plots",
    "training",
    "validate",
    "widgets",
)
__all__ = ["Distiller", *PUBLIC_MODULES]


#: Every submodule, reachable as an attribute of ``kdlib`` (imported on first use).
_SUBMODULES = PUBLIC_MODULES + (
    "check_distillation",
    "cli",
    "cli_args",
    "cli_distill",
    "cli_sweep",
    "distiller_args",
    "grading",
    "litert_model",
    "mnist_file",
    "model_checks",
    "result_plots",
    "soft_targets_dataset",
)


def __getattr__(name: str) -> Any:
    if name == "Distiller":
        from kdlib.distiller import Distiller

        return Distiller
    if name in _SUBMODULES:  # `import kdlib; kdlib.losses.…` works without a second import
        return importlib.import_module(f"kdlib.{name}")
    raise AttributeError(f"module 'kdlib' has no attribute {name!r}")


# ------------------------------------------------------------------- Keras registration
#: Every class kdlib registers with Keras, by registered name: module that defines it.
#: (A test keeps this in step with the ``register_keras_serializable`` decorators.)
KERAS_CLASSES = {
    "kdlib>Distiller": "kdlib.distiller",
    "kdlib>FunctionLoss": "kdlib.distiller_args",
    "kdlib>DistillationLoss": "kdlib.losses",
    "kdlib>StackedDense": "kdlib.stacked",
    "kdlib>StackedStudents": "kdlib.stacked",
}


class _LazyKerasClass:
    """Stands in Keras' registry for a kdlib class until its module is imported.

    Keras calls ``from_config`` on what it finds under a registered name; this imports the
    real module (whose decorator then replaces the stand-in) and delegates.
    """

    def __init__(self, registered_name: str, module: str) -> None:
        self._registered_name, self._module = registered_name, module

    def _target(self) -> Any:
        module = importlib.import_module(self._module)
        return getattr(module, self._registered_name.split(">", 1)[1])

    def from_config(self, *args: Any, **kwargs: Any) -> Any:
        return self._target().from_config(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def __repr__(self) -> str:
        return f"<kdlib class {self._registered_name}, imported on first use>"


def _register_with_keras() -> None:
    """Make Keras find kdlib's classes by registered name, without importing them yet."""
    import keras  # already imported: called only once Keras is

    registry = keras.saving.get_custom_objects()
    for registered_name, module in KERAS_CLASSES.items():
        registry.setdefault(registered_name, _LazyKerasClass(registered_name, module))


class _KerasLoader(importlib.abc.Loader):
    """Runs Keras' own loader, then registers kdlib's classes; everything else delegates."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        _register_with_keras()

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class _OnKerasImport(importlib.abc.MetaPathFinder):
    """A one-shot finder: wraps the loader of the top-level ``keras`` package, then leaves."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "keras":
            return None
        _remove_hook()
        spec = None
        for finder in sys.meta_path:  # the finders that would have found keras without us
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec else None
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _KerasLoader(spec.loader)
        return spec


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_OnKerasImport"]


def _install_keras_hook() -> None:
    if "keras" in sys.modules:
        _register_with_keras()
    elif not any(type(f).__name__ == "_OnKerasImport" for f in sys.meta_path):
        sys.meta_path.insert(0, _OnKerasImport())


_install_keras_hook()

r"""A Keras ``Distiller``: a student learns from labels and from a frozen teacher's logits.

The total loss is

.. math:: L = \alpha \, \mathrm{CE}(y, s) + (1 - \alpha) \, T^2 \,
          \mathrm{KL}\big(\mathrm{softmax}(t/T) \,\|\, \mathrm{softmax}(s/T)\big)

with ``t`` the teacher's and ``s`` the student's logits. The Distiller is a ``keras.Model``
trained with ``fit()``; ``call`` returns the student's logits. Model and loss code uses
``keras.ops`` only, so it runs on TensorFlow, JAX and PyTorch, with ``jit_compile=True``,
under mixed precision (losses in float32) and under ``tf.distribute`` strategies.

Soft targets can be *online* (the teacher runs on every batch; needed with augmentation) or
*cached* (the teacher's logits are computed once and passed with the labels as
``y = {"labels": ..., "teacher_logits": ...}``; see :mod:`kdlib.soft_targets`).

Loss functions given to ``compile`` and ``class_weight`` given to ``fit`` are turned into
what Keras takes by :mod:`kdlib.distiller` (its ``FunctionLoss`` is importable here).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from kdlib import validate
from kdlib.distillation_losses import DistillationPart, FeatureModels
from kdlib.losses import DistillationLoss

__all__ = [
    "Distiller",
    "applies_softmax",
]


# ------------------------- Checks of a teacher/student pair and of training data that need Keras
def applies_softmax(model: keras.Model) -> bool:
    """True if the model's last layer turns logits into probabilities with a softmax."""
    layers = getattr(model, "layers", None)
    if not layers:
        return False
    last = layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    return activation is keras.activations.softmax or (
        getattr(activation, "__name__", "") == "softmax"
    )


def check_logits_model(model: Any, role: str) -> None:
    """Raise if ``model`` is not a Keras model or its last layer applies softmax.

    Distillation divides *logits* by the temperature before the softmax, so a model that
    already outputs probabilities cannot be a teacher or a student.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{role} must be a keras.Model, got {type(model).__name__}; build it with "
            "keras.Sequential, the functional API or a kdlib.models factory."
        )
    if applies_softmax(model):
        raise ValueError(
            f"The {role}'s last layer ({model.layers[-1].name!r}) applies softmax, but "
            "distillation needs logits: the temperature divides the logits before the "
            "softmax. Remove the softmax (e.g. Dense(10) instead of "
            "Dense(10, activation='softmax')), or wrap the model: "
            f"keras.Model({role}.inputs, {role}.layers[-1].input) if the softmax is a "
            "separate layer."
        )


def _static(model: keras.Model, attribute: str) -> list[Any] | None:
    """``model.inputs`` or ``model.outputs`` of a built functional/Sequential model, else None."""
    try:
        tensors = getattr(model, attribute)
    except (AttributeError, ValueError):
        return None
    return list(tensors) if tensors else None


def check_single_logits_output(model: keras.Model, role: str) -> tuple[Any, ...] | None:
    """Raise unless ``model`` has one output of shape (batch, ..., num_classes >= 2).

    Returns the static output shape, or None when it is not known yet (a subclassed model
    before its first call).
    """
    outputs = _static(model, "outputs")
    if outputs is None:
        return None
    if len(outputs) != 1 or isinstance(getattr(model, "output", None), (list, tuple, dict)):
        raise ValueError(
            f"The {role} must have exactly one output (the logits), but it has "
            f"{len(outputs)} output(s) in a {type(model.output).__name__}. Distill one head "
            f"at a time: keras.Model({role}.inputs, {role}.outputs[0])."
        )
    shape = tuple(outputs[0].shape)
    if len(shape) < 2 or shape[-1] == 1:
        raise ValueError(
            f"The {role}'s output has shape {shape}, but distillation needs one logit per "
            "class: an output of shape (batch, num_classes) with num_classes >= 2."
        )
    return shape


def _input_shapes(model: keras.Model) -> list[tuple[Any, ...]] | None:
    inputs = _static(model, "inputs")
    return None if inputs is None else [tuple(i.shape) for i in inputs]


def _sublayers(model: keras.Layer) -> list[keras.Layer]:
    """Every layer inside ``model``, recursively (nested models included)."""
    found: list[keras.Layer] = []
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        if any(layer is seen for seen in found):
            continue
        found.append(layer)
        stack.extend(getattr(layer, "layers", []))
    return found


def check_separate_models(teacher: keras.Model, student: keras.Model) -> None:
    """Raise if teacher and student are the same model or share layers or weights.

    The teacher is frozen, so anything it shares with the student would silently stop
    training; the same model in both roles makes the loss constant.
    """
    if teacher is student:
        raise ValueError(
            "teacher and student are the same model: the teacher is frozen, so nothing "
            "would train. Build a separate student, e.g. keras.models.clone_model(teacher) "
            "for a copy, or a smaller model from kdlib.models."
        )
    teacher_layers = _sublayers(teacher)
    shared = [  # layers without weights (inputs, reshapes) are harmless to share
        layer.name
        for layer in _sublayers(student)
        if layer.weights and any(layer is t for t in teacher_layers)
    ]
    if not shared:
        teacher_weights = {id(w) for w in teacher.weights}
        shared = [w.path for w in student.weights if id(w) in teacher_weights]
    if shared:
        raise ValueError(
            f"The student shares {', '.join(map(repr, shared[:5]))} with the teacher. The "
            "teacher is frozen, so those weights would silently not train. Give the student "
            "its own layers (keras.models.clone_model copies a model without sharing)."
        )


def check_compatible(teacher: keras.Model, student: keras.Model) -> None:
    """All construction-time checks of a teacher/student pair (when shapes are known)."""
    check_logits_model(teacher, "teacher")
    check_logits_model(student, "student")
    check_separate_models(teacher, student)
    t_shape = check_single_logits_output(teacher, "teacher")
    s_shape = check_single_logits_output(student, "student")
    if t_shape is not None and s_shape is not None and t_shape[1:] != s_shape[1:]:
        raise ValueError(
            f"teacher and student outputs differ in shape: teacher {t_shape}, student "
            f"{s_shape}. Both must give one logit per class for the same classes."
        )
    t_in, s_in = _input_shapes(teacher), _input_shapes(student)
    if (
        t_in is not None
        and s_in is not None
        and (len(t_in) != len(s_in) or any(a[1:] != b[1:] for a, b in zip(t_in, s_in)))
    ):
        raise ValueError(
            f"teacher and student take different inputs: teacher {_fmt_shapes(t_in)}, "
            f"student {_fmt_shapes(s_in)}. Both see the same batch, so they need the same "
            "input shape."
        )


def _fmt_shapes(shapes: list[tuple[Any, ...]]) -> str:
    return ", ".join(str(s) for s in shapes)


def looks_like_probabilities(outputs: Any) -> bool:
    """True if every row is non-negative, at most 1 and sums to 1 (a softmax's output)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim < 2 or outputs.shape[-1] < 2 or outputs.size == 0:
        return False
    if not np.all(np.isfinite(outputs)):
        return False
    return bool(
        np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3)
        and outputs.min() >= 0.0
        and outputs.max() <= 1.0
    )


PROBABILITIES_MESSAGE = (
    "The teacher's outputs are non-negative and every row sums to 1: they look like "
    "probabilities (a softmax inside the model), but distillation needs logits. Remove the "
    "softmax from the teacher, e.g. Dense(10) instead of Dense(10, activation='softmax')."
)


def check_teacher_logits(logits: np.ndarray, n: int, origin: str) -> np.ndarray:
    """Validate the teacher's outputs before they are cached: (n, num_classes), finite, not
    probabilities. ``origin`` names the caller in the messages."""
    if logits.ndim != 2 or logits.shape[0] != n:
        raise ValueError(
            f"The teacher's outputs have shape {logits.shape} for {n} examples ({origin}); "
            "expected (num_examples, num_classes): one logit per class."
        )
    if not np.all(np.isfinite(logits)):
        bad = int(np.sum(~np.all(np.isfinite(logits), axis=1)))
        raise ValueError(
            f"The teacher's logits are not finite for {bad} of {n} examples ({origin}); "
            "check the teacher and its inputs (e.g. unscaled images, a diverged model)."
        )
    if looks_like_probabilities(logits):
        raise ValueError(PROBABILITIES_MESSAGE)
    return logits


#: Rows of the first batch on which the teacher's outputs are checked in online mode.
SAMPLE_ROWS = 64


def is_tf_dataset(x: Any) -> bool:
    module = type(x).__module__ or ""
    return module.startswith("tensorflow") and hasattr(x, "element_spec")


def is_array_like(x: Any) -> bool:
    leaves = keras.tree.flatten(x)
    return bool(leaves) and all(hasattr(leaf, "shape") and len(leaf.shape) > 0 for leaf in leaves)


def first_dataset_batch(student: keras.Model, method: str, dataset: Any) -> tuple[Any, Any]:
    """The first batch's (x, y) of a tf.data dataset, after checking that it is batched."""
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise ValueError(
            f"Distiller.{method}() got a tf.data dataset whose elements are {spec}, not "
            "(x, y) or (x, y, sample_weight) tuples: the student's loss needs the labels. "
            "Map it first, e.g. dataset.map(lambda d: (d['image'], d['label']))."
        )
    inputs = _static(student, "inputs")
    x_specs = keras.tree.flatten(spec[0])
    if (
        inputs is not None
        and len(inputs) == len(x_specs)
        and any(
            s.shape.rank is not None and s.shape.rank == len(i.shape) - 1
            for s, i in zip(x_specs, inputs)
        )
    ):
        raise ValueError(
            f"Distiller.{method}() got an unbatched tf.data dataset: its inputs have shape "
            f"{x_specs[0].shape} but the student takes {tuple(inputs[0].shape)} (a batch "
            "axis first). Batch it, e.g. dataset.batch(32)."
        )
    if isinstance(spec[1], dict):
        return None, None  # cached targets: nothing to check
    for batch in dataset.take(1):
        return keras.tree.map_structure(lambda a: a[:SAMPLE_ROWS], batch[0]), batch[1]
    return None, None


def check_training_data(
    teacher: keras.Model, student: keras.Model, method: str, x: Any, y: Any
) -> None:
    """Clear errors before Keras starts ``fit``/``evaluate``: missing labels, an unbatched
    dataset, and (online mode) a teacher whose outputs are probabilities, from its outputs
    on the first rows (a softmax hidden in a ``Lambda``, a subclassed model, a reshape)."""
    if x is None:
        return
    if is_tf_dataset(x):
        sample_x, sample_y = first_dataset_batch(student, method, x)
    elif is_array_like(x):
        if y is None:
            raise ValueError(
                f"Distiller.{method}(x, y) got y=None: the student's loss needs the "
                "labels. Pass them (online mode), or cached targets "
                "{'labels': ..., 'teacher_logits': ...} from "
                "kdlib.soft_targets.cache_soft_targets()."
            )
        sample_x = keras.tree.map_structure(lambda a: a[:SAMPLE_ROWS], x)
        sample_y = y
    else:  # a generator or PyDataset: Keras reads it, nothing to peek at safely
        return
    if sample_x is None or isinstance(sample_y, dict):
        return  # cached mode: the logits were checked by cache_soft_targets
    outputs = ops.convert_to_numpy(teacher(sample_x, training=False))
    if looks_like_probabilities(outputs):
        raise ValueError(PROBABILITIES_MESSAGE)


# ----------------------------------------- compile and fit arguments, turned into what Keras takes
@keras.saving.register_keras_serializable(package="kdlib")
class FunctionLoss(keras.losses.Loss):
    """Wrap a per-example loss function ``fn(y_true, y_pred)`` as a serializable Loss."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name or _scope_name(fn), **kwargs)
        self.fn = fn

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self.fn(y_true, y_pred)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["fn"] = keras.saving.serialize_keras_object(self.fn)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FunctionLoss:
        config = dict(config)
        config["fn"] = keras.saving.deserialize_keras_object(config["fn"])
        return cls(**config)


def _scope_name(fn: Callable[..., Any]) -> str:
    """A loss name that is valid as a TensorFlow name scope.

    Keras opens a name scope with the loss's name; ``"<lambda>"`` is not a valid one, and
    TensorFlow then leaves its scope stack broken for the rest of the process.
    """
    name = re.sub(r"[^A-Za-z0-9_.-]", "", getattr(fn, "__name__", "") or "")
    name = name.lstrip("_.-")
    return name or "function_loss"


def as_loss(fn: Any, argument: str) -> keras.losses.Loss:
    """``fn`` as a Keras Loss: a Loss as it is, a function wrapped in :class:`FunctionLoss`."""
    if isinstance(fn, keras.losses.Loss):
        return fn
    if isinstance(fn, str) or not callable(fn):
        raise ValueError(
            f"{argument} must be a keras.losses.Loss or a function (y_true, y_pred) -> "
            f"per-example losses, got {fn!r}. Strings are not accepted because "
            "'sparse_categorical_crossentropy' expects probabilities, and the student "
            "outputs logits: use keras.losses.SparseCategoricalCrossentropy(from_logits=True)."
        )
    return FunctionLoss(fn)


def class_weight_as_sample_weight(labels: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keras applies ``class_weight`` to single-output targets only; with cached targets
    (a dict) the same weights become per-example ``sample_weight``.

    ``labels`` are the cached targets' labels; ``kwargs`` are ``fit``'s keyword arguments,
    returned without ``class_weight`` and with ``sample_weight`` (times any given one).
    """
    kwargs = dict(kwargs)
    class_weight = kwargs.pop("class_weight")
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    missing = sorted(set(np.unique(labels).tolist()) - set(map(int, class_weight)))
    if missing:
        raise ValueError(
            f"class_weight has no weight for the label(s) {missing}; give one weight per "
            f"class, e.g. {{0: 1.0, 1: 2.0, ...}}."
        )
    lookup = np.zeros(max(map(int, class_weight)) + 1, dtype=np.float32)
    for label, weight in class_weight.items():
        lookup[int(label)] = float(weight)
    weights = lookup[labels]
    if kwargs.get("sample_weight") is not None:
        weights = weights * np.asarray(kwargs["sample_weight"], dtype=np.float32)
    kwargs["sample_weight"] = weights
    return kwargs


LABELS_KEY = "labels"
TEACHER_LOGITS_KEY = "teacher_logits"


def _num_replicas_in_sync() -> int:
    """Replicas of the current ``tf.distribute`` strategy (1 outside one, and off TF).

    Keras' loss objects divide the per-replica loss by this number so that gradients summed
    over replicas equal the gradient of the global mean; the reported metrics undo it.
    """
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf  # distribution plumbing only, never model or loss math

    return int(tf.distribute.get_strategy().num_replicas_in_sync)


@keras.saving.register_keras_serializable(package="kdlib")
class Distiller(keras.Model):
    """Train ``student`` on labels and on the softened logits of a frozen ``teacher``.

    Parameters
    ----------
    teacher, student : keras.Model
        Both output logits (no final softmax) of the same shape. Keyword-only, so the two
        can never be swapped by position. The teacher is frozen (``trainable = False``) and
        always runs in inference mode.
    distillation_losses : list of kdlib.distillation_losses parts, optional
        What the student learns from the teacher (logits, hints, attention, relations,
        decoupled KD): the total loss is ``alpha * student_loss + (1 - alpha) *
        sum(w * part)``. Without it, the soft-target loss of :meth:`compile`
        (``LogitsDistillation(temperature)``, the same loss and results).
    distillation_loss_weights : list of float, optional
        One weight ``w >= 0`` per part (default 1 each).

    Examples
    --------
    >>> distiller = Distiller(teacher=teacher, student=student)
    >>> distiller.compile(optimizer="adam", metrics=["accuracy"], alpha=0.1, temperature=3.0)
    >>> history = distiller.fit(x_train, y_train, epochs=3, validation_data=(x_val, y_val))
    >>> distiller.student.save("student.keras")  # loads without kdlib
    """

    def __init__(
        self,
        *,
        teacher: keras.Model,
        student: keras.Model,
        distillation_losses: list[DistillationPart] | None = None,
        distillation_loss_weights: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_compatible(teacher, student)
        teacher.trainable = False
        # Keras compiles predict for the variables as they were (trainable or not); on JAX
        # under a distribution the stale function fails on the frozen teacher's state, so it
        # is rebuilt on the next predict (a retrace elsewhere).
        teacher.predict_function = None
        self.teacher = teacher
        self.student = student
        self._parts: FeatureModels | None = None
        if distillation_losses is not None:
            parts = [
                keras.saving.deserialize_keras_object(p) if isinstance(p, dict) else p
                for p in distillation_losses
            ]
            # built (names and shapes checked) now, before any training
            self._parts = FeatureModels(teacher, student, parts, distillation_loss_weights)
            self.distillation_losses = self._parts.parts  # tracked: projectors train
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.alpha: float | None = None
        self.temperature: float | None = None
        self.student_loss_fn: keras.losses.Loss | None = None
        self.distillation_loss_fn: keras.losses.Loss | None = None

    # ------------------------------------------------------------------ compile / config
    def compile(
        self,
        optimizer: str | keras.optimizers.Optimizer = "adam",
        metrics: list[Any] | None = None,
        student_loss_fn: Any = None,
        distillation_loss_fn: Any = None,
        alpha: float = 0.1,
        temperature: float = 3.0,
        **kwargs: Any,
    ) -> None:
        """Configure training.

        Parameters
        ----------
        optimizer : str or keras.optimizers.Optimizer
            Updates the student's weights only.
        metrics : list, optional
            Metrics of the student against the labels, e.g. ``["accuracy"]``.
        student_loss_fn : keras.losses.Loss or callable, optional
            Hard-label loss; defaults to
            ``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``.
        distillation_loss_fn : keras.losses.Loss or callable, optional
            Soft-target loss ``f(teacher_logits, student_logits)``; defaults to
            ``kdlib.losses.DistillationLoss(temperature)``.
        alpha : float
            Weight in [0, 1] of the hard-label loss; the soft loss gets ``1 - alpha``.
        temperature : float
            T > 0 used by the default distillation loss.
        **kwargs
            Passed to ``keras.Model.compile`` (e.g. ``jit_compile``, ``steps_per_execution``).
        """
        self.alpha = validate.alpha(alpha)
        self.temperature = validate.temperature(temperature)
        if getattr(self.teacher, "temperature_dependent", False):
            # An arithmetic-mean kdlib.Ensemble outputs logits exact at one temperature:
            # the soft targets', so that the student learns the ensemble's exact mean.
            self.teacher.temperature = self._soft_target_temperature()
        if kwargs.get("loss") is not None:
            raise ValueError(
                "Distiller.compile() takes student_loss_fn and distillation_loss_fn, not "
                f"loss={kwargs['loss']!r}; the total loss is alpha * student_loss + "
                "(1 - alpha) * distillation_loss."
            )
        kwargs.pop("loss", None)
        if student_loss_fn is None:
            student_loss_fn = keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, name="student_loss"
            )
        if distillation_loss_fn is not None and self._parts is not None:
            raise ValueError(
                "This Distiller has distillation_losses; pass distillation_loss_fn only "
                "without them (it replaces the default LogitsDistillation)."
            )
        if distillation_loss_fn is None:
            distillation_loss_fn = DistillationLoss(temperature=self.temperature)
        self.student_loss_fn = as_loss(student_loss_fn, "student_loss_fn")
        self.distillation_loss_fn = as_loss(distillation_loss_fn, "distillation_loss_fn")
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        # What get_compile_config saves: the arguments of this method, nothing of Keras' own.
        self._compile_arguments = {"metrics": metrics, **kwargs}

    def _soft_target_temperature(self) -> float:
        """The temperature the teacher's soft targets are taken at: that of the
        ``distillation_losses`` parts that have one, else :meth:`compile`'s."""
        if self._parts is None:
            return float(self.temperature)
        found = sorted(
            {float(p.temperature) for p in self._parts.parts if hasattr(p, "temperature")}
        )
        if len(found) > 1:
            raise ValueError(
                f"The teacher {self.teacher.name!r} is an arithmetic-mean ensemble, whose "
                "logits are exact at one temperature, but the distillation parts use "
                f"temperatures {found}. Give them one temperature, or build the ensemble "
                "with mean='geometric' (exact at every temperature)."
            )
        return found[0] if found else float(self.temperature)

    def get_compile_config(self) -> dict[str, Any]:
        """The arguments of :meth:`compile`, serialized (empty before compile)."""
        if self.alpha is None or not self.compiled:
            return {}
        return keras.saving.serialize_keras_object(
            {
                "optimizer": self.optimizer,
                "student_loss_fn": self.student_loss_fn,
                # unused (and refused) beside distillation_losses
                "distillation_loss_fn": None if self._parts else self.distillation_loss_fn,
                "alpha": self.alpha,
                "temperature": self.temperature,
                **self._compile_arguments,
            }
        )

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """Compile again from :meth:`get_compile_config` (what ``load_model`` calls)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:  # create the optimizer's variables, so that its saved state loads
            self.optimizer.build(self.trainable_variables)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            teacher=keras.saving.serialize_keras_object(self.teacher),
            student=keras.saving.serialize_keras_object(self.student),
        )
        if self._parts is not None:
            config.update(
                distillation_losses=[
                    keras.saving.serialize_keras_object(p) for p in self._parts.parts
                ],
                distillation_loss_weights=self._parts.weights,
            )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Distiller:
        config = dict(config)
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"))
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        return cls(teacher=teacher, student=student, **config)

    # ------------------------------------------------------------------ forward and loss
    def call(self, inputs: Any, training: bool | None = None, **kwargs: Any) -> Any:
        """The student's logits; keyword arguments (e.g. ``mask``) go to the student."""
        return self.student(inputs, training=training, **kwargs)

    def build(self, input_shape: Any = None) -> None:
        if input_shape is not None:
            for model in (self.teacher, self.student):
                if not model.built:
                    model.build(input_shape)
        self.built = True

    def _require_compiled(self, method: str) -> None:
        if not self.compiled or self.alpha is None:
            raise RuntimeError(
                f"Distiller.{method}() was called before compile(). Call "
                "distiller.compile(optimizer='adam', metrics=['accuracy'], alpha=0.1, "
                f"temperature=3.0) first, then distiller.{method}(...)."
            )

    def fit(
        self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any
    ) -> keras.callbacks.History:
        self._require_compiled("fit")
        check_training_data(self.teacher, self.student, "fit", x, y)
        if kwargs.get("class_weight") is not None and isinstance(y, dict):
            kwargs = class_weight_as_sample_weight(y.get(LABELS_KEY), kwargs)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any) -> Any:
        self._require_compiled("evaluate")
        check_training_data(self.teacher, self.student, "evaluate", x, y)
        return super().evaluate(x, y, *args, **kwargs)

    def _split_targets(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Labels and teacher logits: cached in ``y`` if present, else the teacher runs."""
        if isinstance(y, dict):
            if LABELS_KEY not in y or TEACHER_LOGITS_KEY not in y:
                raise ValueError(
                    f"Cached targets must be a dict with keys {LABELS_KEY!r} and "
                    f"{TEACHER_LOGITS_KEY!r}, got keys {sorted(y)}; build them with "
                    "kdlib.soft_targets.cache_soft_targets()."
                )
            if self._parts is not None and self._parts.teacher_names:
                raise ValueError(
                    "Cached targets hold the teacher's logits only, but the distillation "
                    f"losses read the teacher's layers {self._parts.teacher_names}; "
                    "pass the labels as y so that the teacher runs on every batch."
                )
            return y[LABELS_KEY], y[TEACHER_LOGITS_KEY]
        if self._parts is not None and self._parts.teacher_model is not None:
            return y, self._parts.teacher_model(x, training=False)  # logits and features
        return y, self.teacher(x, training=False)

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        """``alpha * student_loss + (1 - alpha) * distillation_loss`` (+ regularisers)."""
        if y is None:
            raise ValueError(
                "The Distiller got no labels: a tf.data dataset must yield (x, y) or "
                "(x, y, sample_weight) batches, and fit(x, y) needs y."
            )
        labels, teacher_logits = self._split_targets(x, y)
        if isinstance(sample_weight, dict):  # Keras copies one weight array per target key
            sample_weight = sample_weight.get(LABELS_KEY)
        if y_pred is None:
            y_pred = self(x, training=training)
        student_outputs = y_pred
        if self._parts is not None:
            teacher_outputs = self._parts.outputs("teacher", teacher_logits)
            teacher_logits = teacher_outputs[None]
            if self._parts.student_model is not None:  # logits and features, in one pass
                student_outputs = self._parts.student_model(x, training=training)
            student_outputs = self._parts.outputs("student", student_outputs)
            y_pred = student_outputs[None]
        # Softmax, cross-entropy and KL in float32, whatever the compute dtype.
        student_logits = ops.cast(y_pred, "float32")
        # cast first: it turns numpy (cached logits passed directly) into a backend tensor,
        # which stop_gradient needs on PyTorch
        teacher_logits = ops.stop_gradient(ops.cast(teacher_logits, "float32"))
        if tuple(teacher_logits.shape)[1:] != tuple(student_logits.shape)[1:]:
            raise ValueError(
                f"teacher logits have shape {tuple(teacher_logits.shape)} but student logits "
                f"{tuple(student_logits.shape)}; both must have one logit per class."
            )
        # Keras losses return the per-replica share of the global mean (divided by the
        # number of replicas), which is what gradients summed across replicas need.
        student_loss = self.student_loss_fn(labels, student_logits, sample_weight)
        if self._parts is None:
            distill_loss = self.distillation_loss_fn(teacher_logits, student_logits, sample_weight)
        else:
            teacher_outputs = {
                k: ops.stop_gradient(ops.convert_to_tensor(v)) for k, v in teacher_outputs.items()
            }
            teacher_outputs[None] = teacher_logits
            student_outputs[None] = student_logits
            distill_loss = self._parts.loss(
                teacher_outputs, student_outputs, labels, sample_weight
            )
            distill_loss = distill_loss / _num_replicas_in_sync()  # a per-replica share
        total = self.alpha * student_loss + (1.0 - self.alpha) * distill_loss
        replicas = _num_replicas_in_sync()
        # The student's regularisers, as Keras adds them: summed, a per-replica share each.
        # Only the student's: the teacher is frozen, and its own losses (e.g. an activity
        # regulariser, added when it runs online) would make the two modes disagree.
        for extra in self.student.losses:
            total = total + ops.sum(ops.cast(extra, "float32")) / replicas
        if replicas != 1:  # report the global mean, as Keras does for `loss`
            student_loss, distill_loss = student_loss * replicas, distill_loss * replicas
        batch = ops.shape(student_logits)[0]
        self.student_loss_tracker.update_state(student_loss, sample_weight=batch)
        self.distillation_loss_tracker.update_state(distill_loss, sample_weight=batch)
        return total

    def compute_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        labels = y[LABELS_KEY] if isinstance(y, dict) else y
        if isinstance(sample_weight, dict):
            sample_weight = sample_weight.get(LABELS_KEY)
        return super().compute_metrics(x, labels, y_pred, sample_weight=sample_weight)

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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from kdlib import validate
from kdlib.losses import DistillationLoss

LABELS_KEY = "labels"
TEACHER_LOGITS_KEY = "teacher_logits"


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


def _output_shape(model: keras.Model) -> tuple[Any, ...] | None:
    """The static output shape of a built functional/Sequential model, else None."""
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None
    if not outputs or len(outputs) != 1:
        return None
    return tuple(outputs[0].shape)


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
class FunctionLoss(keras.losses.Loss):
    """Wrap a per-example loss function ``fn(y_true, y_pred)`` as a serializable Loss."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name or getattr(fn, "__name__", "function_loss"), **kwargs)
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


def _as_loss(fn: Any, argument: str) -> keras.losses.Loss:
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


@keras.saving.register_keras_serializable(package="kdlib")
class Distiller(keras.Model):
    """Train ``student`` on labels and on the softened logits of a frozen ``teacher``.

    Parameters
    ----------
    teacher, student : keras.Model
        Both output logits (no final softmax) of the same shape. Keyword-only, so the two
        can never be swapped by position. The teacher is frozen (``trainable = False``) and
        always runs in inference mode.

    Examples
    --------
    >>> distiller = Distiller(teacher=teacher, student=student)
    >>> distiller.compile(optimizer="adam", metrics=["accuracy"], alpha=0.1, temperature=3.0)
    >>> history = distiller.fit(x_train, y_train, epochs=3, validation_data=(x_val, y_val))
    >>> distiller.student.save("student.keras")  # loads without kdlib
    """

    def __init__(self, *, teacher: keras.Model, student: keras.Model, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_logits_model(teacher, "teacher")
        check_logits_model(student, "student")
        t_shape, s_shape = _output_shape(teacher), _output_shape(student)
        if t_shape is not None and s_shape is not None and t_shape[1:] != s_shape[1:]:
            raise ValueError(
                f"teacher and student outputs differ in shape: teacher {t_shape}, student "
                f"{s_shape}. Both must give one logit per class for the same classes."
            )
        teacher.trainable = False
        self.teacher = teacher
        self.student = student
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
        if distillation_loss_fn is None:
            distillation_loss_fn = DistillationLoss(temperature=self.temperature)
        self.student_loss_fn = _as_loss(student_loss_fn, "student_loss_fn")
        self.distillation_loss_fn = _as_loss(distillation_loss_fn, "distillation_loss_fn")
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        # What get_compile_config saves: the arguments of this method, nothing of Keras' own.
        self._compile_arguments = {"metrics": metrics, **kwargs}

    def get_compile_config(self) -> dict[str, Any]:
        """The arguments of :meth:`compile`, serialized (empty before compile)."""
        if self.alpha is None or not self.compiled:
            return {}
        return keras.saving.serialize_keras_object(
            {
                "optimizer": self.optimizer,
                "student_loss_fn": self.student_loss_fn,
                "distillation_loss_fn": self.distillation_loss_fn,
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
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Distiller:
        config = dict(config)
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"))
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        return cls(teacher=teacher, student=student, **config)

    # ------------------------------------------------------------------ forward and loss
    def call(self, inputs: Any, training: bool | None = None) -> Any:
        """The student's logits."""
        return self.student(inputs, training=training)

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

    def fit(self, *args: Any, **kwargs: Any) -> keras.callbacks.History:
        self._require_compiled("fit")
        return super().fit(*args, **kwargs)

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        self._require_compiled("evaluate")
        return super().evaluate(*args, **kwargs)

    def _split_targets(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Labels and teacher logits: cached in ``y`` if present, else the teacher runs."""
        if isinstance(y, dict):
            if LABELS_KEY not in y or TEACHER_LOGITS_KEY not in y:
                raise ValueError(
                    f"Cached targets must be a dict with keys {LABELS_KEY!r} and "
                    f"{TEACHER_LOGITS_KEY!r}, got keys {sorted(y)}; build them with "
                    "kdlib.soft_targets.cache_soft_targets()."
                )
            return y[LABELS_KEY], y[TEACHER_LOGITS_KEY]
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
        labels, teacher_logits = self._split_targets(x, y)
        if y_pred is None:
            y_pred = self(x, training=training)
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
        distill_loss = self.distillation_loss_fn(teacher_logits, student_logits, sample_weight)
        total = self.alpha * student_loss + (1.0 - self.alpha) * distill_loss
        replicas = _num_replicas_in_sync()
        # The student's regularisers, as Keras adds them: summed, a per-replica share each.
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
        return super().compute_metrics(x, labels, y_pred, sample_weight=sample_weight)

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
what Keras takes by :mod:`kdlib.distiller_args` (its ``FunctionLoss`` is importable here).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from kdlib import validate
from kdlib.distiller_args import (  # FunctionLoss re-exported: kdlib.distiller.FunctionLoss
    FunctionLoss,
    as_loss,
    class_weight_as_sample_weight,
)
from kdlib.losses import DistillationLoss
from kdlib.model_checks import (  # re-exported: kdlib.distiller.check_logits_model, ...
    PROBABILITIES_MESSAGE,
    applies_softmax,
    check_compatible,
    check_logits_model,
    check_training_data,
    looks_like_probabilities,
)

__all__ = [
    "PROBABILITIES_MESSAGE",
    "applies_softmax",
    "check_logits_model",
    "looks_like_probabilities",
    "LABELS_KEY",
    "TEACHER_LOGITS_KEY",
    "FunctionLoss",
    "Distiller",
]

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

    Examples
    --------
    >>> distiller = Distiller(teacher=teacher, student=student)
    >>> distiller.compile(optimizer="adam", metrics=["accuracy"], alpha=0.1, temperature=3.0)
    >>> history = distiller.fit(x_train, y_train, epochs=3, validation_data=(x_val, y_val))
    >>> distiller.student.save("student.keras")  # loads without kdlib
    """

    def __init__(self, *, teacher: keras.Model, student: keras.Model, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_compatible(teacher, student)
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
        self.student_loss_fn = as_loss(student_loss_fn, "student_loss_fn")
        self.distillation_loss_fn = as_loss(distillation_loss_fn, "distillation_loss_fn")
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

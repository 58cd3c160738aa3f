r"""Many small MLP students trained as one Keras model: a temperature x alpha sweep in one fit.

A 50-unit MLP at batch 128 is so little work per step that one-at-a-time training spends
most of its time in per-step overhead (the Python loop of ``fit``, launching tiny kernels).
:class:`StackedStudents` puts ``N`` students into one model whose dense layers carry a
student axis: each kernel has shape ``(fan_in, N, units)``, the first layer is one matrix
product with all ``N * units`` columns and later layers one ``keras.ops.einsum`` batched over
students, so a step costs about as much overhead as one student's step and the arithmetic
runs as a few larger matrix products.

Each student ``n`` has its own temperature :math:`T_n` and weight :math:`\alpha_n`, and its
own loss term; the model minimises their **sum** (not their mean)

.. math:: L = \sum_n \Big[\alpha_n \, \mathrm{CE}(y, s_n) + (1 - \alpha_n) \, T_n^2 \,
          \mathrm{KL}\big(\mathrm{softmax}(t / T_n) \,\|\, \mathrm{softmax}(s_n / T_n)\big)\Big]

Student ``n``'s weights appear in term ``n`` only, so the gradient of ``L`` with respect to
them is exactly the gradient of student ``n``'s own :class:`kdlib.Distiller` loss. SGD and
Adam update every weight from its own gradient (Adam's moments are per weight), so training
the stack gives every student the weights it would have reached alone, given the same
initial weights and the same batches (``tests/test_stacked.py`` checks this). An optimizer
that couples weights would break it: gradient-norm clipping (``clipnorm``, whose norm runs
over a variable that holds every student, and ``global_clipnorm``) is therefore refused by
:meth:`StackedStudents.compile`; element-wise ``clipvalue`` is per weight and fine.

``alpha = 1`` is training on the labels alone: a scratch baseline can share the stack.

Limits: the students share every batch (one data order per fit; seeds differ in initial
weights), learn from *cached* soft targets ``y = {"labels": ..., "teacher_logits": ...}`` (one
teacher's ``(n, classes)``, or ``(n, num_students, classes)``: a teacher per student)
(:func:`kdlib.soft_targets.cache_soft_targets`), and are MLPs (Flatten, ReLU hidden layers,
logits) with the layout of :func:`kdlib.models.mlp`, so any one of them can be copied out
as an ordinary Keras model (:meth:`StackedStudents.extract_student`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from kdlib import losses, models, validate
from kdlib.distiller import LABELS_KEY, TEACHER_LOGITS_KEY, check_teacher_logits

__all__ = [
    "StackedStudents",
]


@keras.saving.register_keras_serializable(package="kdlib")
class StackedDense(keras.layers.Layer):
    """``num_students`` independent Dense layers, applied at once with ``keras.ops.einsum``.

    Input ``(batch, fan_in)`` (the same input for every student) or
    ``(batch, num_students, fan_in)``; output ``(batch, num_students, units)``. The kernel
    has shape ``(fan_in, num_students, units)`` and the bias ``(num_students, units)``. Each
    student's kernel is initialised like a Dense layer's (Glorot uniform over its own
    ``fan_in`` and ``units``), biases with zeros.
    """

    def __init__(
        self, num_students: int, units: int, activation: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.num_students = int(num_students)
        self.units = int(units)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        fan_in = int(input_shape[-1])
        limit = math.sqrt(6.0 / (fan_in + self.units))  # glorot_uniform of one student
        # Layout (fan_in, students, units): with a shared input the layer is then one
        # (batch, fan_in) x (fan_in, students * units) matrix product, without a transpose.
        self.kernel = self.add_weight(
            shape=(fan_in, self.num_students, self.units),
            initializer=keras.initializers.RandomUniform(-limit, limit),
            name="kernel",
        )
        self.bias = self.add_weight(
            shape=(self.num_students, self.units), initializer="zeros", name="bias"
        )

    def call(self, inputs: Any) -> Any:
        kernel = ops.cast(self.kernel, inputs.dtype)
        bias = ops.cast(self.bias, inputs.dtype)
        if len(inputs.shape) == 2:
            flat = ops.reshape(kernel, (kernel.shape[0], self.num_students * self.units))
            outputs = ops.reshape(ops.matmul(inputs, flat), (-1, self.num_students, self.units))
        else:
            outputs = ops.einsum("bni,inu->bnu", inputs, kernel)
        return self.activation(outputs + bias)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_students=self.num_students,
            units=self.units,
            activation=keras.activations.serialize(self.activation),
        )
        return config


def _check_settings(
    temperatures: Sequence[float], alphas: Sequence[float]
) -> tuple[list[float], list[float]]:
    temperatures, alphas = list(temperatures), list(alphas)
    if not temperatures or len(temperatures) != len(alphas):
        raise ValueError(
            f"give one temperature and one alpha per student, got {len(temperatures)} "
            f"temperatures and {len(alphas)} alphas; e.g. temperatures=[2, 4], alphas=[0.1, 0.1]."
        )
    return (
        [validate.temperature(t, "temperatures") for t in temperatures],
        [validate.alpha(a, "alphas") for a in alphas],
    )


@keras.saving.register_keras_serializable(package="kdlib")
class StackedStudents(keras.Model):
    """``len(temperatures)`` MLP students in one model, each with its own T and alpha.

    Parameters
    ----------
    temperatures, alphas : sequence of float
        Student ``n`` is distilled at ``temperatures[n]`` with hard-label weight
        ``alphas[n]`` (``alpha = 1``: labels only, a scratch student).
    hidden : sequence of int
        Hidden ReLU units of every student, as in :func:`kdlib.models.mlp`.
    input_shape, num_classes :
        Image shape and number of classes.

    ``call`` returns logits of shape ``(batch, num_students, num_classes)``. Train with
    ``fit(x, {"labels": y, "teacher_logits": t})``; the reported ``loss`` is the sum of
    the students' losses.

    Examples
    --------
    >>> stack = StackedStudents(temperatures=[1, 4, 4], alphas=[1.0, 0.1, 0.5], hidden=(50,))
    >>> stack.compile(optimizer="adam")
    >>> stack.fit(x_train, cache_soft_targets(teacher, x_train, y_train), epochs=30)
    >>> stack.accuracies(x_val, y_val)          # one accuracy per student
    """

    def __init__(
        self,
        temperatures: Sequence[float],
        alphas: Sequence[float],
        hidden: Sequence[int] = (50,),
        input_shape: Sequence[int] = (28, 28),
        num_classes: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.temperatures, self.alphas = _check_settings(temperatures, alphas)
        self.hidden = validate.layer_sizes(hidden, "hidden", example="(50,)")
        self.image_shape = validate.layer_sizes(input_shape, "input_shape", example="(28, 28)")
        self.num_classes = validate.positive_int(num_classes, "num_classes", example=10)
        n = self.num_students
        self.flatten = keras.layers.Flatten()
        self.hidden_layers = [
            StackedDense(n, units, activation="relu", name=f"dense_{i}")
            for i, units in enumerate(self.hidden)
        ]
        self.logits_layer = StackedDense(n, self.num_classes, name="logits", dtype="float32")
        self.build((None, *self.image_shape))

    @property
    def num_students(self) -> int:
        return len(self.temperatures)

    def build(self, input_shape: Any) -> None:
        width = int(np.prod(self.image_shape))
        shape: tuple[int | None, ...] = (None, width)
        for layer in self.hidden_layers:
            layer.build(shape)
            shape = (None, self.num_students, layer.units)
        self.logits_layer.build(shape)
        self.built = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x = self.flatten(inputs)
        for layer in self.hidden_layers:
            x = layer(x)
        return self.logits_layer(x)

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        """The sum over students of ``alpha_n * CE + (1 - alpha_n) * T_n^2 * KL``."""
        if not isinstance(y, dict) or LABELS_KEY not in y or TEACHER_LOGITS_KEY not in y:
            raise ValueError(
                f"StackedStudents learns from cached soft targets: y must be a dict with keys "
                f"{LABELS_KEY!r} and {TEACHER_LOGITS_KEY!r}, got {type(y).__name__}; build "
                "it with kdlib.soft_targets.cache_soft_targets(teacher, x, labels)."
            )
        if sample_weight is not None:
            raise ValueError("StackedStudents does not take sample weights; drop them.")
        if y_pred is None:
            y_pred = self(x, training=training)
        total = ops.sum(self.student_losses(y[LABELS_KEY], y[TEACHER_LOGITS_KEY], y_pred))
        for extra in self.losses:
            total = total + extra
        return total

    def student_losses(self, labels: Any, teacher_logits: Any, student_logits: Any) -> Any:
        """Each student's batch-mean loss, shape ``(num_students,)``, in float32.

        ``student_logits`` has shape ``(batch, num_students, classes)``; ``teacher_logits``
        ``(batch, classes)`` (one teacher for all) or ``(batch, num_students, classes)`` (a
        teacher per student: e.g. ensembles of several sizes, or born-again generations).
        The same formula as :class:`kdlib.Distiller`'s total loss.
        """
        s = ops.cast(student_logits, "float32")
        t = ops.stop_gradient(ops.cast(teacher_logits, "float32"))
        n, k = self.num_students, self.num_classes
        # Cross-entropy of every (example, student) pair with the backend's fused op, the
        # one the Distiller's SparseCategoricalCrossentropy uses.
        flat_labels = ops.repeat(ops.cast(labels, "int32"), n, axis=0)
        ce = ops.sparse_categorical_crossentropy(
            flat_labels, ops.reshape(s, (-1, k)), from_logits=True
        )
        ce = ops.mean(ops.reshape(ce, (-1, n)), axis=0)
        # T_n^2 KL of every (example, student) pair: kdlib.losses' formula, each student at
        # its own temperature (shape (num_students, 1) broadcasts over the classes).
        temps = ops.convert_to_tensor(np.asarray(self.temperatures, "float32"))[:, None]
        t_each = t if len(t.shape) == 3 else ops.broadcast_to(ops.expand_dims(t, 1), ops.shape(s))
        soft = ops.mean(losses._t2_kl_from_logits(t_each, s, temps), axis=0)
        alphas = ops.convert_to_tensor(np.asarray(self.alphas, "float32"))
        return alphas * ce + (1.0 - alphas) * soft

    def compile(self, optimizer: Any = "rmsprop", *args: Any, **kwargs: Any) -> None:
        """``keras.Model.compile``, refusing gradient-norm clipping (see the module notes)."""
        optimizer = keras.optimizers.get(optimizer)
        for name in ("clipnorm", "global_clipnorm"):
            if getattr(optimizer, name, None) is not None:
                raise ValueError(
                    f"StackedStudents cannot use an optimizer with {name}="
                    f"{getattr(optimizer, name)!r}: the norm would be taken over every "
                    "student at once, so each student would no longer train as it would "
                    f"alone. Drop {name}, or clip element-wise with clipvalue=..."
                )
        super().compile(optimizer, *args, **kwargs)

    def fit(self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any) -> Any:
        """``keras.Model.fit``, after checking in-memory teacher logits: finite, and one
        per class of the students (a teacher of another class count would fail mid-fit)."""
        logits = y.get(TEACHER_LOGITS_KEY) if isinstance(y, dict) else None
        if logits is not None and hasattr(logits, "shape") and len(logits.shape) == 3:
            if int(logits.shape[1]) != self.num_students:
                raise ValueError(
                    f"teacher_logits has shape {tuple(logits.shape)}: a teacher per student "
                    f"needs shape (n, {self.num_students}, classes), one column per student; "
                    "or give (n, classes) for one teacher shared by all."
                )
            per_student = np.asarray(logits, dtype=np.float32)
            logits = per_student.reshape(-1, per_student.shape[-1])
        if logits is not None and hasattr(logits, "shape") and len(logits.shape) == 2:
            classes = int(logits.shape[-1])
            if classes != self.num_classes:
                raise ValueError(
                    f"the teacher's logits have {classes} classes, but the stacked students "
                    f"have {self.num_classes}; give a teacher with {self.num_classes} outputs "
                    f"(or StackedStudents(..., num_classes={classes}))."
                )
            check_teacher_logits(
                np.asarray(logits, dtype=np.float32), int(logits.shape[0]), "StackedStudents.fit"
            )
        return super().fit(x, y, *args, **kwargs)

    # ------------------------------------------------------------------ per-student access
    def accuracies(self, x: Any, y: Any, batch_size: int = 1000) -> np.ndarray:
        """Accuracy of every student on ``(x, y)``: a float array of shape (num_students,)."""
        predictions = self.predict_classes(x, batch_size=batch_size)
        return np.mean(predictions == np.asarray(y)[:, None], axis=0)

    def predict_classes(self, x: Any, batch_size: int = 1000) -> np.ndarray:
        """The class each student assigns to each image, shape (num_examples, num_students)."""
        logits = self.predict(x, batch_size=batch_size, verbose=0)
        return np.argmax(logits, axis=-1)

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not 0 <= int(index) < self.num_students:
            raise IndexError(
                f"student index must be in 0..{self.num_students - 1}, got {index!r}."
            )
        return int(index)

    def get_student_weights(self, index: int) -> list[np.ndarray]:
        """Student ``index``'s weights in the order of ``kdlib.models.mlp(...).get_weights()``."""
        index = self._check_index(index)
        weights = []
        for layer in [*self.hidden_layers, self.logits_layer]:
            weights += [
                ops.convert_to_numpy(layer.kernel)[:, index],
                ops.convert_to_numpy(layer.bias)[index],
            ]
        return weights

    def set_student_weights(self, index: int, weights: Sequence[np.ndarray]) -> None:
        """Set student ``index`` from ``kdlib.models.mlp(...).get_weights()`` (same hidden)."""
        index = self._check_index(index)
        layers = [*self.hidden_layers, self.logits_layer]
        if len(weights) != 2 * len(layers):
            raise ValueError(
                f"expected {2 * len(layers)} arrays (kernel and bias of {len(layers)} dense "
                f"layers), got {len(weights)}; pass kdlib.models.mlp(hidden={self.hidden})"
                ".get_weights()."
            )
        for i, layer in enumerate(layers):
            pairs = ((layer.kernel, weights[2 * i]), (layer.bias, weights[2 * i + 1]))
            for variable, value in pairs:
                current = ops.convert_to_numpy(variable)
                # the student axis is 1 in a kernel (fan_in, students, units), 0 in a bias
                view = current[:, index] if current.ndim == 3 else current[index]
                if tuple(np.shape(value)) != view.shape:
                    raise ValueError(
                        f"{variable.path}: student weights of shape {np.shape(value)} do not "
                        f"fit shape {view.shape}; the student must be an MLP with "
                        f"hidden={self.hidden}."
                    )
                view[...] = value
                variable.assign(current)

    def extract_student(self, index: int, name: str | None = None) -> keras.Model:
        """Student ``index`` as an ordinary Keras model (:func:`kdlib.models.mlp`), logits out."""
        model = models.mlp(
            hidden=self.hidden,
            input_shape=self.image_shape,
            num_classes=self.num_classes,
            name=name or f"student_{index}",
        )
        model.set_weights(self.get_student_weights(index))
        return model

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            temperatures=self.temperatures,
            alphas=self.alphas,
            hidden=list(self.hidden),
            input_shape=list(self.image_shape),
            num_classes=self.num_classes,
        )
        return config

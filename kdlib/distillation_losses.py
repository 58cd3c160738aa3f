r"""Distillation losses as composable parts of :class:`kdlib.Distiller`: logits, hints,
attention, relations and decoupled KD.

Each part reads named outputs of the teacher and the student (layer names of a functional
or Sequential model; ``None`` means the final logits) and returns a loss. The Distiller adds
them up,

.. math:: L = \alpha \, \mathrm{CE}(y, s) + (1 - \alpha) \sum_k w_k \, L_k ,

with ``distillation_loss_weights`` :math:`w_k` (1 each by default) and the ``alpha`` of
``compile``. The formulas live in :mod:`kdlib.losses`; a part only picks the tensors and
holds what it learns (a FitNets projector).

>>> distiller = Distiller(
...     teacher=teacher, student=student,
...     distillation_losses=[LogitsDistillation(temperature=4.0),
...                          AttentionTransfer(layer_pairs=[("t_conv2", "s_conv2")])],
...     distillation_loss_weights=[1.0, 100.0])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from kdlib import losses, validate

__all__ = [
    "DistillationPart",
    "LogitsDistillation",
    "FeatureDistillation",
    "AttentionTransfer",
    "RelationalDistillation",
    "DecoupledKD",
    "FeatureModels",
]

#: The key of a model's final output (its logits) among the outputs a part reads.
LOGITS = None


class DistillationPart(keras.layers.Layer):
    """Base class: one distillation loss between named teacher and student outputs.

    Subclasses set ``teacher_layers`` and ``student_layers`` (names, ``None`` for the
    logits) and implement :meth:`compute`, which returns a per-example loss of shape
    (batch,) or one scalar for the batch.
    """

    teacher_layers: tuple[str | None, ...] = (LOGITS,)
    student_layers: tuple[str | None, ...] = (LOGITS,)

    def setup(self, teacher_shapes: dict, student_shapes: dict) -> None:
        """Check the shapes of the outputs this part reads and create its weights."""

    def compute(self, teacher: dict, student: dict, labels: Any) -> Any:
        raise NotImplementedError


def _positive(value: Any, name: str, example: str) -> float:
    number = float(value)
    if not number > 0 or number == float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}; e.g. {example}.")
    return number


@keras.saving.register_keras_serializable(package="kdlib")
class LogitsDistillation(DistillationPart):
    r"""Hinton's soft-target loss on the logits, one value per example.

    :math:`T^2 \, \mathrm{KL}(\mathrm{softmax}(t/T) \,\|\, \mathrm{softmax}(s/T))` (Hinton et
    al., 2015), computed by :func:`kdlib.losses.distillation_loss`; the softmax is always
    applied, there is no other form."""

    def __init__(self, temperature: float = 3.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.temperature = validate.temperature(temperature)

    def compute(self, teacher: dict, student: dict, labels: Any) -> Any:
        return losses.distillation_loss(teacher[LOGITS], student[LOGITS], self.temperature)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="kdlib")
class FeatureDistillation(DistillationPart):
    r"""FitNets hints (Romero et al., 2015): the student's ``student_layer`` output, through
    a learned ``projector`` :math:`r`, regresses the teacher's ``teacher_layer`` output:

    .. math:: L = \frac{1}{D} \lVert h^{\mathcal T} - r(h^{\mathcal S}) \rVert_2^2
              \quad (\texttt{"mse"}) \qquad\text{or}\qquad
              1 - \cos\big(h^{\mathcal T}, r(h^{\mathcal S})\big) \quad (\texttt{"cosine"})

    per example. Without a ``projector``, none is used when the shapes agree, and a 1 x 1
    convolution (feature maps) or a Dense layer (vectors) to the teacher's channels is
    created when only the channels differ.
    """

    def __init__(
        self,
        teacher_layer: str,
        student_layer: str,
        projector: keras.layers.Layer | None = None,
        loss: str = "mse",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if loss not in ("mse", "cosine"):
            raise ValueError(f'loss must be "mse" or "cosine", got {loss!r}.')
        self.teacher_layer, self.student_layer, self.loss = teacher_layer, student_layer, loss
        self.teacher_layers, self.student_layers = (teacher_layer,), (student_layer,)
        if isinstance(projector, dict):
            projector = keras.saving.deserialize_keras_object(projector)
        self.projector = projector

    def setup(self, teacher_shapes: dict, student_shapes: dict) -> None:
        t_shape = tuple(teacher_shapes[self.teacher_layer])
        s_shape = tuple(student_shapes[self.student_layer])
        if self.projector is None and s_shape[1:] != t_shape[1:]:
            if len(s_shape) != len(t_shape) or s_shape[1:-1] != t_shape[1:-1]:
                raise ValueError(
                    f"FeatureDistillation cannot match the student's {self.student_layer!r} "
                    f"output {s_shape} to the teacher's {self.teacher_layer!r} output "
                    f"{t_shape}: only the last (channel) axis may differ without a projector."
                    " Pick layers of the same spatial size, or pass projector=<a Keras layer "
                    "mapping the student's shape to the teacher's>."
                )
            if len(s_shape) == 4:
                self.projector = keras.layers.Conv2D(t_shape[-1], 1, name=f"{self.name}_proj")
            else:
                self.projector = keras.layers.Dense(t_shape[-1], name=f"{self.name}_proj")
        if self.projector is not None:
            if not self.projector.built:
                self.projector.build(s_shape)
            out = tuple(self.projector.compute_output_shape(s_shape))
            if out[1:] != t_shape[1:]:
                raise ValueError(
                    f"The projector maps the student's {self.student_layer!r} output "
                    f"{s_shape} to {out}, but the teacher's {self.teacher_layer!r} output is "
                    f"{t_shape}; the projector must produce the teacher's shape."
                )

    def compute(self, teacher: dict, student: dict, labels: Any) -> Any:
        t = ops.cast(teacher[self.teacher_layer], "float32")
        s = student[self.student_layer]
        if self.projector is not None:
            s = self.projector(s)
        s = ops.cast(s, "float32")
        size = math.prod(t.shape[1:])  # static: the batch axis alone is unknown
        t, s = ops.reshape(t, (-1, size)), ops.reshape(s, (-1, size))
        if self.loss == "mse":
            return ops.sum(ops.square(t - s), axis=-1) / size
        t_n = t / ops.maximum(ops.sqrt(ops.sum(t * t, axis=-1, keepdims=True)), 1e-12)
        s_n = s / ops.maximum(ops.sqrt(ops.sum(s * s, axis=-1, keepdims=True)), 1e-12)
        return 1.0 - ops.sum(t_n * s_n, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "teacher_layer": self.teacher_layer,
            "student_layer": self.student_layer,
            "projector": keras.saving.serialize_keras_object(self.projector),
            "loss": self.loss,
        }


@keras.saving.register_keras_serializable(package="kdlib")
class AttentionTransfer(DistillationPart):
    r"""Attention transfer (Zagoruyko & Komodakis, 2017): for each (teacher layer, student
    layer) pair, the per-example :func:`kdlib.losses.attention_transfer_loss` of their
    spatial attention maps, summed over the pairs. Paired layers need the same H x W."""

    def __init__(self, layer_pairs: Sequence[Sequence[str]], p: float = 2, **kwargs: Any):
        super().__init__(**kwargs)
        pairs = [tuple(pair) for pair in layer_pairs]
        if not pairs or any(len(pair) != 2 for pair in pairs):
            raise ValueError(
                "layer_pairs must be a non-empty list of (teacher_layer, student_layer) "
                f'names, got {layer_pairs!r}; e.g. [("t_conv2", "s_conv2")].'
            )
        self.layer_pairs, self.p = pairs, _positive(p, "p", "p=2")
        self.teacher_layers = tuple(t for t, _ in pairs)
        self.student_layers = tuple(s for _, s in pairs)

    def setup(self, teacher_shapes: dict, student_shapes: dict) -> None:
        for t_name, s_name in self.layer_pairs:
            t_shape, s_shape = tuple(teacher_shapes[t_name]), tuple(student_shapes[s_name])
            if len(t_shape) != 4 or len(s_shape) != 4 or t_shape[1:3] != s_shape[1:3]:
                raise ValueError(
                    f"AttentionTransfer needs feature maps (batch, H, W, C) of the same H x W;"
                    f" the teacher's {t_name!r} gives {t_shape} and the student's {s_name!r} "
                    f"gives {s_shape}. Pair layers at the same resolution."
                )

    def compute(self, teacher: dict, student: dict, labels: Any) -> Any:
        total = 0.0
        for t_name, s_name in self.layer_pairs:
            total = total + losses.attention_transfer_loss(
                ops.cast(teacher[t_name], "float32"), ops.cast(student[s_name], "float32"), self.p
            )
        return total

    def get_config(self) -> dict[str, Any]:
        pairs = [list(pair) for pair in self.layer_pairs]
        return {**super().get_config(), "layer_pairs": pairs, "p": self.p}


@keras.saving.register_keras_serializable(package="kdlib")
class RelationalDistillation(DistillationPart):
    r"""Relational KD (Park et al., 2019) on the batch's embeddings:

    .. math:: L = \lambda_D \, L_{\text{distance}} + \lambda_A \, L_{\text{angle}}

    (:func:`kdlib.losses.rkd_distance_loss`, :func:`kdlib.losses.rkd_angle_loss`), one
    value per batch. The embeddings are the logits unless layer names are given; teacher
    and student widths may differ. The paper's weights are 25 and 50.
    """

    def __init__(
        self,
        distance_weight: float = 25.0,
        angle_weight: float = 50.0,
        teacher_layer: str | None = None,
        student_layer: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.distance_weight, self.angle_weight = float(distance_weight), float(angle_weight)
        if self.distance_weight < 0 or self.angle_weight < 0:
            raise ValueError(
                f"distance_weight and angle_weight must be >= 0, got {distance_weight!r} and "
                f"{angle_weight!r}; the paper uses 25 and 50."
            )
        self.teacher_layer, self.student_layer = teacher_layer, student_layer
        self.teacher_layers, self.student_layers = (teacher_layer,), (student_layer,)

    def compute(self, teacher: dict, student: dict, labels: Any) -> Any:
        t = ops.cast(teacher[self.teacher_layer], "float32")
        s = ops.cast(student[self.student_layer], "float32")
        total = 0.0
        if self.distance_weight:
            total = total + self.distance_weight * losses.rkd_distance_loss(t, s)
        if self.angle_weight:
            total = total + self.angle_weight * losses.rkd_angle_loss(t, s)
        return total

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "distance_weight": self.distance_weight,
            "angle_weight": self.angle_weight,
            "teacher_layer": self.teacher_layer,
            "student_layer": self.student_layer,
        }


@keras.saving.register_keras_serializable(package="kdlib")
class DecoupledKD(DistillationPart):
    r"""Decoupled KD (Zhao et al., 2022): :math:`\alpha \, \mathrm{TCKD} + \beta \,
    \mathrm{NCKD}` per example (:func:`kdlib.losses.dkd_loss`); needs the labels. The
    paper's CIFAR-100 setting is alpha=1, beta=8, T=4."""

    def __init__(
        self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.alpha, self.beta = float(alpha), float(beta)
        self.temperature = validate.temperature(temperature)
        losses.dkd_loss([[0.0, 0.0]], [[0.0, 0.0]], [0], self.alpha, self.beta, 1.0)  # checks

    def compute(self, teacher: dict, student: dict, labels: Any) -> Any:
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        return losses.dkd_loss(
            teacher[LOGITS], student[LOGITS], labels, self.alpha, self.beta, self.temperature
        )

    def get_config(self) -> dict[str, Any]:
        config = {"alpha": self.alpha, "beta": self.beta, "temperature": self.temperature}
        return {**super().get_config(), **config}


# ---------------------------------------------------------------- what the Distiller calls
def _feature_model(model: keras.Model, names: list[str], role: str) -> keras.Model | None:
    """One model with outputs [logits, *named layers' outputs], or None if no names."""
    if not names:
        return None
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValueError(
            f"The {role} has no defined inputs, so its layers cannot be read by name; build "
            "it with keras.Input (functional, or Sequential starting with keras.Input)."
        )
    known = [layer.name for layer in model.layers]
    found = []
    for name in names:
        if name not in known:
            raise ValueError(
                f"The {role} has no layer named {name!r}; its layers are {known}. Pass one "
                "of these names (see model.summary())."
            )
        found.append(model.get_layer(name).output)
    return keras.Model(inputs, [outputs[0], *found], name=f"{model.name}_features")


class FeatureModels:
    """The teacher's and student's outputs that a list of parts reads, each model run once.

    Checks every layer name and shape when built (before any training) and reduces the
    parts' losses: per-example losses to their (weighted) batch mean, as Keras losses do.
    """

    def __init__(
        self,
        teacher: keras.Model,
        student: keras.Model,
        parts: Sequence[DistillationPart],
        weights: Sequence[float] | None,
    ) -> None:
        parts = list(parts)
        if not parts or not all(isinstance(part, DistillationPart) for part in parts):
            raise TypeError(
                "distillation_losses must be a non-empty list of kdlib.distillation_losses "
                f"parts (LogitsDistillation, FeatureDistillation, ...), got {parts!r}."
            )
        weights = [1.0] * len(parts) if weights is None else [float(w) for w in weights]
        if len(weights) != len(parts) or any(not w >= 0 for w in weights):
            raise ValueError(
                f"distillation_loss_weights must hold one number >= 0 per part ({len(parts)}),"
                f" got {weights!r}."
            )
        self.parts, self.weights = parts, weights
        self.teacher_names = sorted({n for p in parts for n in p.teacher_layers if n})
        self.student_names = sorted({n for p in parts for n in p.student_layers if n})
        self.teacher_model = _feature_model(teacher, self.teacher_names, "teacher")
        self.student_model = _feature_model(student, self.student_names, "student")
        t_shapes = self._shapes(self.teacher_model, self.teacher_names)
        s_shapes = self._shapes(self.student_model, self.student_names)
        for part in parts:
            part.setup(t_shapes, s_shapes)

    @staticmethod
    def _shapes(model: keras.Model | None, names: list[str]) -> dict:
        if model is None:
            return {}
        return {n: tuple(t.shape) for n, t in zip(names, model.outputs[1:])}

    def outputs(self, which: str, model_outputs: Any) -> dict:
        """{None: logits, name: tensor, ...} from a feature model's outputs (or logits)."""
        names = self.teacher_names if which == "teacher" else self.student_names
        if not names:
            return {LOGITS: model_outputs}
        return {LOGITS: model_outputs[0], **dict(zip(names, model_outputs[1:]))}

    def loss(self, teacher: dict, student: dict, labels: Any, sample_weight: Any) -> Any:
        r""":math:`\sum_k w_k L_k`, each per-example :math:`L_k` reduced to
        :math:`\sum_i s_i L_{k,i} / N` (sample weights :math:`s_i`, batch size N)."""
        total = 0.0
        for part, weight in zip(self.parts, self.weights):
            value = ops.cast(part.compute(teacher, student, labels), "float32")
            if len(value.shape) == 1:
                if sample_weight is not None:
                    sw = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
                    value = value * sw
                value = ops.sum(value) / ops.cast(ops.shape(value)[0], "float32")
            total = total + weight * value
        return total

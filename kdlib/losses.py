r"""Distillation losses, written once and used everywhere (notebooks, Distiller, tests).

All functions use ``keras.ops`` only, so they run on TensorFlow, JAX and PyTorch, on CPU
or GPU, eagerly or compiled. Softmax, log-softmax and KL are computed in float32 when the
inputs are float16 or bfloat16 (mixed precision), because half precision loses the small
probabilities that carry the "dark knowledge".
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from kdlib import validate

_HALF = ("float16", "bfloat16")


def _as_float(x: Any) -> Any:
    """Convert to a tensor; half precision and integers become float32, float64 stays."""
    x = ops.convert_to_tensor(x)
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype in _HALF or not dtype.startswith("float"):
        x = ops.cast(x, "float32")
    return x


def _check_same_shape(a: Any, b: Any, a_name: str, b_name: str) -> None:
    """Raise ValueError if two static shapes differ (unknown dimensions match anything)."""
    sa, sb = tuple(a.shape), tuple(b.shape)
    same = len(sa) == len(sb) and all(x is None or y is None or x == y for x, y in zip(sa, sb))
    if not same:
        raise ValueError(
            f"{a_name} and {b_name} must have the same shape, got {sa} and {sb}; "
            "both should be (batch, num_classes) for the same batch and the same classes."
        )


def softmax_with_temperature(logits: Any, temperature: float = 1.0) -> Any:
    r"""Softmax of ``logits / temperature`` along the last axis.

    .. math:: p_i = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)}

    Computed as ``exp(z/T - max(z/T))`` normalised, so extreme logits such as
    ``[1000., 0., -1000.]`` give exact probabilities without overflow or NaN.

    Parameters
    ----------
    logits : array-like, shape (..., num_classes)
        Unnormalised scores (a model's outputs before any softmax).
    temperature : float
        T > 0. T -> 0 approaches the one-hot argmax, T -> inf the uniform distribution.

    Returns
    -------
    Tensor of probabilities, same shape as ``logits`` (float32 for half-precision input).
    """
    t = validate.temperature(temperature)
    z = _as_float(logits)
    return ops.softmax(z / t, axis=-1)


def kl_divergence(p: Any, q: Any) -> Any:
    r"""Per-example Kullback-Leibler divergence KL(p || q) in nats, over the last axis.

    .. math:: \mathrm{KL}(p \,\|\, q) = \sum_i p_i \, (\ln p_i - \ln q_i)

    ``p`` and ``q`` are probability arrays (not logits). Terms with ``p_i = 0`` contribute
    0 (the limit of ``p ln p``); a term with ``p_i > 0`` and ``q_i = 0`` gives ``inf``.

    Returns
    -------
    Tensor of shape ``p.shape[:-1]``.

    Raises
    ------
    ValueError
        If ``p`` and ``q`` have different shapes.
    """
    p = _as_float(p)
    q = _as_float(q)
    _check_same_shape(p, q, "p", "q")
    if p.dtype != q.dtype:
        q = ops.cast(q, p.dtype)
    positive = p > 0
    # Replace the masked entries by 1 so that neither log(0) nor 0 * inf appears,
    # in the value or in its gradient.
    safe_p = ops.where(positive, p, ops.ones_like(p))
    safe_q = ops.where(positive, q, ops.ones_like(q))
    terms = ops.where(positive, p * (ops.log(safe_p) - ops.log(safe_q)), ops.zeros_like(p))
    return ops.sum(terms, axis=-1)


def entropy(p: Any) -> Any:
    r"""Per-example entropy :math:`H(p) = -\sum_i p_i \ln p_i` in nats, over the last axis.

    Terms with ``p_i = 0`` contribute 0 (the limit of ``p ln p``).
    """
    p = _as_float(p)
    positive = p > 0
    safe_p = ops.where(positive, p, ops.ones_like(p))
    return -ops.sum(ops.where(positive, p * ops.log(safe_p), ops.zeros_like(p)), axis=-1)


def cross_entropy(p: Any, q: Any) -> Any:
    r"""Per-example cross-entropy :math:`H(p, q) = -\sum_i p_i \ln q_i` in nats (last axis).

    ``H(p, q) = H(p) + KL(p || q)``. Terms with ``p_i = 0`` contribute 0; a term with
    ``p_i > 0`` and ``q_i = 0`` gives ``inf``.
    """
    p = _as_float(p)
    q = _as_float(q)
    _check_same_shape(p, q, "p", "q")
    if p.dtype != q.dtype:
        q = ops.cast(q, p.dtype)
    positive = p > 0
    safe_q = ops.where(positive, q, ops.ones_like(q))
    return -ops.sum(ops.where(positive, p * ops.log(safe_q), ops.zeros_like(p)), axis=-1)


def distillation_loss(teacher_logits: Any, student_logits: Any, temperature: float) -> Any:
    r"""Per-example soft-target loss of Hinton et al. (2015).

    .. math:: L = T^2 \, \mathrm{KL}\big(\mathrm{softmax}(t/T) \,\|\, \mathrm{softmax}(s/T)\big)

    Computed from logits with log-softmax (no clipping, no epsilon) and in float32 even for
    float16/bfloat16 inputs. Its gradient with respect to the student logits is
    ``T * (softmax(s/T) - softmax(t/T))``: the ``T**2`` factor keeps the size of the soft
    term's gradient comparable across temperatures.

    Parameters
    ----------
    teacher_logits, student_logits : array-like, shape (batch, num_classes)
    temperature : float
        T > 0.

    Returns
    -------
    Tensor of shape ``(batch,)`` (float32, or float64 for float64 input).
    """
    t = validate.temperature(temperature)
    teacher_logits = _as_float(teacher_logits)
    student_logits = _as_float(student_logits)
    _check_same_shape(teacher_logits, student_logits, "teacher_logits", "student_logits")
    if student_logits.dtype != teacher_logits.dtype:
        student_logits = ops.cast(student_logits, teacher_logits.dtype)
    log_p = ops.log_softmax(teacher_logits / t, axis=-1)
    log_q = ops.log_softmax(student_logits / t, axis=-1)
    kl = ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)
    return (t * t) * kl


@keras.saving.register_keras_serializable(package="kdlib")
class DistillationLoss(keras.losses.Loss):
    r""":func:`distillation_loss` as a serializable ``keras.losses.Loss``.

    ``y_true`` holds the teacher's logits and ``y_pred`` the student's logits; the result is
    ``T**2 * KL(softmax(y_true/T) || softmax(y_pred/T))`` reduced over the batch (mean by
    default).
    """

    def __init__(
        self,
        temperature: float = 3.0,
        name: str = "distillation_loss",
        reduction: str = "sum_over_batch_size",
        dtype: str | None = "float32",
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = validate.temperature(temperature)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return distillation_loss(y_true, y_pred, self.temperature)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["temperature"] = self.temperature
        return config

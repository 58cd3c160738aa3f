r"""Distillation losses, written once and used everywhere (notebooks, Distiller, tests).

All functions use ``keras.ops`` only, so they run on TensorFlow, JAX and PyTorch, on CPU
or GPU, eagerly or compiled. Softmax, log-softmax and KL are computed in float32 when the
inputs are float16 or bfloat16 (mixed precision), because half precision loses the small
probabilities that carry the "dark knowledge".
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from kdlib import validate

__all__ = [
    "softmax_with_temperature",
    "kl_divergence",
    "entropy",
    "cross_entropy",
    "distillation_loss",
    "DistillationLoss",
]

_HALF = ("float16", "bfloat16")


def _as_float(x: Any) -> Any:
    """Convert to a tensor; half precision and integers become float32, float64 stays."""
    x = ops.convert_to_tensor(x)
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype in _HALF or not dtype.startswith("float"):
        x = ops.cast(x, "float32")
    return x


def _check_has_class_axis(x: Any, name: str) -> None:
    if len(x.shape) == 0:
        raise ValueError(
            f"{name} is a scalar, but it needs one value per class along its last axis, "
            "e.g. shape (num_classes,) or (batch, num_classes)."
        )


def _check_same_shape(a: Any, b: Any, a_name: str, b_name: str) -> None:
    """Raise ValueError if two static shapes differ (unknown dimensions match anything)."""
    _check_has_class_axis(a, a_name)
    _check_has_class_axis(b, b_name)
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
    t = validate.temperature(temperature, distillation=False)
    z = _as_float(logits)
    _check_has_class_axis(z, "logits")
    if len(z.shape) > 2:  # TensorFlow's softmax kernel takes at most 5 dimensions
        flat = ops.softmax(ops.reshape(z, (-1, z.shape[-1])) / t, axis=-1)
        return ops.reshape(flat, ops.shape(z))
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
    # Only exact zeros are dropped (NaN, or a negative "probability", must show in the
    # result). They are replaced by 1 so that neither log(0) nor 0 * inf appears, in the
    # value or in its gradient.
    zero = p == 0
    safe_p = ops.where(zero, ops.ones_like(p), p)
    safe_q = ops.where(zero, ops.ones_like(q), q)
    terms = ops.where(zero, ops.zeros_like(p), p * (ops.log(safe_p) - ops.log(safe_q)))
    return ops.sum(terms, axis=-1)


def entropy(p: Any) -> Any:
    r"""Per-example entropy :math:`H(p) = -\sum_i p_i \ln p_i` in nats, over the last axis.

    Terms with ``p_i = 0`` contribute 0 (the limit of ``p ln p``).
    """
    p = _as_float(p)
    zero = p == 0  # exact zeros only, so that NaN in gives NaN out
    safe_p = ops.where(zero, ops.ones_like(p), p)
    return -ops.sum(ops.where(zero, ops.zeros_like(p), p * ops.log(safe_p)), axis=-1)


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
    zero = p == 0  # exact zeros only, so that NaN in gives NaN out
    safe_q = ops.where(zero, ops.ones_like(q), q)
    return -ops.sum(ops.where(zero, ops.zeros_like(p), p * ops.log(safe_q)), axis=-1)


def distillation_loss(teacher_logits: Any, student_logits: Any, temperature: float) -> Any:
    r"""Per-example soft-target loss of Hinton et al. (2015).

    .. math:: L = T^2 \, \mathrm{KL}\big(\mathrm{softmax}(t/T) \,\|\, \mathrm{softmax}(s/T)\big)

    Its gradient with respect to the student logits is ``T * (softmax(s/T) - softmax(t/T))``:
    the ``T**2`` factor keeps the size of the soft term's gradient comparable across
    temperatures. Computed from logits in float32 (also for float16/bfloat16 inputs), with
    no clipping and no epsilon, and accurate to float32 precision for every accepted
    temperature (0.01 to 10^6), see :func:`_t2_kl_from_logits`. A teacher logit of
    ``-inf`` (a masked class, probability 0) is handled exactly.

    Parameters
    ----------
    teacher_logits, student_logits : array-like, shape (batch, num_classes)
    temperature : float
        0.01 <= T <= 10^6.

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
    return _t2_kl_from_logits(teacher_logits, student_logits, t)


#: Below |c| = 0.5, p (e^-c - 1 + c) comes from its Taylor series (the direct formula loses
#: digits to cancellation), up to c^17: the first omitted term is below 1e-20 of the sum, so
#: float64 inputs keep float64 precision too.
_SERIES_LIMIT = 0.5
_SERIES_LAST = 17
#: exp() arguments are capped here in the branch that is only used when KL < log 2, so the
#: branch that ``where`` discards never holds inf (whose gradient would be NaN).
_EXP_CAP = 20.0


def _t2_kl_from_logits(t_logits: Any, s_logits: Any, temperature: float) -> Any:
    r"""``T^2 KL(softmax(t/T) || softmax(s/T))`` without catastrophic cancellation.

    With ``p = softmax(t/T)``, ``u = t - s`` and the centred ``c = (u - E_p[u]) / T``,

    .. math:: \mathrm{KL} = \log \sum_j e^{r_j}, \quad
              r_j = \frac{s_j}{T} - \mathrm{LSE}(t/T) + \frac{E_p[u]}{T}
              = \log p_j - c_j \ (p_j > 0).

    The textbook form ``E_p[t - s]/T - LSE(t/T) + LSE(s/T)`` subtracts numbers of size
    ``log K`` to get a KL of size ``1/T^2``: in float32 that is 1 % off at T = 10^3 and
    meaningless beyond. Here, when KL < log 2,

    .. math:: T^2 \mathrm{KL} = T^2 \log(1 + S), \quad S = \sum_{p_j > 0} p_j
              (e^{-c_j} - 1 + c_j) + \sum_{p_j = 0} e^{r_j},

    a sum of non-negative terms (``sum p_j c_j = 0`` removes the first-order part), each
    computed without cancellation (``T^2 (e^{-c} - 1 + c)`` by its series in ``v = cT``
    for small ``c``). When KL >= log 2 the log-sum-exp of ``r`` is used directly: no
    cancellation at that size. Masked classes (teacher logit ``-inf``, ``p_j = 0``) only add
    the student's mass ``e^{r_j}``.

    ``temperature`` is a float, or a tensor with a class axis of size 1 that broadcasts
    against the logits (one T per row: :class:`kdlib.sweep.stacked.StackedStudents`).
    """
    zero = ops.zeros_like(t_logits)
    z_t = t_logits / temperature
    log_p = ops.log_softmax(z_t, axis=-1)
    p = ops.exp(log_p)
    valid = p > 0
    u = ops.where(valid, t_logits - s_logits, zero)  # no -inf - s for masked classes
    mean_u = ops.sum(p * u, axis=-1, keepdims=True)
    v = u - mean_u
    c = v / temperature
    # log p - c where p > 0 (most accurate); the same r for masked classes from s
    lse_t = ops.logsumexp(z_t, axis=-1, keepdims=True)
    r = ops.where(valid, log_p - c, s_logits / temperature - lse_t + mean_u / temperature)

    # Small-KL branch: W = T^2 S, term by term.
    small = valid & (ops.abs(c) < _SERIES_LIMIT)
    c_s = ops.where(small, c, zero)
    v_s = ops.where(small, v, zero)
    # (e^-c - 1 + c) / c^2 = sum_{k>=2} (-c)^(k-2) / k!, by Horner's rule
    series = 1.0 / math.factorial(_SERIES_LAST) + ops.zeros_like(c_s)
    for k in range(_SERIES_LAST - 1, 1, -1):
        series = 1.0 / math.factorial(k) - c_s * series
    t2 = temperature * temperature
    # where, not ops.minimum: on PyTorch Keras' minimum returns float32 for float64 inputs
    r_capped = ops.where(r < _EXP_CAP, r, ops.full_like(r, _EXP_CAP))
    direct = t2 * (ops.exp(r_capped) - ops.where(valid, p * (1.0 - c), zero))
    w = ops.sum(ops.where(small, p * v_s * v_s * series, direct), axis=-1, keepdims=True)
    x = (w / temperature) / temperature  # S; T^2 alone overflows float32 beyond T = 1.8e19
    positive = x > 0  # x = 0 only when KL = 0, where W = 0 too
    x_safe = ops.where(positive, x, ops.ones_like(x))
    log1p_over_x = ops.where(positive, ops.log1p(x_safe) / x_safe, ops.ones_like(x))
    small_kl = w * log1p_over_x

    large_kl = t2 * ops.logsumexp(r, axis=-1, keepdims=True)
    return ops.squeeze(ops.where(x <= 1.0, small_kl, large_kl), axis=-1)


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

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
    "attention_map",
    "attention_transfer_loss",
    "rkd_distance_loss",
    "rkd_angle_loss",
    "decoupled_kd_terms",
    "dkd_loss",
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
    return _distillation_loss(teacher_logits, student_logits, validate.temperature(temperature))


def _distillation_loss(teacher_logits: Any, student_logits: Any, temperature: float) -> Any:
    """:func:`distillation_loss` for a temperature already validated (by the caller's own
    boundary, e.g. :class:`DistillationLoss` at construction): nothing checked per call."""
    teacher_logits = _as_float(teacher_logits)
    student_logits = _as_float(student_logits)
    _check_same_shape(teacher_logits, student_logits, "teacher_logits", "student_logits")
    if student_logits.dtype != teacher_logits.dtype:
        student_logits = ops.cast(student_logits, teacher_logits.dtype)
    return _t2_kl_from_logits(teacher_logits, student_logits, temperature)


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
        # The temperature was validated once, in __init__: not again at every step.
        return _distillation_loss(y_true, y_pred, self.temperature)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["temperature"] = self.temperature
        return config


# ------------------------------------------------------------- beyond the logits: features
def attention_map(features: Any, p: float = 2) -> Any:
    r"""Spatial attention map of Zagoruyko & Komodakis (2017), flattened and L2-normalised.

    For a feature map :math:`A` of shape (batch, H, W, C) (channels last),

    .. math:: Q = \frac{1}{C} \sum_{c=1}^{C} |A_c|^p, \qquad
              \mathrm{attention\_map}(A) = \frac{\mathrm{vec}(Q)}{\lVert \mathrm{vec}(Q)
              \rVert_2}

    (the paper's :math:`F^p_{sum}`; the mean over channels instead of the sum, as in the
    authors' code, changes nothing after the normalisation). Multiplying ``A`` by a positive
    constant leaves the map unchanged.

    Parameters
    ----------
    features : array-like, shape (batch, H, W, C) or (batch, H, W)
        Activations of one convolutional layer (a rank-3 input is one channel).
    p : float
        Exponent > 0; the paper uses p = 2.

    Returns
    -------
    Tensor of shape (batch, H * W) with unit L2 norm per example (all zeros for an
    all-zero feature map).
    """
    if p <= 0:
        raise ValueError(f"p must be > 0, got {p!r}; the paper uses p=2.")
    a = _as_float(features)
    if len(a.shape) == 3:
        a = ops.expand_dims(a, -1)
    if len(a.shape) != 4:
        raise ValueError(
            f"features must have shape (batch, H, W, C), got {tuple(a.shape)}; attention "
            "maps are defined for convolutional feature maps (channels last)."
        )
    q = _mean(ops.power(ops.abs(a), p), axis=-1)
    q = ops.reshape(q, (-1, q.shape[1] * q.shape[2]))  # H, W static: a layer's output
    norm = ops.sqrt(ops.sum(q * q, axis=-1, keepdims=True))
    safe = ops.where(norm > 0, norm, ops.ones_like(norm))
    return q / safe


def attention_transfer_loss(teacher_features: Any, student_features: Any, p: float = 2) -> Any:
    r"""Per-example attention-transfer loss (Zagoruyko & Komodakis, 2017).

    .. math:: L_{AT} = \frac{1}{HW} \sum_{i=1}^{HW}
              \big(\mathrm{attention\_map}(S)_i - \mathrm{attention\_map}(T)_i\big)^2

    the mean squared difference of the normalised maps, as in the authors' code (their eq. 2
    writes the p-norm of the same difference, weighted by :math:`\beta/2`; the code's
    squared mean is what their :math:`\beta = 1000` refers to). The two feature maps may
    have different numbers of channels but need the same H and W. Zero when the maps agree,
    and unchanged when either feature map is multiplied by a positive constant.

    Returns
    -------
    Tensor of shape (batch,).
    """
    q_t = attention_map(teacher_features, p)
    q_s = attention_map(student_features, p)
    if tuple(q_t.shape)[1:] != tuple(q_s.shape)[1:]:
        raise ValueError(
            f"teacher and student feature maps must have the same spatial size H x W, got "
            f"{tuple(ops.shape(teacher_features))} and {tuple(ops.shape(student_features))};"
            " pick layers at the same resolution (channels may differ)."
        )
    if q_s.dtype != q_t.dtype:
        q_s = ops.cast(q_s, q_t.dtype)
    return _mean(ops.square(q_s - q_t), axis=-1)


def _mean(x: Any, axis: int | None = None) -> Any:
    """Mean as sum / count: ``ops.mean`` on PyTorch rounds float64 through float32."""
    if axis is None:
        return ops.sum(x) / ops.cast(ops.size(x), x.dtype)
    return ops.sum(x, axis=axis) / x.shape[axis]


def _as_embeddings(x: Any, name: str) -> Any:
    x = _as_float(x)
    if len(x.shape) < 2:
        raise ValueError(
            f"{name} must have shape (batch, ...), got {tuple(x.shape)}; RKD compares the "
            "examples of a batch with each other."
        )
    return ops.reshape(x, (-1, math.prod(x.shape[1:])))


def _huber(x: Any, delta: float = 1.0) -> Any:
    """Huber loss (smooth L1) with threshold ``delta``, elementwise."""
    a = ops.abs(x)
    return ops.where(a < delta, 0.5 * x * x / delta, a - 0.5 * delta)


def _safe_norm(diff: Any, keepdims: bool = False) -> Any:
    """Euclidean norm over the last axis; 0 with a finite (zero) gradient where it is 0."""
    d2 = ops.sum(diff * diff, axis=-1, keepdims=keepdims)
    positive = d2 > 0
    return ops.where(positive, ops.sqrt(ops.where(positive, d2, ops.ones_like(d2))), 0.0)


def _pairwise_distances(e: Any) -> Any:
    """(batch, batch) Euclidean distances, with a finite gradient on the diagonal."""
    return _safe_norm(ops.expand_dims(e, 1) - ops.expand_dims(e, 0))


def _normalised_distances(e: Any) -> Any:
    d = _pairwise_distances(e)
    n = ops.shape(e)[0]
    off_diagonal = 1.0 - ops.eye(n, dtype=d.dtype)
    mu = ops.sum(d * off_diagonal) / ops.maximum(ops.cast(n * (n - 1), d.dtype), 1.0)
    return d / ops.where(mu > 0, mu, ops.ones_like(mu)), off_diagonal


def rkd_distance_loss(teacher_embeddings: Any, student_embeddings: Any) -> Any:
    r"""Distance-wise relational loss of RKD (Park et al., 2019).

    .. math:: \psi_D(x_i, x_j) = \frac{\lVert x_i - x_j \rVert_2}{\mu}, \quad
              \mu = \frac{1}{N(N-1)} \sum_{i \ne j} \lVert x_i - x_j \rVert_2, \qquad
              L_D = \frac{1}{N(N-1)} \sum_{i \ne j}
              \ell_1\big(\psi_D(t_i, t_j) - \psi_D(s_i, s_j)\big)

    with :math:`\ell_1` the Huber loss (threshold 1). Teacher and student embeddings may
    have different widths: only distances between examples are compared. Unchanged by
    rotating, translating or uniformly scaling either set of embeddings.

    Parameters
    ----------
    teacher_embeddings, student_embeddings : array-like, shape (batch, ...)
        Flattened to (batch, features); the same batch of N >= 2 examples.

    Returns
    -------
    Scalar tensor (the loss of the batch: it is not a sum of per-example terms).
    """
    t = _as_embeddings(teacher_embeddings, "teacher_embeddings")
    s = _as_embeddings(student_embeddings, "student_embeddings")
    if s.dtype != t.dtype:
        s = ops.cast(s, t.dtype)
    psi_t, off_diagonal = _normalised_distances(t)
    psi_s, _ = _normalised_distances(s)
    n = ops.shape(t)[0]
    pairs = ops.maximum(ops.cast(n * (n - 1), t.dtype), 1.0)
    return ops.sum(_huber(psi_s - psi_t) * off_diagonal) / pairs


def _angles(e: Any) -> Any:
    """cos of the angle at x_j between x_i and x_k, for every (i, j, k): shape (N, N, N)."""
    diff = ops.expand_dims(e, 0) - ops.expand_dims(e, 1)  # [j, i] = x_i - x_j
    norm = _safe_norm(diff, keepdims=True)
    unit = diff / ops.where(norm > 0, norm, ops.ones_like(norm))  # zero vector for i = j
    return ops.einsum("jid,jkd->ijk", unit, unit)


def rkd_angle_loss(teacher_embeddings: Any, student_embeddings: Any) -> Any:
    r"""Angle-wise relational loss of RKD (Park et al., 2019).

    .. math:: \psi_A(x_i, x_j, x_k) = \cos \angle x_i x_j x_k = \langle e^{ij}, e^{kj}
              \rangle, \quad e^{ij} = \frac{x_i - x_j}{\lVert x_i - x_j \rVert_2}, \qquad
              L_A = \frac{1}{N^3} \sum_{i, j, k} \ell_1\big(\psi_A(t_i, t_j, t_k)
              - \psi_A(s_i, s_j, s_k)\big)

    with :math:`\ell_1` the Huber loss (threshold 1). As in the authors' code, the mean runs
    over all :math:`N^3` triplets, and a degenerate one (i = j or k = j) has
    :math:`e = 0` and cosine 0 for teacher and student alike. Unchanged by rotating,
    translating or uniformly scaling either set of embeddings.

    Returns
    -------
    Scalar tensor.
    """
    t = _as_embeddings(teacher_embeddings, "teacher_embeddings")
    s = _as_embeddings(student_embeddings, "student_embeddings")
    if s.dtype != t.dtype:
        s = ops.cast(s, t.dtype)
    return _mean(_huber(_angles(s) - _angles(t)))


# ---------------------------------------------------------------- decoupled KD
#: Stands in for log(0) of the masked class: exp() of it is exactly 0 in float32 and
#: float64, and unlike -inf it leaves no 0 * inf in values or gradients.
_MASKED = -1e9


def _target_and_rest(logits: Any, one_hot: Any, temperature: float) -> tuple[Any, Any, Any]:
    """log p_t, log(1 - p_t) and the log-softmax over the non-target classes, at T."""
    log_p = ops.log_softmax(logits / temperature, axis=-1)
    log_pt = ops.sum(one_hot * log_p, axis=-1)
    masked = ops.where(one_hot > 0, _MASKED, log_p)
    log_rest = ops.logsumexp(masked, axis=-1)  # log sum_{j != y} p_j, no 1 - p_t cancellation
    log_hat = ops.log_softmax(masked, axis=-1)  # log p_j / (1 - p_t) for j != y
    return log_pt, log_rest, log_hat


def decoupled_kd_terms(
    teacher_logits: Any, student_logits: Any, labels: Any, temperature: float
) -> tuple[Any, Any]:
    r"""Per-example target-class and non-target-class KD terms (Zhao et al., 2022).

    At temperature :math:`T`, with :math:`p = \mathrm{softmax}(z/T)`, the true class
    :math:`y`, the binary distribution :math:`b = (p_y, 1 - p_y)` and the distribution over
    the other classes :math:`\hat p_j = p_j / (1 - p_y)` (:math:`j \ne y`),

    .. math:: \mathrm{TCKD} = T^2 \, \mathrm{KL}(b^{\mathcal T} \,\|\, b^{\mathcal S}),
              \qquad \mathrm{NCKD} = T^2 \, \mathrm{KL}(\hat p^{\mathcal T} \,\|\,
              \hat p^{\mathcal S})

    and Hinton's loss splits as (their eq. 4, here with the :math:`T^2` of
    :func:`distillation_loss` on every term)

    .. math:: T^2 \, \mathrm{KL}(p^{\mathcal T} \,\|\, p^{\mathcal S}) = \mathrm{TCKD}
              + (1 - p^{\mathcal T}_y) \, \mathrm{NCKD}

    where :math:`p^{\mathcal T}_y` is the *teacher's* probability of the true class at
    temperature T: the more confident the teacher, the less NCKD counts in plain KD.

    Parameters
    ----------
    teacher_logits, student_logits : array-like, shape (batch, num_classes)
    labels : array-like of int, shape (batch,)
        The true classes.
    temperature : float
        T > 0.

    Returns
    -------
    (tckd, nckd): two tensors of shape (batch,).
    """
    t = validate.temperature(temperature)
    z_t = _as_float(teacher_logits)
    z_s = _as_float(student_logits)
    _check_same_shape(z_t, z_s, "teacher_logits", "student_logits")
    if z_s.dtype != z_t.dtype:
        z_s = ops.cast(z_s, z_t.dtype)
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) != 1:
        raise ValueError(
            f"labels must be integer class indices of shape (batch,), got shape "
            f"{tuple(labels.shape)}; for one-hot labels pass argmax(labels, axis=-1)."
        )
    one_hot = ops.one_hot(ops.cast(labels, "int32"), z_t.shape[-1], dtype=z_t.dtype)
    log_pt_t, log_rest_t, log_hat_t = _target_and_rest(z_t, one_hot, t)
    log_pt_s, log_rest_s, log_hat_s = _target_and_rest(z_s, one_hot, t)
    pt_t, rest_t = ops.exp(log_pt_t), ops.exp(log_rest_t)
    tckd = pt_t * (log_pt_t - log_pt_s) + rest_t * (log_rest_t - log_rest_s)
    hat_t = ops.exp(log_hat_t)  # exactly 0 at the true class
    nckd = ops.sum(ops.where(one_hot > 0, 0.0, hat_t * (log_hat_t - log_hat_s)), axis=-1)
    return t * t * tckd, t * t * nckd


def dkd_loss(
    teacher_logits: Any,
    student_logits: Any,
    labels: Any,
    alpha: float,
    beta: float,
    temperature: float,
) -> Any:
    r"""Per-example decoupled KD loss (Zhao et al., 2022).

    .. math:: L_{DKD} = \alpha \, \mathrm{TCKD} + \beta \, \mathrm{NCKD}

    with the terms of :func:`decoupled_kd_terms` (both carry :math:`T^2`). Plain KD is the
    special case :math:`\alpha = 1`, :math:`\beta = 1 - p^{\mathcal T}_y` per example; DKD
    frees :math:`\beta` (the paper uses :math:`\alpha = 1`, :math:`\beta = 8` on CIFAR-100).

    Returns
    -------
    Tensor of shape (batch,).
    """
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(
                f"{name} must be a finite number >= 0, got {value!r}; the paper uses "
                "alpha=1.0, beta=8.0."
            )
    tckd, nckd = decoupled_kd_terms(teacher_logits, student_logits, labels, temperature)
    return alpha * tckd + beta * nckd

r"""Distilling language models: per-token divergences over sequences, and a ``SequenceDistiller``.

Logits are ``(batch, time, vocab)``; ``mask`` is ``(batch, time)``, true where a position
predicts a real token. Every loss is a **mean over the unmasked tokens**,

.. math:: L = \frac{1}{N} \sum_{b, t:\, m_{bt}} D\big(p_T(\cdot \mid x_{b,\le t}),\,
          p_S(\cdot \mid x_{b,\le t})\big), \qquad N = \sum_{b,t} m_{bt},

so a masked position (padding, anything after the end of a sentence) changes nothing, and
the gradient of the forward KL with respect to the student's logits at an unmasked position
is :math:`(p_S - p_T) / N`. The divergences ``D``:

- :func:`token_kl`: forward KL(p_T ‖ p_S) (mass-covering, Hinton et al. 2015 per token) or
  reverse KL(p_S ‖ p_T) (mode-seeking, MiniLLM: Gu et al., 2024);
- :func:`generalized_jsd`: the generalised Jensen-Shannon divergence of GKD (Agarwal et al.,
  2024) as Hugging Face TRL's ``GKDTrainer`` defines it;
- :func:`top_k_kl`: forward KL when only the teacher's k most probable tokens were stored
  (a top-k logit cache), the rest of each distribution pooled in one tail bucket.

:class:`SequenceDistiller` trains a student with any of them through ``fit()``, on the data's
sentences or, for a share ``on_policy_fraction`` of the batches, on sentences the student
samples itself and the teacher scores (on-policy distillation, as in GKD).

All functions use ``keras.ops`` only (TensorFlow, JAX, PyTorch). Temperatures divide both
logits, with no T² factor (as TRL); float64 inputs are computed in float64.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from kdlib import validate
from kdlib.losses import _as_float, distillation_loss

__all__ = [
    "LOSSES",
    "prediction_mask",
    "token_kl",
    "generalized_jsd",
    "teacher_top_k",
    "top_k_kl",
    "sample_sequences",
    "SequenceDistiller",
]

#: Stands for log(0) where a finite number is needed (no inf - inf, no NaN gradient).
_LOG_ZERO = -1e30

#: The ``loss`` names :class:`SequenceDistiller` accepts.
LOSSES = ("forward_kl", "reverse_kl", "jsd", "top_k")


def _pair(teacher_logits: Any, student_logits: Any) -> tuple[Any, Any]:
    t, s = _as_float(teacher_logits), _as_float(student_logits)
    if len(t.shape) != 3 or len(s.shape) != 3:
        raise ValueError(
            f"logits must be (batch, time, vocab), got teacher {tuple(t.shape)} and student "
            f"{tuple(s.shape)}; add the missing axis (e.g. logits[None] for one sentence)."
        )
    if s.dtype != t.dtype:
        s = ops.cast(s, t.dtype)
    return t, s


def _masked_mean(per_token: Any, mask: Any) -> Any:
    """Mean of ``per_token`` (batch, time) over the positions where ``mask`` is true."""
    if mask is None:  # sum / size: Keras' torch mean() computes float64 in float32
        return ops.sum(per_token) / ops.sum(ops.ones_like(per_token))
    m = ops.convert_to_tensor(mask)
    if tuple(m.shape) != tuple(per_token.shape):
        raise ValueError(
            f"mask must be (batch, time) = {tuple(per_token.shape)}, like the logits without "
            f"their vocabulary axis, got {tuple(m.shape)}."
        )
    keep = ops.cast(m, "float32") > 0
    total = ops.sum(ops.where(keep, per_token, ops.zeros_like(per_token)))
    count = ops.sum(ops.cast(keep, per_token.dtype))
    return total / ops.maximum(count, ops.ones_like(count))


def _kl_from_log_probs(log_p: Any, log_q: Any) -> Any:
    """``sum p (log p - log q)`` over the last axis; terms with p = 0 count 0 (and no NaN)."""
    zero = log_p <= _LOG_ZERO
    safe_p = ops.where(zero, ops.zeros_like(log_p), log_p)
    safe_q = ops.where(zero, ops.zeros_like(log_q), log_q)
    terms = ops.exp(safe_p) * (safe_p - safe_q)
    return ops.sum(ops.where(zero, ops.zeros_like(terms), terms), axis=-1)


def _logaddexp(x: Any, y: Any) -> Any:
    """``ln(e^x + e^y)``; Keras' torch ``logaddexp`` returns float32 for float64 input."""
    high = ops.maximum(x, y)
    return high + ops.log1p(ops.exp(-ops.abs(x - y)))


def prediction_mask(tokens: Any, pad_id: int = 0, eos_id: int = 2) -> Any:
    """True where an input token predicts a next token: before the first ``EOS`` or ``PAD``.

    For inputs ``BOS w_1 ... w_n EOS PAD ...`` the mask is true on ``BOS, w_1, ..., w_n``
    (the last of them predicts ``EOS``). Returns a bool tensor of the same shape.
    """
    x = ops.convert_to_tensor(tokens)
    ended = ops.logical_or(ops.equal(x, pad_id), ops.equal(x, eos_id))
    return ops.equal(ops.cumsum(ops.cast(ended, "int32"), axis=-1), 0)


def token_kl(
    teacher_logits: Any,
    student_logits: Any,
    mask: Any = None,
    direction: str = "forward",
    temperature: float = 1.0,
) -> Any:
    r"""Mean per-token KL divergence between teacher and student over the unmasked tokens.

    .. math:: \text{forward: } \mathrm{KL}(p_T \,\|\, p_S) = \sum_v p_T(v)
              \ln\frac{p_T(v)}{p_S(v)}, \qquad
              \text{reverse: } \mathrm{KL}(p_S \,\|\, p_T),

    with :math:`p = \mathrm{softmax}(z / T)` at every position. Forward KL covers every token
    the teacher gives mass to; reverse KL lets the student drop modes and punishes mass where
    the teacher has little (MiniLLM, Gu et al., 2024). Computed with
    :func:`kdlib.losses.distillation_loss` (exact from logits, no epsilon) divided by T².

    Parameters
    ----------
    teacher_logits, student_logits : array-like, shape (batch, time, vocab)
    mask : array-like, shape (batch, time), optional
        True (or 1) where a position counts; all positions when None.
    direction : {"forward", "reverse"}
    temperature : float
        Divides both logits (0.01 to 10^6).

    Returns
    -------
    A scalar tensor in nats.
    """
    direction = validate.one_of(direction, ("forward", "reverse"), "direction")
    temp = validate.temperature(temperature)
    t, s = _pair(teacher_logits, student_logits)
    if direction == "forward":
        per_token = distillation_loss(t, s, temp)
    else:
        per_token = distillation_loss(s, t, temp)
    return _masked_mean(per_token / (temp * temp), mask)


def generalized_jsd(
    teacher_logits: Any,
    student_logits: Any,
    beta: float,
    mask: Any = None,
    temperature: float = 1.0,
) -> Any:
    r"""Mean per-token generalised Jensen-Shannon divergence (GKD; TRL's ``GKDTrainer``).

    .. math:: \mathrm{JSD}_\beta = \beta\, \mathrm{KL}(p_T \,\|\, M)
              + (1 - \beta)\, \mathrm{KL}(p_S \,\|\, M), \qquad
              M = \beta\, p_T + (1 - \beta)\, p_S \quad (0 < \beta < 1),

    and, as in TRL, :math:`\beta = 0` is the forward KL(p_T ‖ p_S) and :math:`\beta = 1` the
    reverse KL(p_S ‖ p_T) (:func:`token_kl`). At :math:`\beta = 0.5` it is symmetric and at
    most ln 2. Arguments as in :func:`token_kl`; ``beta`` in [0, 1].
    """
    b = validate.alpha(beta, "beta")
    if b == 0.0:
        return token_kl(teacher_logits, student_logits, mask, "forward", temperature)
    if b == 1.0:
        return token_kl(teacher_logits, student_logits, mask, "reverse", temperature)
    temp = validate.temperature(temperature)
    t, s = _pair(teacher_logits, student_logits)
    log_p_t = ops.log_softmax(t / temp, axis=-1)
    log_p_s = ops.log_softmax(s / temp, axis=-1)
    log_m = _logaddexp(log_p_t + math.log(b), log_p_s + math.log(1.0 - b))
    per_token = b * _kl_from_log_probs(log_p_t, log_m) + (1.0 - b) * _kl_from_log_probs(
        log_p_s, log_m
    )
    return _masked_mean(per_token, mask)


def teacher_top_k(teacher_logits: Any, k: int) -> tuple[Any, Any]:
    """The teacher's k most probable tokens at each position: ``(log_probs, ids)``.

    What a top-k logit cache stores, ``k`` log-probabilities (normalised over the whole
    vocabulary) and ``k`` token ids per position; each of shape (batch, time, k).

    Which of several *equal* logits is kept at the k-th place is the backend's choice
    (TensorFlow and JAX keep the lower index, PyTorch may not), so a cache of a teacher with
    exact ties can differ between backends; the KL over it is correct either way.
    """
    t = _as_float(teacher_logits)
    k = validate.positive_int(k, "k", 8)
    if t.shape[-1] is not None and k > t.shape[-1]:
        raise ValueError(f"k must be at most the vocabulary size {t.shape[-1]}, got k={k}.")
    log_p = ops.log_softmax(t, axis=-1)
    values, ids = ops.top_k(log_p, k, sorted=True)
    return values, ids


def top_k_kl(
    teacher_top_logprobs: Any,
    teacher_top_ids: Any,
    student_logits: Any,
    mask: Any = None,
) -> Any:
    r"""Forward KL over the teacher's k stored tokens plus one tail bucket for the rest.

    With :math:`K` the stored ids at a position,
    :math:`p_\text{tail} = 1 - \sum_{v \in K} p_T(v)` and
    :math:`q_\text{tail} = 1 - \sum_{v \in K} p_S(v)`,

    .. math:: \mathrm{KL}_k = \sum_{v \in K} p_T(v) \ln\frac{p_T(v)}{p_S(v)}
              + p_\text{tail} \ln\frac{p_\text{tail}}{q_\text{tail}},

    the KL between the two distributions coarsened to k + 1 outcomes (so 0 <= KL_k <= the
    full forward KL). With k equal to the vocabulary size the tail is empty and it equals
    :func:`token_kl`. The student's tail is computed as a log-sum-exp of its other logits
    (never as 1 minus a sum, which rounds to 0 or below).

    Parameters
    ----------
    teacher_top_logprobs : array-like, shape (batch, time, k)
        ``ln p_T(v)`` of the stored tokens (e.g. from :func:`teacher_top_k`).
    teacher_top_ids : int array-like, shape (batch, time, k)
        Their token ids, distinct at each position.
    student_logits : array-like, shape (batch, time, vocab)
    mask : array-like, shape (batch, time), optional

    Returns
    -------
    A scalar tensor in nats (mean over the unmasked tokens).
    """
    log_p_top = _as_float(teacher_top_logprobs)
    s = _as_float(student_logits)
    ids = ops.cast(ops.convert_to_tensor(teacher_top_ids), "int32")
    if len(s.shape) != 3 or tuple(log_p_top.shape) != tuple(ids.shape):
        raise ValueError(
            "student_logits must be (batch, time, vocab) and the teacher's top log-probs and "
            f"ids (batch, time, k) alike, got {tuple(s.shape)}, {tuple(log_p_top.shape)} and "
            f"{tuple(ids.shape)}."
        )
    if tuple(log_p_top.shape[:2]) != tuple(s.shape[:2]):
        raise ValueError(
            f"the stored top-k entries {tuple(log_p_top.shape)} and the student logits "
            f"{tuple(s.shape)} must cover the same (batch, time) positions."
        )
    if s.dtype != log_p_top.dtype:
        s = ops.cast(s, log_p_top.dtype)
    vocab = s.shape[-1]
    log_q = ops.log_softmax(s, axis=-1)
    log_q_top = ops.take_along_axis(log_q, ids, axis=-1)
    head = _kl_from_log_probs(log_p_top, log_q_top)

    # The tail: the teacher's from what is left of 1, the student's from its other logits.
    p_tail = -ops.expm1(ops.logsumexp(log_p_top, axis=-1))
    p_tail = ops.maximum(p_tail, ops.zeros_like(p_tail))
    chosen = ops.sum(ops.one_hot(ids, vocab, dtype=s.dtype), axis=-2) > 0
    rest = ops.where(chosen, ops.zeros_like(s) + _LOG_ZERO, s)  # not full_like: float32 on torch
    log_q_tail = ops.logsumexp(rest, axis=-1) - ops.logsumexp(s, axis=-1)
    has_tail = ops.logical_and(ops.any(ops.logical_not(chosen), axis=-1), p_tail > 0)
    safe_p_tail = ops.where(has_tail, p_tail, ops.ones_like(p_tail))
    safe_log_q_tail = ops.where(has_tail, log_q_tail, ops.zeros_like(log_q_tail))
    tail = ops.where(
        has_tail, safe_p_tail * (ops.log(safe_p_tail) - safe_log_q_tail), ops.zeros_like(p_tail)
    )
    return _masked_mean(head + tail, mask)


# ------------------------------------------------------------------------------- sampling
def _generate(
    model: keras.Model,
    batch_size: int,
    width: int,
    seed: Any,
    temperature: float,
    bos_id: int,
    eos_id: int,
    pad_id: int,
) -> Any:
    """Sample ``(batch_size, width)`` tokens from a causal model, one position at a time.

    Position 0 is ``BOS``; after ``EOS`` (or a sampled ``PAD``) the rest is ``PAD``. Runs
    the whole model once per position (no cache): the sentences here are short.
    """
    tokens = ops.concatenate(
        [
            ops.full((batch_size, 1), bos_id, dtype="int32"),
            ops.full((batch_size, width - 1), pad_id, dtype="int32"),
        ],
        axis=1,
    )
    done = ops.zeros((batch_size,), dtype="bool")
    positions = ops.arange(width, dtype="int32")[None, :]
    for t in range(width - 1):
        logits = model(tokens, training=False)[:, t, :]
        logits = ops.cast(logits, "float32") / temperature
        drawn = ops.cast(keras.random.categorical(logits, 1, seed=seed)[:, 0], "int32")
        drawn = ops.where(done, ops.full_like(drawn, pad_id), drawn)
        tokens = ops.where(positions == t + 1, drawn[:, None], tokens)
        done = ops.logical_or(done, ops.logical_or(drawn == eos_id, drawn == pad_id))
    return ops.stop_gradient(tokens)


def sample_sequences(
    model: keras.Model,
    num_sequences: int,
    width: int,
    seed: int,
    temperature: float = 1.0,
    batch_size: int = 512,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_id: int = 0,
) -> np.ndarray:
    """Draw sentences from a causal language model (logits ``(batch, time, vocab)``).

    Returns an int32 NumPy array ``(num_sequences, width)``: ``BOS``, the sampled tokens,
    ``PAD`` after the first ``EOS``. The same seed gives the same sentences.
    """
    num_sequences = validate.positive_int(num_sequences, "num_sequences", 1000)
    width = validate.positive_int(width, "width", 12)
    batch_size = validate.positive_int(batch_size, "batch_size", 512)
    temp = validate.temperature(temperature)
    generator = keras.random.SeedGenerator(validate.seed(seed))
    parts = []
    for start in range(0, num_sequences, batch_size):
        n = min(batch_size, num_sequences - start)
        tokens = _generate(model, n, width, generator, temp, bos_id, eos_id, pad_id)
        parts.append(np.asarray(ops.convert_to_numpy(tokens), dtype=np.int32))
    return np.concatenate(parts, axis=0)


# ------------------------------------------------------------------------------- distiller
@keras.saving.register_keras_serializable(package="kdlib")
class SequenceDistiller(keras.Model):
    r"""Train a causal ``student`` to match a frozen ``teacher`` token by token, with ``fit()``.

    ``fit(x)`` takes the model inputs ``BOS w_1 ... w_n EOS PAD ...`` (batch, time) and no
    labels: the teacher's next-token distributions are the targets, at the positions of
    :func:`prediction_mask`. With probability ``on_policy_fraction`` a training batch is
    replaced by sentences the student samples itself (no gradient through the sampling),
    which the teacher then scores (GKD's λ; Agarwal et al., 2024). ``evaluate()`` always
    scores the given sentences.

    Parameters
    ----------
    teacher, student : keras.Model
        Token ids (batch, time) -> logits (batch, time, vocab), same vocabulary. Keywords
        only. The teacher is frozen.
    loss : {"forward_kl", "reverse_kl", "jsd", "top_k"}
        :func:`token_kl` forward or reverse, :func:`generalized_jsd` with ``beta``, or
        :func:`top_k_kl` on the teacher's ``top_k`` most probable tokens.
    beta : float
        JSD weight in [0, 1] (``loss="jsd"``).
    top_k : int, optional
        Tokens kept per position (``loss="top_k"``).
    temperature : float
        Divides both models' logits in the loss (not in sampling).
    on_policy_fraction : float
        λ in [0, 1]: the share of training batches the student samples.
    seed : int, optional
        Seeds the on-policy sampling.
    """

    def __init__(
        self,
        *,
        teacher: keras.Model,
        student: keras.Model,
        loss: str = "forward_kl",
        beta: float = 0.5,
        top_k: int | None = None,
        temperature: float = 1.0,
        on_policy_fraction: float = 0.0,
        seed: int | None = None,
        bos_id: int = 1,
        eos_id: int = 2,
        pad_id: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.loss_name = validate.one_of(loss, LOSSES, "loss")
        self.beta = validate.alpha(beta, "beta")
        self.top_k = validate.optional_positive_int(top_k, "top_k", 8)
        if self.loss_name == "top_k" and self.top_k is None:
            raise ValueError("loss='top_k' needs the number of stored tokens, e.g. top_k=8.")
        self.temperature = validate.temperature(temperature)
        self.on_policy_fraction = validate.alpha(on_policy_fraction, "on_policy_fraction")
        self.seed = None if seed is None else validate.seed(seed)
        self.bos_id, self.eos_id, self.pad_id = int(bos_id), int(eos_id), int(pad_id)
        for name, model in (("teacher", teacher), ("student", student)):
            if not isinstance(model, keras.Model):
                raise TypeError(f"{name} must be a keras.Model, got {type(model).__name__}.")
        t_vocab = _vocab_size(teacher)
        s_vocab = _vocab_size(student)
        if t_vocab is not None and s_vocab is not None and t_vocab != s_vocab:
            raise ValueError(
                f"teacher and student must share the vocabulary, got {t_vocab} and {s_vocab} "
                "output logits."
            )
        if self.top_k is not None and t_vocab is not None and self.top_k > t_vocab:
            raise ValueError(f"top_k must be at most the vocabulary size {t_vocab}, got {top_k}.")
        teacher.trainable = False
        self.teacher = teacher
        self.student = student
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self.student(inputs, training=training)

    def divergence(self, teacher_logits: Any, student_logits: Any, mask: Any) -> Any:
        """The configured loss between the two models' logits (mean over ``mask``)."""
        t = self.temperature
        if self.loss_name == "forward_kl":
            return token_kl(teacher_logits, student_logits, mask, "forward", t)
        if self.loss_name == "reverse_kl":
            return token_kl(teacher_logits, student_logits, mask, "reverse", t)
        if self.loss_name == "jsd":
            return generalized_jsd(teacher_logits, student_logits, self.beta, mask, t)
        log_p, ids = teacher_top_k(_as_float(teacher_logits) / t, self.top_k)
        return top_k_kl(log_p, ids, _as_float(student_logits) / t, mask)

    def _on_policy_tokens(self, tokens: Any) -> Any:
        batch, width = ops.shape(tokens)[0], tokens.shape[1]
        sampled = _generate(
            self.student,
            batch,
            width,
            self.seed_generator,
            1.0,
            self.bos_id,
            self.eos_id,
            self.pad_id,
        )
        if self.on_policy_fraction >= 1.0:
            return sampled
        draw = keras.random.uniform((), seed=self.seed_generator)
        return ops.where(draw < self.on_policy_fraction, sampled, ops.cast(tokens, "int32"))

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        tokens = x
        student_logits = y_pred
        if training and self.on_policy_fraction > 0:
            tokens = self._on_policy_tokens(x)
            student_logits = self.student(tokens, training=training)
        teacher_logits = ops.stop_gradient(self.teacher(tokens, training=False))
        mask = prediction_mask(tokens, self.pad_id, self.eos_id)
        loss = self.divergence(teacher_logits, student_logits, mask)
        if self.losses:
            loss = loss + ops.sum(self.losses)
        return loss

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            teacher=keras.saving.serialize_keras_object(self.teacher),
            student=keras.saving.serialize_keras_object(self.student),
            loss=self.loss_name,
            beta=self.beta,
            top_k=self.top_k,
            temperature=self.temperature,
            on_policy_fraction=self.on_policy_fraction,
            seed=self.seed,
            bos_id=self.bos_id,
            eos_id=self.eos_id,
            pad_id=self.pad_id,
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SequenceDistiller:
        config = dict(config)
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"))
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        return cls(teacher=teacher, student=student, **config)


def _vocab_size(model: keras.Model) -> int | None:
    try:
        shape = model.output_shape
    except (AttributeError, ValueError):
        return None
    return shape[-1] if isinstance(shape, tuple) and shape else None

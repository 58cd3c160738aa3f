"""kdlib.sequence against float64 NumPy references, analytic gradients and properties.

Also kdlib.tiny_language (exact probabilities, membership, sampling) and the small causal
transformer of kdlib.causal_transformer. Runs on TensorFlow, JAX and PyTorch.
"""

from __future__ import annotations

import itertools
import math

import keras
import numpy as np
import pytest
from keras import ops
from reference import np_kl, np_log_softmax, np_softmax
from scipy import stats

from kdlib import sequence
from kdlib.causal_transformer import causal_transformer
from kdlib.tiny_language import BOS, EOS, PAD, HiddenMarkovLanguage, default_language

# JAX computes float64 input in float32 unless jax_enable_x64 is set (process-wide); some of
# Keras' torch ops (logaddexp, maximum with a Python float, and a step inside
# kdlib.losses.distillation_loss at T != 1) round float64 through float32.
RTOL = {"jax": 1e-5, "torch": 1e-6}.get(keras.backend.backend(), 1e-10)
ATOL = 1e-6 if keras.backend.backend() == "jax" else 1e-12
B, T, V = 3, 5, 7


def to_np(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


@pytest.fixture
def logits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    t = rng.normal(0, 2, (B, T, V))
    s = rng.normal(0, 2, (B, T, V))
    mask = rng.random((B, T)) < 0.7
    mask[0, 0] = True
    return t, s, mask


# ---------------------------------------------------------------- float64 references
def np_masked_mean(per_token: np.ndarray, mask: np.ndarray | None) -> float:
    if mask is None:
        return float(per_token.mean())
    return float(per_token[mask].sum() / max(mask.sum(), 1))


def np_token_kl(t, s, mask=None, direction="forward", temperature=1.0) -> float:
    p, q = np_softmax(t, temperature), np_softmax(s, temperature)
    per = np_kl(p, q) if direction == "forward" else np_kl(q, p)
    return np_masked_mean(per, mask)


def np_jsd(t, s, beta, mask=None, temperature=1.0) -> float:
    """TRL's generalised JSD, written from its definition with probabilities (float64)."""
    p, q = np_softmax(t, temperature), np_softmax(s, temperature)
    if beta == 0:
        per = np_kl(p, q)
    elif beta == 1:
        per = np_kl(q, p)
    else:
        m = beta * p + (1 - beta) * q
        per = beta * np_kl(p, m) + (1 - beta) * np_kl(q, m)
    return np_masked_mean(per, mask)


def np_top_k_kl(t, s, k, mask=None) -> float:
    """KL between p_T and p_S coarsened to the teacher's top k tokens and one tail bucket."""
    p, q = np_softmax(t), np_softmax(s)
    order = np.argsort(-p, axis=-1)[..., :k]
    p_top = np.take_along_axis(p, order, -1)
    q_top = np.take_along_axis(q, order, -1)
    if k == p.shape[-1]:  # no tail bucket
        return np_masked_mean(np_kl(p_top, q_top), mask)
    p_c = np.concatenate([p_top, 1 - p_top.sum(-1, keepdims=True)], -1)
    q_c = np.concatenate([q_top, 1 - q_top.sum(-1, keepdims=True)], -1)
    return np_masked_mean(np_kl(np.clip(p_c, 0, None), q_c), mask)


# ---------------------------------------------------------------- token_kl
@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_token_kl_matches_numpy(logits, direction, temperature):
    t, s, mask = logits
    rtol = RTOL
    got = to_np(sequence.token_kl(t, s, mask, direction, temperature))
    ref = np_token_kl(t, s, mask, direction, temperature)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=ATOL)
    no_mask = to_np(sequence.token_kl(t, s, None, direction, temperature))
    np.testing.assert_allclose(no_mask, np_token_kl(t, s, None, direction, temperature), rtol)


def test_token_kl_of_a_distribution_with_itself_is_zero(logits):
    t, _, mask = logits
    for direction in ("forward", "reverse"):
        assert abs(float(to_np(sequence.token_kl(t, t + 3.0, mask, direction)))) < 1e-6


def test_forward_and_reverse_differ_and_are_swapped_arguments(logits):
    t, s, mask = logits
    forward = to_np(sequence.token_kl(t, s, mask, "forward"))
    reverse = to_np(sequence.token_kl(t, s, mask, "reverse"))
    assert abs(forward - reverse) > 1e-3
    np.testing.assert_allclose(to_np(sequence.token_kl(s, t, mask, "forward")), reverse, 1e-6)


def test_token_kl_refuses_bad_arguments(logits):
    t, s, mask = logits
    with pytest.raises(ValueError, match="direction"):
        sequence.token_kl(t, s, mask, direction="backward")
    with pytest.raises(ValueError, match=r"\(batch, time, vocab\)"):
        sequence.token_kl(t[0], s[0])
    with pytest.raises(ValueError, match="mask must be"):
        sequence.token_kl(t, s, mask[:, :2])


def _grad_wrt_student(f, t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """d f(t, s) / d s with the backend's autodiff (f returns a scalar)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        s_var = tf.Variable(s)
        with tf.GradientTape() as tape:
            loss = f(t, s_var)
        return tape.gradient(loss, s_var).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: f(t, v))(s))
    if backend == "torch":
        import torch

        s_t = torch.tensor(s, requires_grad=True)
        f(torch.tensor(t), s_t).backward()
        return s_t.grad.numpy()
    pytest.skip(f"no autodiff helper for backend {backend}")


def test_gradient_of_forward_kl_is_q_minus_p_over_the_token_count(logits):
    t, s, mask = logits
    got = _grad_wrt_student(lambda a, b: sequence.token_kl(a, b, mask), t, s)
    analytic = (np_softmax(s) - np_softmax(t)) * mask[..., None] / mask.sum()
    np.testing.assert_allclose(got, analytic, rtol=1e-5, atol=1e-7)


def test_gradient_of_reverse_kl_matches_the_analytic_formula(logits):
    t, s, mask = logits
    got = _grad_wrt_student(lambda a, b: sequence.token_kl(a, b, mask, "reverse"), t, s)
    q, log_ratio = np_softmax(s), np_log_softmax(s) - np_log_softmax(t)
    kl = np.sum(q * log_ratio, axis=-1, keepdims=True)
    analytic = q * (log_ratio - kl) * mask[..., None] / mask.sum()
    np.testing.assert_allclose(got, analytic, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- masking
@pytest.mark.parametrize(
    "loss",
    [
        lambda t, s, m: sequence.token_kl(t, s, m),
        lambda t, s, m: sequence.token_kl(t, s, m, "reverse"),
        lambda t, s, m: sequence.generalized_jsd(t, s, 0.5, m),
        lambda t, s, m: sequence.top_k_kl(*sequence.teacher_top_k(t, 3), s, m),
    ],
    ids=["forward", "reverse", "jsd", "top_k"],
)
def test_masked_positions_change_nothing(logits, loss):
    t, s, mask = logits
    rng = np.random.default_rng(1)
    t2, s2 = t.copy(), s.copy()
    t2[~mask] = rng.normal(0, 50, (int((~mask).sum()), V))
    s2[~mask] = rng.normal(0, 50, (int((~mask).sum()), V))
    np.testing.assert_allclose(to_np(loss(t2, s2, mask)), to_np(loss(t, s, mask)), rtol=1e-6)
    grad = _grad_wrt_student(lambda a, b: loss(a, b, mask), t2, s2)
    assert np.all(grad[~mask] == 0) and np.all(np.isfinite(grad))
    # ... and the value is the mean over the unmasked positions alone
    kept = mask.reshape(-1)
    flat_t, flat_s = t.reshape(1, -1, V)[:, kept], s.reshape(1, -1, V)[:, kept]
    np.testing.assert_allclose(to_np(loss(t, s, mask)), to_np(loss(flat_t, flat_s, None)), 1e-6)


def test_prediction_mask_stops_at_the_first_eos_or_pad():
    tokens = np.array([[BOS, 5, 6, EOS, PAD], [BOS, 7, PAD, 8, 9], [BOS, 3, 4, 5, 6]])
    expected = [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    np.testing.assert_array_equal(to_np(sequence.prediction_mask(tokens)), expected)


# ---------------------------------------------------------------- generalized JSD
@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_jsd_matches_numpy(logits, beta):
    t, s, mask = logits
    got = to_np(sequence.generalized_jsd(t, s, beta, mask))
    np.testing.assert_allclose(got, np_jsd(t, s, beta, mask), rtol=RTOL, atol=ATOL)
    hot = to_np(sequence.generalized_jsd(t, s, beta, mask, temperature=2.0))
    np.testing.assert_allclose(hot, np_jsd(t, s, beta, mask, 2.0), rtol=RTOL, atol=ATOL)


def test_jsd_ends_are_the_forward_and_reverse_kl(logits):
    t, s, mask = logits
    for beta, direction in ((0.0, "forward"), (1.0, "reverse")):
        np.testing.assert_allclose(
            to_np(sequence.generalized_jsd(t, s, beta, mask)),
            np_token_kl(t, s, mask, direction),
            rtol=RTOL,
        )


def test_jsd_is_symmetric_at_one_half_and_bounded_by_log_2(logits):
    t, s, mask = logits
    a = to_np(sequence.generalized_jsd(t, s, 0.5, mask))
    b = to_np(sequence.generalized_jsd(s, t, 0.5, mask))
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert 0 < a <= math.log(2)
    # Disjoint supports reach the bound: one-hot distributions on different tokens.
    far_t = np.full((1, 1, V), -1e4)
    far_s = np.full((1, 1, V), -1e4)
    far_t[..., 0], far_s[..., 1] = 0.0, 0.0
    np.testing.assert_allclose(to_np(sequence.generalized_jsd(far_t, far_s, 0.5)), math.log(2))
    assert abs(float(to_np(sequence.generalized_jsd(t, t, 0.5, mask)))) < 1e-7


def test_jsd_refuses_beta_outside_zero_one(logits):
    t, s, _ = logits
    with pytest.raises(ValueError, match="beta"):
        sequence.generalized_jsd(t, s, 1.5)


# ---------------------------------------------------------------- top-k KL
@pytest.mark.parametrize("k", [1, 3, V])
def test_top_k_kl_matches_numpy(logits, k):
    t, s, mask = logits
    log_p, ids = sequence.teacher_top_k(t, k)
    np.testing.assert_array_equal(to_np(ids), np.argsort(-t, axis=-1)[..., :k])
    np.testing.assert_allclose(
        to_np(log_p), np.sort(np_log_softmax(t), -1)[..., ::-1][..., :k], rtol=1e-6
    )
    got = to_np(sequence.top_k_kl(log_p, ids, s, mask))
    np.testing.assert_allclose(got, np_top_k_kl(t, s, k, mask), rtol=1e-5, atol=1e-7)


def test_top_k_kl_with_the_whole_vocabulary_is_token_kl(logits):
    t, s, mask = logits
    log_p, ids = sequence.teacher_top_k(t, V)
    np.testing.assert_allclose(
        to_np(sequence.top_k_kl(log_p, ids, s, mask)),
        to_np(sequence.token_kl(t, s, mask)),
        rtol=1e-6,
    )
    # ... in any order of the stored tokens
    perm = np.random.default_rng(2).permutation(V)
    shuffled = sequence.top_k_kl(to_np(log_p)[..., perm], to_np(ids)[..., perm].astype(int), s)
    np.testing.assert_allclose(to_np(shuffled), np_token_kl(t, s), rtol=1e-5)


def test_top_k_kl_grows_with_k_up_to_the_full_kl(logits):
    t, s, mask = logits
    values = [
        float(to_np(sequence.top_k_kl(*sequence.teacher_top_k(t, k), s, mask)))
        for k in range(1, V + 1)
    ]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(values))  # data processing ineq.
    np.testing.assert_allclose(values[-1], np_token_kl(t, s, mask), rtol=1e-5)


def test_top_k_kl_refuses_mismatched_shapes(logits):
    t, s, _ = logits
    log_p, ids = sequence.teacher_top_k(t, 2)
    with pytest.raises(ValueError, match="same"):
        sequence.top_k_kl(log_p, ids, s[:1])
    with pytest.raises(ValueError, match="at most the vocabulary"):
        sequence.teacher_top_k(t, V + 1)


# ---------------------------------------------------------------- the tiny language
def small_language() -> HiddenMarkovLanguage:
    """Two states, three words, at most three words: small enough to enumerate."""
    return HiddenMarkovLanguage(
        start=[0.6, 0.4],
        transition=[[0.3, 0.7], [1.0, 0.0]],
        emission=[[0.5, 0.5, 0.0], [0.0, 0.2, 0.8]],
        stop=[0.25, 0.5],
        max_words=3,
    )


def brute_force_prob(lang: HiddenMarkovLanguage, words: list[int]) -> float:
    """P(BOS words EOS) summed over every hidden path (independent of the forward pass)."""
    n, total = len(words), 0.0
    for path in itertools.product(range(lang.start.size), repeat=n):
        p = lang.start[path[0]]
        for i, (h, w) in enumerate(zip(path, words)):
            p *= lang.emission[h, w - 3]
            if i + 1 < n:
                p *= (1 - lang.stop[h]) * lang.transition[h, path[i + 1]]
        p *= 1.0 if n == lang.max_words else lang.stop[path[-1]]
        total += p
    return total


def test_sentence_probabilities_match_brute_force_and_sum_to_one():
    lang = small_language()
    total = 0.0
    for n in range(1, lang.max_words + 1):
        for words in itertools.product(range(3, lang.vocab_size), repeat=n):
            ref = brute_force_prob(lang, list(words))
            got = math.exp(lang.log_prob([BOS, *words, EOS]))
            assert got == pytest.approx(ref, rel=1e-12, abs=1e-15)
            assert lang.accepts([BOS, *words, EOS]) == (ref > 0)
            total += ref
    assert total == pytest.approx(1.0, abs=1e-12)


def test_next_token_distributions_sum_to_one_and_agree_with_the_table():
    lang = default_language()
    sentences = lang.sample(200, seed=0)
    probs, mask = lang.next_token_table(sentences[:, :-1])
    np.testing.assert_allclose(probs[mask].sum(-1), 1.0, atol=1e-12)
    assert np.all(probs[~mask] == 0)
    for b in range(20):
        for t in np.flatnonzero(mask[b]):
            direct = lang.next_token_distribution(sentences[b, : t + 1])
            np.testing.assert_allclose(probs[b, t], direct, atol=1e-14)
    # every sampled token had probability > 0, and position t's target is token t + 1
    targets = sentences[:, 1:]
    assert np.all(np.take_along_axis(probs, targets[..., None], -1)[..., 0][mask] > 0)
    np.testing.assert_array_equal(mask, targets != PAD)


def test_sampled_sentences_are_accepted_and_others_are_not():
    lang = default_language()
    sentences = lang.sample(300, seed=1)
    assert all(lang.accepts(s) for s in sentences)
    assert sentences.shape == (300, lang.width) and np.all(sentences[:, 0] == BOS)
    rng = np.random.default_rng(0)
    impossible = [
        w for w in range(3, lang.vocab_size) if lang.start @ lang.emission[:, w - 3] == 0
    ]
    assert impossible, "the default language should have words that cannot start a sentence"
    assert not lang.accepts([BOS, impossible[0], EOS])
    assert not lang.accepts([BOS, 5, 6])  # no EOS
    assert not lang.accepts([BOS, *rng.integers(3, 32, lang.max_words + 1), EOS])  # too long
    with pytest.raises(ValueError, match="cannot produce"):
        lang.next_token_distribution([BOS, impossible[0]])


@pytest.mark.parametrize("prefix", [[BOS], "after_two"])
def test_empirical_next_token_frequencies_match_the_exact_distribution(prefix):
    lang = default_language()
    sentences = lang.sample(6000, seed=2)
    if prefix == "after_two":
        words, counts = np.unique(sentences[:, 1:3], axis=0, return_counts=True)
        prefix = [BOS, *words[np.argmax(counts)].tolist()]
    n = len(prefix)
    rows = np.all(sentences[:, :n] == prefix, axis=1)
    following = sentences[rows, n]
    exact = lang.next_token_distribution(prefix)
    freq = np.bincount(following, minlength=lang.vocab_size)
    # each count is binomial(n_rows, p); a 4-sigma-like two-sided bound from the binomial.
    low = stats.binom.ppf(1e-5, rows.sum(), exact)
    high = stats.binom.isf(1e-5, rows.sum(), exact)
    assert np.all((freq >= low) & (freq <= high)), (freq, exact * rows.sum())


def test_language_refuses_rows_that_do_not_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        HiddenMarkovLanguage([0.5, 0.4], np.eye(2), np.eye(2), [0.5, 0.5], 3)


# ---------------------------------------------------------------- models and the distiller
def tiny_model(seed: int, dim: int = 8) -> keras.Model:
    lang = default_language()
    return causal_transformer(
        lang.vocab_size, lang.width, dim=dim, num_heads=2, num_layers=1, seed=seed
    )


def test_transformer_is_causal():
    model = tiny_model(0)
    x = np.array([[BOS, 5, 6, 7, 8, 9]], dtype="int32")
    y = x.copy()
    y[0, 4:] = [20, 21]
    a, b = to_np(model(x)), to_np(model(y))
    np.testing.assert_allclose(a[:, :4], b[:, :4], atol=1e-6)  # the future changes nothing
    assert not np.allclose(a[:, 4:], b[:, 4:])


def test_sample_sequences_is_reproducible_and_well_formed():
    model = tiny_model(0)
    a = sequence.sample_sequences(model, 20, 12, seed=3, batch_size=8)
    b = sequence.sample_sequences(model, 20, 12, seed=3, batch_size=8)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (20, 12) and np.all(a[:, 0] == BOS)
    for row in a:
        ends = np.flatnonzero((row[1:] == EOS) | (row[1:] == PAD))
        if ends.size:
            assert np.all(row[ends[0] + 2 :] == PAD)


def test_sample_sequences_follows_the_model_distribution():
    """A model whose logits ignore the input: the first sampled token has its softmax."""
    lang = default_language()
    bias = np.random.default_rng(0).normal(0, 1, lang.vocab_size)
    inputs = keras.Input((None,), dtype="int32")
    zeros = keras.layers.Embedding(lang.vocab_size, 1, embeddings_initializer="zeros")(inputs)
    logits = keras.layers.Dense(lang.vocab_size, bias_initializer="zeros")(zeros)
    model = keras.Model(inputs, logits)
    model.layers[-1].bias.assign(bias)
    first = sequence.sample_sequences(model, 4000, 2, seed=0)[:, 1]
    freq = np.bincount(first, minlength=lang.vocab_size)
    p = np_softmax(bias)
    low, high = stats.binom.ppf(1e-5, 4000, p), stats.binom.isf(1e-5, 4000, p)
    assert np.all((freq >= low) & (freq <= high))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss": "forward_kl"},
        {"loss": "reverse_kl"},
        {"loss": "jsd", "beta": 0.5},
        {"loss": "top_k", "top_k": 4},
        {"loss": "reverse_kl", "on_policy_fraction": 0.5, "seed": 1},
        {"loss": "forward_kl", "on_policy_fraction": 1.0, "seed": 1},
    ],
    ids=["forward", "reverse", "jsd", "top_k", "on_policy_half", "on_policy"],
)
def test_sequence_distiller_fits_and_reports_its_loss(kwargs):
    lang = default_language()
    x = lang.sample(64, seed=0)[:, :-1]
    teacher, student = tiny_model(0, dim=16), tiny_model(1)
    distiller = sequence.SequenceDistiller(teacher=teacher, student=student, **kwargs)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = [to_np(w).copy() for w in student.trainable_weights]
    teacher_before = [to_np(w).copy() for w in teacher.weights]
    history = distiller.fit(x, epochs=2, batch_size=32, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert any(not np.allclose(a, to_np(w)) for a, w in zip(before, student.trainable_weights))
    for a, w in zip(teacher_before, teacher.weights):
        np.testing.assert_array_equal(a, to_np(w))
    # evaluate() scores the given sentences with the configured divergence
    mask = to_np(sequence.prediction_mask(x)) > 0
    expected = distiller.divergence(teacher(x), student(x), mask)
    got = distiller.evaluate(x, batch_size=64, verbose=0)
    np.testing.assert_allclose(got, to_np(expected), rtol=1e-4)


def test_sequence_distiller_loss_matches_the_numpy_reference():
    lang = default_language()
    x = lang.sample(16, seed=4)[:, :-1]
    teacher, student = tiny_model(0, dim=16), tiny_model(1)
    mask = to_np(sequence.prediction_mask(x)) > 0
    t, s = to_np(teacher(x)), to_np(student(x))
    for kwargs, ref in (
        ({"loss": "forward_kl"}, np_token_kl(t, s, mask)),
        ({"loss": "reverse_kl"}, np_token_kl(t, s, mask, "reverse")),
        ({"loss": "jsd", "beta": 0.3}, np_jsd(t, s, 0.3, mask)),
        ({"loss": "top_k", "top_k": 5}, np_top_k_kl(t, s, 5, mask)),
    ):
        d = sequence.SequenceDistiller(teacher=teacher, student=student, **kwargs)
        d.compile(optimizer="adam")
        np.testing.assert_allclose(d.evaluate(x, batch_size=16, verbose=0), ref, rtol=1e-4)


def test_sequence_distiller_refuses_bad_arguments():
    teacher, student = tiny_model(0), tiny_model(1)
    with pytest.raises(ValueError, match="loss must be one of"):
        sequence.SequenceDistiller(teacher=teacher, student=student, loss="kl")
    with pytest.raises(ValueError, match="top_k=8"):
        sequence.SequenceDistiller(teacher=teacher, student=student, loss="top_k")
    with pytest.raises(ValueError, match="on_policy_fraction"):
        sequence.SequenceDistiller(teacher=teacher, student=student, on_policy_fraction=2)
    other = causal_transformer(10, 12, dim=8, num_heads=2, num_layers=1)
    with pytest.raises(ValueError, match="share the vocabulary"):
        sequence.SequenceDistiller(teacher=teacher, student=other)


def test_sequence_distiller_config_round_trip():
    teacher, student = tiny_model(0), tiny_model(1)
    d = sequence.SequenceDistiller(
        teacher=teacher, student=student, loss="jsd", beta=0.25, on_policy_fraction=0.5, seed=3
    )
    again = sequence.SequenceDistiller.from_config(d.get_config())
    assert (again.loss_name, again.beta, again.on_policy_fraction, again.seed) == (
        "jsd",
        0.25,
        0.5,
        3,
    )

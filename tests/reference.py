"""Independent numpy references (float64) that the tests compare kdlib against, and a tiny
learnable MNIST-shaped data set. Nothing here imports kdlib or Keras."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


def np_softmax(z, t: float = 1.0) -> np.ndarray:
    """softmax(z / t) along the last axis, max-subtracted, in float64."""
    z = np.asarray(z, dtype=np.float64) / t
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_log_softmax(z, t: float = 1.0) -> np.ndarray:
    """ln softmax(z / t) along the last axis, computed directly (no log of 0)."""
    z = np.asarray(z, dtype=np.float64) / t
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def np_entropy(p) -> np.ndarray:
    """H(p) = -sum p ln p in nats over the last axis; terms with p = 0 contribute 0."""
    p = np.asarray(p, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=-1)


def np_kl(p, q) -> np.ndarray:
    """KL(p || q) in nats over the last axis; terms with p = 0 contribute 0."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0), axis=-1)


def np_cross_entropy_pq(p, q) -> np.ndarray:
    """H(p, q) = -sum p ln q in nats over the last axis; terms with p = 0 contribute 0."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(q), 0.0), axis=-1)


def np_cross_entropy(labels, logits) -> np.ndarray:
    """Per-example -log softmax(logits)[label]: the hard-label loss."""
    return -np_log_softmax(logits)[np.arange(len(labels)), labels]


def np_distillation(teacher_logits, student_logits, temperature: float) -> np.ndarray:
    """Per-example T^2 KL(softmax(t/T) || softmax(s/T)), through log-softmax."""
    log_p = np_log_softmax(teacher_logits, temperature)
    log_q = np_log_softmax(student_logits, temperature)
    return temperature**2 * np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)


def np_total_loss(labels, teacher_logits, student_logits, alpha: float, temperature: float):
    """Batch mean of alpha * CE + (1 - alpha) * T^2 KL: the Distiller's total loss."""
    ce = np_cross_entropy(labels, student_logits).mean()
    kl = np_distillation(teacher_logits, student_logits, temperature).mean()
    return alpha * ce + (1 - alpha) * kl


def np_numeric_gradient(f: Callable[[np.ndarray], np.ndarray], x, h: float = 1e-6) -> np.ndarray:
    """Central finite differences of ``f`` (one value per row of ``x``) w.r.t. ``x``."""
    x = np.asarray(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += h
        down[index] -= h
        grad[index] = np.asarray(f(up) - f(down))[index[:-1]] / (2 * h)
    return grad


def np_mlp_forward(weights, x) -> np.ndarray:
    """Inference-mode forward pass (dropout off) of a kdlib.models.mlp from its
    ``get_weights()``: Dense + ReLU per hidden layer, then the logits, in float64."""
    h = np.asarray(x, np.float64).reshape(len(x), -1)
    weights = [np.asarray(w, np.float64) for w in weights]
    for i in range(0, len(weights), 2):
        h = h @ weights[i] + weights[i + 1]
        if i + 2 < len(weights):
            h = np.maximum(h, 0.0)
    return h


def write_fake_mnist(path, n_train=30, n_test=10, label_offset=0, **override) -> dict:
    """A small MNIST-shaped .npz of random uint8 images and labels 0..9 in turn (shifted by
    ``label_offset`` in the training set); ``override`` replaces whole arrays. Returns them."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": ((np.arange(n_train) + label_offset) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }
    arrays.update(override)
    np.savez(path, **arrays)
    return arrays


def write_learnable_mnist(path, n_train: int = 700, n_test: int = 300, seed: int = 0) -> Path:
    """An MNIST-shaped .npz where class c is a bright vertical bar at column 2 + 2c, plus noise.

    Small models learn it in an epoch, so the pipeline can be tested in seconds.
    """
    rng = np.random.default_rng(seed)

    def split(n):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(y):
            x[i, 4:24, 2 + 2 * c] = 255
        order = rng.permutation(n)
        return x[order], y[order]

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return Path(path)

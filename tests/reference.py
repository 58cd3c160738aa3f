"""Independent numpy references (float64) that the tests compare kdlib against,
and a tiny learnable MNIST-shaped data set. Nothing here imports kdlib."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def np_softmax(z, t: float = 1.0) -> np.ndarray:
    """softmax(z / t) along the last axis, max-subtracted, in float64."""
    z = np.asarray(z, dtype=np.float64) / t
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_kl(p, q) -> np.ndarray:
    """KL(p || q) in nats over the last axis; terms with p = 0 contribute 0."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / q), 0.0)
    return terms.sum(axis=-1)


def np_cross_entropy(labels, logits) -> np.ndarray:
    """Per-example -log softmax(logits)[label]."""
    return -np.log(np_softmax(logits)[np.arange(len(labels)), labels])


def np_distillation(teacher_logits, student_logits, temperature: float) -> np.ndarray:
    """Per-example T^2 KL(softmax(t/T) || softmax(s/T))."""
    p = np_softmax(teacher_logits, temperature)
    q = np_softmax(student_logits, temperature)
    return temperature**2 * np_kl(p, q)


def np_total_loss(labels, teacher_logits, student_logits, alpha: float, temperature: float):
    """Batch mean of alpha * CE + (1 - alpha) * T^2 KL: the Distiller's total loss."""
    ce = np_cross_entropy(labels, student_logits).mean()
    kl = np_distillation(teacher_logits, student_logits, temperature).mean()
    return alpha * ce + (1 - alpha) * kl


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

r"""Gradients by the current Keras backend's automatic differentiation, for checking formulas.

Keras 3 has no backend-agnostic ``grad``; each backend has its own (``tf.GradientTape``,
``jax.grad``, ``torch.autograd``). :func:`gradients` hides that difference so that a notebook
can write a loss once with ``keras.ops`` and compare its gradient with the formula derived by
hand, e.g. :math:`\partial\, T^2 \mathrm{KL}(p_T \| q_T) / \partial s = T (q_T - p_T)`, on
every backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

__all__ = ["gradients"]


def gradients(fn: Callable[[Any], dict[str, Any]], x: Any) -> dict[str, np.ndarray]:
    r"""The gradient of each scalar that ``fn(x)`` returns, with respect to ``x``, at ``x``.

    .. math:: g_k = \frac{\partial\, f_k(x)}{\partial x}, \qquad \text{same shape as } x

    Parameters
    ----------
    fn : callable
        Takes a backend tensor of ``x``'s shape and dtype and returns a dict of scalars (or of
        arrays with one element), computed with ``keras.ops`` or kdlib's losses.
    x : array-like
        Where to differentiate; its dtype is kept (float64 stays float64 on TensorFlow and
        PyTorch, and on JAX when its 64-bit mode is on: ``jax.config.update(
        "jax_enable_x64", True)``).

    Returns
    -------
    dict of numpy.ndarray
        One gradient per key of ``fn(x)``, each of ``x``'s shape.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"gradients() needs a floating-point x, got dtype {x.dtype}.")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # autodiff plumbing only, never model or loss math

        variable = tf.Variable(x)
        with tf.GradientTape(persistent=True) as tape:
            values = _scalars(fn(variable))
        return {k: np.asarray(tape.gradient(v, variable)) for k, v in values.items()}
    if backend == "jax":
        import jax

        keys = list(_scalars(fn(keras.ops.convert_to_tensor(x))))
        return {
            k: np.asarray(jax.grad(lambda v, k=k: _scalars(fn(v))[k])(jax.numpy.asarray(x)))
            for k in keys
        }
    if backend == "torch":
        import torch

        results = {}
        keys = list(_scalars(fn(keras.ops.convert_to_tensor(x))))
        for k in keys:
            leaf = torch.tensor(
                x, requires_grad=True, device=keras.ops.convert_to_tensor(x).device
            )
            (grad,) = torch.autograd.grad(_scalars(fn(leaf))[k], leaf)
            results[k] = grad.detach().cpu().numpy()
        return results
    raise NotImplementedError(f"gradients() supports tensorflow, jax and torch, not {backend!r}.")


def _scalars(values: Any) -> dict[str, Any]:
    if not isinstance(values, dict) or not values:
        raise TypeError(
            "fn must return a dict of scalars, e.g. {'loss': loss}, got "
            f"{type(values).__name__}."
        )
    out = {}
    for key, value in values.items():
        if int(np.prod(keras.ops.shape(value))) != 1:
            raise ValueError(
                f"fn's value {key!r} has shape {tuple(keras.ops.shape(value))}: a gradient "
                "needs a scalar; sum or index it first."
            )
        out[key] = keras.ops.reshape(value, ())
    return out

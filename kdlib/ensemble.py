r"""An ensemble teacher: several models whose averaged predictions are distilled into one.

Hinton, Vinyals & Dean (2015, arXiv:1503.02531, §1 and §4) distil an ensemble by training
the student on the ensemble's *mean* prediction. For ``M`` members with logits
:math:`z_1, \dots, z_M` and a temperature :math:`T` there are two means:

.. math::

    \text{arithmetic:}\quad \bar p_T = \frac{1}{M} \sum_m \mathrm{softmax}(z_m / T)
    \qquad
    \text{geometric:}\quad \bar p_T = \mathrm{softmax}\Big(\frac{1}{T} \cdot
    \frac{1}{M}\sum_m z_m\Big)

The geometric mean (the normalised geometric mean of the members' tempered
probabilities) is the softmax of one logit vector, the averaged logits, at every
temperature. The arithmetic mean is not: at temperature ``T`` it equals the softmax of

.. math:: \ell_T = T \log \bar p_T = T\Big(\operatorname{logsumexp}_m
          \big[\log\mathrm{softmax}(z_m/T)\big] - \log M\Big)

(since :math:`\mathrm{softmax}(\log q) = q` for a distribution :math:`q`), and
:math:`\ell_T` changes with ``T``. :class:`Ensemble` therefore outputs the logits *at its
temperature* (:attr:`Ensemble.temperature`): :class:`kdlib.Distiller` sets it when compiled
to the temperature of its soft targets (``compile``'s, or that of its distillation parts),
so the soft targets the student sees are the exact mean;
``cache_soft_targets`` needs ``temperature=`` for an arithmetic ensemble for the same reason.

Everything is computed in float32 from the members' logits with ``keras.ops``
(backend-agnostic); :func:`mean_probabilities` is the float64 NumPy version that
:meth:`Ensemble.soft_targets` returns and that caches built from a table of member logits
(e.g. of every shifted view of an image) use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from kdlib import validate
from kdlib.distiller import _input_shapes, check_logits_model, check_single_logits_output

__all__ = ["MEANS", "Ensemble", "combine_logits", "mean_logits", "mean_probabilities"]

#: The two ways of averaging the members (see the module docstring).
MEANS = ("arithmetic", "geometric")


def _check_mean(mean: str) -> str:
    return validate.one_of(mean, MEANS, "mean")


def combine_logits(member_logits: Any, mean: str = "arithmetic", temperature: float = 1.0) -> Any:
    """Logits whose softmax at ``temperature`` is the members' mean prediction (keras.ops).

    Parameters
    ----------
    member_logits : tensor of shape (batch, members, classes)
        The members' logits, stacked on axis 1.
    mean : {"arithmetic", "geometric"}
        Arithmetic: :math:`T \\log \\frac1M \\sum_m \\mathrm{softmax}(z_m/T)`, exact at this
        temperature only. Geometric: :math:`\\frac1M \\sum_m z_m`, exact at every temperature.
    temperature : float
        T > 0 at which the arithmetic mean is taken (ignored by the geometric mean).

    Returns
    -------
    tensor of shape (batch, classes), float32.
    """
    z = ops.cast(member_logits, "float32")
    if _check_mean(mean) == "geometric":
        return ops.mean(z, axis=1)
    t = float(validate.temperature(temperature))
    members = int(z.shape[1])
    log_p = ops.log_softmax(z / t, axis=-1)  # each member's tempered log-probabilities
    return t * (ops.logsumexp(log_p, axis=1) - float(np.log(members)))


def mean_probabilities(
    member_logits: np.ndarray, temperature: float, mean: str = "arithmetic"
) -> np.ndarray:
    """The ensemble's mean distribution at ``temperature``, in float64 NumPy.

    Parameters
    ----------
    member_logits : array of shape (..., members, classes)
        The members' logits on axis -2 (e.g. ``(n, members, classes)``, or
        ``(n, views, members, classes)`` for several views of every example).
    temperature : float
        T > 0.
    mean : {"arithmetic", "geometric"}

    Returns
    -------
    numpy.ndarray of shape (..., classes), float64; every row sums to 1.
    """
    t = validate.temperature(temperature)
    z = _member_axis(member_logits)
    if _check_mean(mean) == "geometric":
        z = z.mean(axis=-2) / t
        z = z - z.max(axis=-1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=-1, keepdims=True)
    z = z / t
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    return p.mean(axis=-2)


def mean_logits(
    member_logits: np.ndarray, temperature: float, mean: str = "arithmetic"
) -> np.ndarray:
    r"""Logits whose softmax at ``temperature`` is the members' mean, in float64 NumPy.

    What a cache of soft targets holds for an ensemble (the NumPy twin of
    :func:`combine_logits`, computed in log space so that no probability underflows):

    .. math:: \ell_T = T\Big(\operatorname{logsumexp}_m \log\mathrm{softmax}(z_m/T)
              - \log M\Big) \ \text{(arithmetic)}, \qquad
              \ell = \frac1M \sum_m z_m \ \text{(geometric, every T)}.

    Parameters
    ----------
    member_logits : array of shape (..., members, classes)
        The members' logits on axis -2, e.g. from :meth:`Ensemble.predict_member_logits`.
    temperature : float
        T > 0.
    mean : {"arithmetic", "geometric"}

    Returns
    -------
    numpy.ndarray of shape (..., classes), float64.
    """
    t = validate.temperature(temperature)
    z = _member_axis(member_logits)
    if _check_mean(mean) == "geometric":
        return z.mean(axis=-2)
    z = z / t
    z_max = z.max(axis=-1, keepdims=True)
    log_p = z - z_max - np.log(np.exp(z - z_max).sum(axis=-1, keepdims=True))
    top = log_p.max(axis=-2)
    log_mean = top + np.log(np.exp(log_p - top[..., None, :]).mean(axis=-2))
    return t * log_mean


def _member_axis(member_logits: np.ndarray) -> np.ndarray:
    z = np.asarray(member_logits, dtype=np.float64)
    if z.ndim < 2 or z.shape[-2] < 1:
        raise ValueError(
            f"member_logits has shape {z.shape}; it needs the members on axis -2 and the "
            "classes on axis -1, e.g. (n, members, classes)."
        )
    return z


def _check_members(members: Any) -> list[keras.Model]:
    """``members`` as a list, after the checks of :class:`Ensemble` (before any work)."""
    if isinstance(members, keras.Model) or not isinstance(members, Sequence):
        raise TypeError(
            f"members must be a list of keras.Model, got {type(members).__name__}; e.g. "
            "Ensemble([model_a, model_b, model_c])."
        )
    if len(members) == 0:
        raise ValueError("members is empty; give the trained models, e.g. [a, b, c].")
    shapes, inputs = [], []
    for i, member in enumerate(members):
        role = f"members[{i}]"
        check_logits_model(member, role)
        shapes.append(check_single_logits_output(member, role))
        inputs.append(_input_shapes(member))
    known = {s[1:] for s in shapes if s is not None}
    if len(known) > 1:
        raise ValueError(
            f"the members' outputs differ in shape: {shapes}; every member must give "
            "one logit per class for the same classes."
        )
    known_inputs = {tuple(s[1:] for s in i) for i in inputs if i is not None}
    if len(known_inputs) > 1:
        raise ValueError(
            f"the members take different inputs: {inputs}; an ensemble runs every "
            "member on the same batch, so they need the same input shape."
        )
    for i, a in enumerate(members):
        for j in range(i + 1, len(members)):
            if a is members[j]:
                raise ValueError(
                    f"members {i} and {j} are the same model ({a.name!r}); an ensemble "
                    "averages different models: train each with its own seed."
                )
    return list(members)


@keras.saving.register_keras_serializable(package="kdlib")
class Ensemble(keras.Model):
    """A teacher made of several models: their mean prediction, arithmetic or geometric.

    Parameters
    ----------
    members : sequence of keras.Model
        Two or more trained models (one is allowed, as the size-1 baseline), each
        outputting logits (no softmax) of the same shape from the same inputs. They are
        frozen and always run in inference mode.
    mean : {"arithmetic", "geometric"}
        How the members' predictions are averaged (see :mod:`kdlib.ensemble`).
    temperature : float
        T > 0 at which the output logits are exact for the arithmetic mean;
        :class:`kdlib.Distiller` sets it at ``compile`` to the temperature of its soft
        targets.

    ``call`` returns logits of shape ``(batch, classes)`` whose softmax at
    :attr:`temperature` is the ensemble's mean prediction; use it like any teacher
    (``Distiller``, ``cache_soft_targets(..., temperature=T)``, the sweep).

    Examples
    --------
    >>> teacher = Ensemble([cnn_a, cnn_b, cnn_c], mean="arithmetic")
    >>> teacher.soft_targets(x_val, temperature=4.0).shape     # (n, 10), float64
    >>> distiller = Distiller(teacher=teacher, student=student)
    >>> distiller.compile(optimizer="adam", alpha=0.1, temperature=4.0)  # tempers the mean
    """

    def __init__(
        self,
        members: Sequence[keras.Model],
        mean: str = "arithmetic",
        temperature: float = 1.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", "ensemble")
        # The mean is taken in float32 under any global policy (mixed precision included):
        # each member computes in its own policy, and its logits are cast to float32.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.mean = _check_mean(mean)
        self.temperature = temperature
        members = _check_members(members)
        for member in members:
            member.trainable = False
        self.members = members
        if all(m.built for m in self.members):  # nothing left to build: saves as it is
            self.built = True

    @property
    def temperature(self) -> float:
        """T > 0 at which :meth:`call`'s logits are exact (arithmetic mean; the geometric
        mean's logits are exact at every T). Setting it drops the compiled predict
        function, whose graph holds the previous value."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = float(validate.temperature(value))
        # A traced predict/evaluate function holds T as a constant: rebuild it on next use.
        self.predict_function = None
        self.test_function = None
        self.train_function = None

    @property
    def temperature_dependent(self) -> bool:
        """True for the arithmetic mean, whose logits are exact at :attr:`temperature` only
        (read by :class:`kdlib.Distiller` and ``cache_soft_targets``)."""
        return self.mean == "arithmetic"

    @property
    def num_members(self) -> int:
        return len(self.members)

    def build(self, input_shape: Any = None) -> None:
        for member in self.members:
            if not member.built and input_shape is not None:
                member.build(input_shape)
        self.built = True

    def member_logits(self, inputs: Any) -> Any:
        """The members' logits stacked on axis 1: ``(batch, members, classes)``, float32."""
        return ops.stack(
            [ops.cast(m(inputs, training=False), "float32") for m in self.members], axis=1
        )

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        """Logits whose softmax at :attr:`temperature` is the mean prediction."""
        return combine_logits(self.member_logits(inputs), self.mean, self.temperature)

    def predict_member_logits(self, x: Any, batch_size: int = 1024) -> np.ndarray:
        """Every member's logits on ``x``: a float32 array ``(n, members, classes)``."""
        batch_size = validate.positive_int(batch_size, "batch_size", example=1024)
        return np.stack(
            [
                np.asarray(m.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)
                for m in self.members
            ],
            axis=1,
        )

    def soft_targets(self, x: Any, temperature: float, batch_size: int = 1024) -> np.ndarray:
        """The ensemble's mean distribution at ``temperature`` on ``x``: float64 ``(n, classes)``.

        Exact at every temperature for both means (computed from the members' logits with
        :func:`mean_probabilities`, whatever :attr:`temperature` is).
        """
        temperature = validate.temperature(temperature)  # before the members run
        return mean_probabilities(
            self.predict_member_logits(x, batch_size=batch_size), temperature, self.mean
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            members=[keras.saving.serialize_keras_object(m) for m in self.members],
            mean=self.mean,
            temperature=self.temperature,
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Ensemble:
        config = dict(config)
        members = [keras.saving.deserialize_keras_object(m) for m in config.pop("members")]
        return cls(members=members, **config)

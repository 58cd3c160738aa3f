"""The experiment's data: MNIST scaled to [0, 1], with a validation split held out.

:func:`prepare_data` loads MNIST (:func:`kdlib.data.load_mnist`) and returns the
:class:`Splits` that training and the report read.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from kdlib import data
from kdlib.experiment.config import ExperimentConfig

__all__ = ["Splits", "prepare_data"]


@dataclass(frozen=True)
class Splits:
    """MNIST scaled to [0, 1] (float32), with a validation split held out of training."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every array, by name (for printing)."""
        return {f.name: tuple(getattr(self, f.name).shape) for f in dataclasses.fields(self)}


def prepare_data(config: ExperimentConfig, path: str | os.PathLike[str] | None = None) -> Splits:
    """Load MNIST with :func:`kdlib.data.load_mnist`, scale it and split off validation.

    The validation images are a fixed random choice (seed 0) of the training set, so every
    seed of the experiment sees the same split. ``train_size`` and ``test_size`` take
    class-balanced subsets.
    """
    (x_train, y_train), (x_test, y_test) = data.load_mnist(path)
    if config.val_size >= len(x_train):
        raise ValueError(
            f"val_size={config.val_size} leaves no training images out of {len(x_train)}; "
            "use a smaller val_size (e.g. 5000)."
        )
    order = np.random.default_rng(0).permutation(len(x_train))
    val_idx, train_idx = order[: config.val_size], order[config.val_size :]
    x_val, y_val = x_train[val_idx], y_train[val_idx]
    x_train, y_train = x_train[train_idx], y_train[train_idx]
    if config.train_size is not None:
        x_train, y_train = data.balanced_subset(x_train, y_train, config.train_size, seed=0)
    if config.test_size is not None:
        x_test, y_test = data.balanced_subset(x_test, y_test, config.test_size, seed=0)
    return Splits(
        x_train=data.scale_images(x_train),
        y_train=y_train.astype("int32"),
        x_val=data.scale_images(x_val),
        y_val=y_val.astype("int32"),
        x_test=data.scale_images(x_test),
        y_test=y_test.astype("int32"),
    )

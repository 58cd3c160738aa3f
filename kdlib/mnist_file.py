"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.data`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.data import (
    DATA_DIR_ENV_VAR,
    FILENAME,
    MNIST_FILE_SHA256,
    MNIST_URL,
    ImagesLabels,
    fetch,
    read_npz,
)

__all__ = [
    "DATA_DIR_ENV_VAR",
    "FILENAME",
    "ImagesLabels",
    "MNIST_FILE_SHA256",
    "MNIST_URL",
    "fetch",
    "read_npz",
]

warn_moved(__name__, "kdlib.data")

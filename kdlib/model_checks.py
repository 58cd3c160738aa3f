"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.distiller`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.distiller import (
    PROBABILITIES_MESSAGE,
    SAMPLE_ROWS,
    applies_softmax,
    check_compatible,
    check_logits_model,
    check_separate_models,
    check_single_logits_output,
    check_teacher_logits,
    check_training_data,
    first_dataset_batch,
    is_array_like,
    is_tf_dataset,
    looks_like_probabilities,
)

__all__ = [
    "PROBABILITIES_MESSAGE",
    "SAMPLE_ROWS",
    "applies_softmax",
    "check_compatible",
    "check_logits_model",
    "check_separate_models",
    "check_single_logits_output",
    "check_teacher_logits",
    "check_training_data",
    "first_dataset_batch",
    "is_array_like",
    "is_tf_dataset",
    "looks_like_probabilities",
]

warn_moved(__name__, "kdlib.distiller")

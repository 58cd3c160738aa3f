"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.experiment.report`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.experiment.report import (
    INFERENCE_BATCH_SIZE,
    Artifacts,
    ExperimentResult,
    ModelReport,
    device_description,
    format_table,
    inference_ms_per_1000,
    machine_state,
    median_ms,
    predict_classes,
    run_conditions,
    saved_size_bytes,
    summarise,
)

__all__ = [
    "Artifacts",
    "ExperimentResult",
    "INFERENCE_BATCH_SIZE",
    "ModelReport",
    "device_description",
    "format_table",
    "inference_ms_per_1000",
    "machine_state",
    "median_ms",
    "predict_classes",
    "run_conditions",
    "saved_size_bytes",
    "summarise",
]

warn_moved(__name__, "kdlib.experiment.report")

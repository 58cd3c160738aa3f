"""Start Keras and its backend without TensorFlow's C++ start-up lines on stderr.

TensorFlow (2.19 and later) writes lines such as ``oneDNN custom operations are on`` and
``Could not find cuda drivers on your machine`` from C++ (abseil logging) straight to file
descriptor 2, before it reads ``TF_CPP_MIN_LOG_LEVEL``, so that variable cannot silence them
(tensorflow/tensorflow#100442). In JupyterLab they show as a pink stderr box under the first
import, which students read as an error. :func:`start_quietly`, called by every notebook's
set-up cell, imports Keras (and so TensorFlow) and probes the devices with file descriptor 2
sent to a temporary file, then writes back every line that is not one of those start-up
lines, so a real warning still shows.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

__all__ = [
    "start_quietly",
]

# abseil's log-line prefix (severity, date, time, thread, file:line), its note about
# InitializeLog, and TensorFlow's note on CPU instructions.
_START_UP_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    r"STDERR|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] .*|To enable the following "
    r"instructions: .*rebuild TensorFlow with the appropriate compiler flags\.)$"
)

_started = False


def is_start_up_line(line: str) -> bool:
    """True for a line TensorFlow's C++ runtime logs while it starts (any line ending)."""
    return _START_UP_LINE.match(line.rstrip("\r\n")) is not None


def without_start_up_lines(text: str) -> str:
    """``text`` with TensorFlow's C++ start-up lines removed; every other line kept."""
    return "".join(line for line in text.splitlines(keepends=True) if not is_start_up_line(line))


@contextlib.contextmanager
def _start_up_lines_filtered() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file; write back what is not a start-up line."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a detached process): nothing to filter
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = without_start_up_lines(captured.read().decode("utf-8", errors="replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def start_quietly() -> None:
    """Import Keras and start its backend, hiding only TensorFlow's C++ start-up lines.

    Call it before anything imports Keras or TensorFlow (the notebooks' set-up cell does).
    On the JAX and PyTorch backends it only imports Keras. Calling it again does nothing.
    """
    global _started
    if _started:
        return
    with _start_up_lines_filtered():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            # Probing the devices logs the CUDA lines ("failed call to cuInit") now, inside
            # the filter, rather than at the first operation in a later cell.
            tf.config.list_physical_devices()
    _started = True

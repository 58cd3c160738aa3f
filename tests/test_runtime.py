"""kdlib.runtime: TensorFlow's C++ start-up lines are hidden, every other stderr line kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kdlib import runtime

ROOT = Path(__file__).resolve().parents[1]

# Real lines from TensorFlow 2.21 on a CPU-only machine.
START_UP = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1795925031.683873    6821 port.cc:153] oneDNN custom operations are on.\n"
    "I0000 00:00:1795925031.684865    6821 cudart_stub.cc:31] Could not find cuda drivers\n"
    "E0000 00:00:1795959640.894203    9686 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error\n"
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.\n"
)


def test_only_start_up_lines_are_removed():
    text = "UserWarning: real\n" + START_UP + "I0000 is not a log line\nlast line, no newline"
    assert runtime.without_start_up_lines(text) == (
        "UserWarning: real\nI0000 is not a log line\nlast line, no newline"
    )
    assert all(runtime.is_start_up_line(line) for line in START_UP.splitlines())


def test_start_quietly_hides_them_in_a_fresh_process_and_keeps_other_stderr():
    code = (
        "import os, sys\n"
        "from kdlib import runtime\n"
        "os.write(2, b'before\\n')\n"
        "runtime.start_quietly()\n"
        "runtime.start_quietly()\n"  # a second call does nothing
        "import tensorflow as tf\n"
        "print(float(tf.reduce_sum(tf.ones(3))))\n"
        "os.write(2, b'after\\n')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "3.0\n"
    assert done.stderr == "before\nafter\n"

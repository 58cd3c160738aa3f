"""nbgrader configuration of the course's homework (used by `make assignments`)."""

import importlib.util
import sys
from pathlib import Path

from nbgrader.converters import Autograde

c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.course_id = "kd-course"
# What a released notebook shows in place of a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# The MNIST part trains two small models; give each cell a generous but finite bound.
c.Execute.timeout = 600
c.Execute.startup_timeout = 120

# Autograde every submission in a bubblewrap sandbox (sandbox.py, beside this file): the
# student's code reads only its own folder, Python, kdlib and MNIST, writes only its own
# folder, and has no network. Needs Linux with `bwrap` (Debian: apt-get install bubblewrap).
# Set SANDBOX = False only to grade code you trust (e.g. on macOS): it then runs as you.
SANDBOX = True
if SANDBOX:
    _spec = importlib.util.spec_from_file_location(
        "kd_course_sandbox", Path(__file__).with_name("sandbox.py")
    )
    sandbox = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = sandbox
    _spec.loader.exec_module(sandbox)
    c.Autograde.autograde_preprocessors = sandbox.autograde_preprocessors(
        Autograde.class_traits()["autograde_preprocessors"].default()
    )

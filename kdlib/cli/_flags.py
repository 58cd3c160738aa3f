"""What the ``kdlib`` command's two commands share: the one-line-error parser, flag types
that apply :mod:`kdlib.validate` rules, the ``--fast`` switch and the exit on a bad flag.

Light on purpose: nothing here imports TensorFlow, so ``kdlib --help`` and every flag check
answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")

# The names of kdlib.experiment.TEACHERS and STUDENTS (a test keeps them in step), so that
# `kdlib --help` and flag errors answer without importing TensorFlow.
TEACHER_CHOICES = ("cnn", "mlp")
STUDENT_CHOICES = ("mlp", "cnn")


class _OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``kdlib distill: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _flag(
    check: Callable[..., T], parse: Callable[[str], Any], **kwargs: Any
) -> Callable[[str], T]:
    """An argparse ``type``: parse the text, then check it with a :mod:`kdlib.validate` rule."""

    def convert(text: str) -> T:
        try:
            value = parse(text)
        except ValueError:
            value = text  # the check refuses the text and quotes it
        try:
            return check(value, **kwargs)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return convert


@contextlib.contextmanager
def _fast_mode(enabled: bool) -> Iterator[None]:
    """Set ``KDLIB_FAST=1`` while the block runs if ``enabled`` (restored afterwards)."""
    if not enabled:
        yield
        return
    from kdlib.config import FAST_ENV_VAR

    previous = os.environ.get(FAST_ENV_VAR)
    os.environ[FAST_ENV_VAR] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[FAST_ENV_VAR]
        else:
            os.environ[FAST_ENV_VAR] = previous


def _fail(message: str, command: str = "distill") -> NoReturn:
    """Exit with status 2 and one line on stderr, as argparse does for a bad flag."""
    sys.stderr.write(f"kdlib {command}: error: {message}\n")
    raise SystemExit(2)

"""What the ``kdlib`` command's two commands share: the one-line-error parser, flag types
that apply :mod:`kdlib.validate` rules, the model names and the exit on a bad flag.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from kdlib.experiment.config import STUDENTS, TEACHERS

T = TypeVar("T")

TEACHER_CHOICES = tuple(TEACHERS)
STUDENT_CHOICES = tuple(STUDENTS)


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


def _fail(message: str, command: str = "distill") -> NoReturn:
    """Exit with status 2 and one line on stderr, as argparse does for a bad flag."""
    sys.stderr.write(f"kdlib {command}: error: {message}\n")
    raise SystemExit(2)

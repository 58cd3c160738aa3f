"""Fast-mode switch shared by every notebook, command and benchmark.

``KDLIB_FAST=1`` in the environment turns on a small, fast configuration (fewer
epochs, a data subset). Code never branches on the variable itself: it asks
:func:`pick` for the value of a setting, so the code path stays identical.
"""

from __future__ import annotations

import os
from typing import TypeVar

__all__ = [
    "fast_mode",
    "pick",
]

T = TypeVar("T")

FAST_ENV_VAR = "KDLIB_FAST"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def fast_mode() -> bool:
    """Return True when ``KDLIB_FAST`` is set to a true value (``1``, ``true``, ``yes``, ``on``).

    Raises
    ------
    ValueError
        If the variable holds something that is neither true nor false, so a typo such as
        ``KDLIB_FAST=ture`` cannot silently run the full (slow) configuration.
    """
    value = os.environ.get(FAST_ENV_VAR, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"{FAST_ENV_VAR}={os.environ[FAST_ENV_VAR]!r} is not understood; "
        f"use {FAST_ENV_VAR}=1 for fast mode or unset it (or {FAST_ENV_VAR}=0) for full mode."
    )


def pick(full: T, fast: T, *, enabled: bool | None = None) -> T:
    """Return ``fast`` in fast mode and ``full`` otherwise.

    ``enabled`` decides for the caller (``kdlib distill --fast`` passes True); None, the
    default, reads ``KDLIB_FAST`` (:func:`fast_mode`).

    Examples
    --------
    >>> epochs = pick(full=10, fast=1)
    """
    on = fast_mode() if enabled is None else enabled
    return fast if on else full

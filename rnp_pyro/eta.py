"""Saying how long slow work will take, once its first part has been timed."""

from __future__ import annotations

import logging

log = logging.getLogger("rnp_pyro")

LONG_SECONDS = 30.0  # work expected to take longer than this is announced


def announce_if_long(what: str, seconds: float, done: int, total: int) -> float:
    """Log how long ``what`` will take in all when the first ``done`` of ``total`` equal
    parts took ``seconds`` and the whole will take LONG_SECONDS or more; the estimate."""
    estimate = seconds * total / max(done, 1)
    if estimate >= LONG_SECONDS:
        log.info(f"{what}: about {duration(estimate)} in all")
    return estimate


def duration(seconds: float) -> str:
    """``seconds`` in words a person reads at a glance: 45 s, 12 min, 3.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

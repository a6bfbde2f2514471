"""Ctrl-C and SIGTERM as one orderly path: stop, write what is known, exit 128 + signal.

A cluster scheduler ends a job with SIGTERM and, after a grace period, SIGKILL.
Python's default for SIGTERM kills the process on the spot, so nothing records
why the run stopped. While :func:`catch_interrupts` is active, SIGTERM raises
:class:`RunInterrupted` in the main thread, exactly as Ctrl-C raises
KeyboardInterrupt (which it subclasses), so Lightning's own interrupt handling
runs and the caller can write an "interrupted" report. Later signals are
logged and ignored so they cannot cut that report short; SIGKILL still can, and
the report files are written atomically for that reason.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger(__name__)

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(KeyboardInterrupt):
    """The process received SIGINT or SIGTERM."""


@dataclass
class Interruption:
    """The first interrupting signal received while :func:`catch_interrupts` was active."""

    signal_name: str | None = None
    signal_number: int | None = None

    @property
    def received(self) -> bool:
        return self.signal_number is not None

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + (self.signal_number or signal.SIGINT)

    def record(self, number: int) -> None:
        self.signal_number = number
        self.signal_name = signal.Signals(number).name


@contextmanager
def catch_interrupts() -> Iterator[Interruption]:
    """Within the block, SIGINT and SIGTERM raise :class:`RunInterrupted` once.

    Outside the main thread (where Python cannot install handlers) this does nothing
    and yields an :class:`Interruption` that never records a signal.
    """
    interruption = Interruption()
    if threading.current_thread() is not threading.main_thread():
        yield interruption
        return

    def handle(number: int, frame: FrameType | None) -> None:
        if interruption.received:
            log.warning("%s received while stopping; ignored", signal.Signals(number).name)
            return
        interruption.record(number)
        log.warning("%s received: stopping and writing the report", interruption.signal_name)
        raise RunInterrupted(interruption.signal_name)

    previous = {number: signal.signal(number, handle) for number in HANDLED_SIGNALS}
    try:
        yield interruption
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)

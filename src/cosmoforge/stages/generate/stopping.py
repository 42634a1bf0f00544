"""Stopping a generation job cleanly on Slurm's signals, with every finished row saved."""

from __future__ import annotations

import contextlib
import signal
import threading

from cosmoforge.core.errors import CosmoforgeError


class Stopped(BaseException):
    """Raised in the main thread by SIGTERM or SIGUSR1 (BaseException: no `except Exception`
    on the way swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.signal_name = signal.Signals(signum).name


class GenerationStopped(CosmoforgeError):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@contextlib.contextmanager
def stop_on_signals(signums=(signal.SIGTERM, signal.SIGUSR1)):
    """Slurm sends SIGTERM on preemption, scancel and at the time limit (then SIGKILL after
    KillWait), and the profile asks for SIGUSR1 a margin before the limit. Python's default
    SIGTERM handling exits without running `finally`, losing every row since the last flush;
    here the signal stops generation where it is so the finished rows are flushed first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    fired = False

    def handler(signum, frame):
        nonlocal fired
        if not fired:  # later signals must not interrupt the final flush
            fired = True
            raise Stopped(signum)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)

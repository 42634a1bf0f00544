"""Keeping a generation job alive when its engine dies or freezes.

An engine that dies mid-shard (vLLM's EngineDeadError: its engine-core process crashed or was
killed) or stops making progress (no engine step for `engine.stall_timeout_s`: a known vLLM
failure after hours, with no tokens and an idle GPU) would otherwise cost the whole job: the
job fails, Snakemake queues it again, and the GPUs wait in the queue and for a fresh start-up.
Here the job keeps its GPUs: every finished row is flushed, the engine is started again in the
same job (up to `engine.max_restarts` times, waiting `engine.restart_backoff_s` doubled each
time), and only the prompts without a row go to it. A job whose engine keeps dying stops with
one line, its finished rows saved for the rerun.

A frozen engine is stopped by killing its processes (the engine core runs in its own process
with vLLM's V1 multiprocessing, the default on GPUs): the blocked step then fails as a dead
engine does. An engine inside the job's own process cannot be killed that way, so the stall
watchdog needs the engine in its own process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable

from cosmoforge.core.config import schema_for
from cosmoforge.core.errors import CosmoforgeError, EngineDied

log = logging.getLogger(__name__)


class EngineGaveUp(CosmoforgeError):
    """The engine died (or froze) more often than engine.max_restarts allows."""


def kill_engine_processes() -> int:
    """SIGKILL every process this one started (vLLM's engine core and its workers); returns
    how many. SIGKILL also ends a stopped (SIGSTOP) process."""
    import psutil

    children = psutil.Process(os.getpid()).children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(signal.SIGKILL)
    return len(children)


class Watchdog:
    """Calls `on_stall` once when `progress()` has not been called for `timeout_s` seconds
    (None: never). `last` is when progress was last made."""

    def __init__(self, timeout_s: float | None, on_stall: Callable[[], None]):
        self.timeout_s = timeout_s
        self.on_stall = on_stall
        self.last = time.monotonic()
        self.fired = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def progress(self) -> None:
        self.last = time.monotonic()

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.timeout_s / 4)):
            if time.monotonic() - self.last > self.timeout_s:
                self.fired = True
                self.on_stall()
                return

    def __enter__(self) -> Watchdog:
        if self.timeout_s:
            self._thread = threading.Thread(target=self._watch, name="engine-watchdog", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def run_supervised(
    start_engine: Callable[[], object],
    requests: list,
    on_completion: Callable,
    on_death: Callable[[], None],
    engine_cfg: dict,
    stats: dict,
) -> None:
    """Run `requests` through engines made by `start_engine`, restarting after a death or a
    stall, until every request has a completion (each handed to `on_completion` once).
    `on_death` saves what is finished before a restart. `stats` gets engine_start_s (every
    start), engine_restarts and engine_lost_s: the seconds since the last progress when the
    engine was found dead, plus the back-off and the new start-up."""
    max_restarts, backoff, stall_s = (
        engine_setting(engine_cfg, key)
        for key in ("max_restarts", "restart_backoff_s", "stall_timeout_s")
    )
    pending = {r.sample_id: r for r in requests}
    stats.setdefault("engine_restarts", 0)
    stats.setdefault("engine_lost_s", 0.0)
    lost_since = None  # when the current outage began (the last progress before a death)
    while pending:
        started = time.perf_counter()
        engine = start_engine()
        stats["engine_start_s"] = round(
            stats.get("engine_start_s", 0) + time.perf_counter() - started, 3
        )
        if lost_since is not None:
            stats["engine_lost_s"] = round(
                stats["engine_lost_s"] + time.monotonic() - lost_since, 3
            )
            lost_since = None
        watchdog = Watchdog(stall_s, _stop_frozen_engine)
        if hasattr(engine, "on_step"):
            engine.on_step = watchdog.progress  # vLLM: every engine step is progress
        try:
            with watchdog:
                for completion in engine.run(list(pending.values())):
                    watchdog.progress()
                    if pending.pop(completion.sample_id, None) is not None:
                        on_completion(completion)
            return
        except EngineDied as death:
            lost_since = watchdog.last
            cause = f"no progress for {stall_s:g} s" if watchdog.fired else str(death)
            on_death()
            _close(engine)
            stats["engine_restarts"] += 1
            if stats["engine_restarts"] > max_restarts:
                raise EngineGaveUp(
                    f"the engine died {stats['engine_restarts']} times in this job, more than "
                    f"engine.max_restarts ({max_restarts}); last: {cause}. Every finished row "
                    f"is saved ({len(requests) - len(pending)} of {len(requests)}); rerun to "
                    "resume"
                ) from None
            wait = backoff * 2 ** (stats["engine_restarts"] - 1)
            log.warning(
                "engine died (%s) with %d of %d prompts left; finished rows saved; starting it "
                "again in %g s (restart %d of at most %d)",
                cause,
                len(pending),
                len(requests),
                wait,
                stats["engine_restarts"],
                max_restarts,
            )
            time.sleep(wait)


def engine_setting(engine_cfg: dict, key: str):
    """An engine key, or its schema default where the job's settings leave it out
    (core.layout.QUIET_ENGINE_KEYS)."""
    if key in engine_cfg:
        return engine_cfg[key]
    return schema_for("engine")["properties"][key].get("default")


def _close(engine) -> None:
    """Let go of a dead engine's resources before the next one starts."""
    close = getattr(engine, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


def _stop_frozen_engine() -> None:
    killed = kill_engine_processes()
    if killed:
        log.warning("no engine progress for too long: killed its %d process(es)", killed)
    else:
        log.error(
            "no engine progress for too long, and the engine runs inside this process, so it "
            "cannot be stopped from here (set VLLM_ENABLE_V1_MULTIPROCESSING=1 in engine.env); "
            "waiting for the job's time limit"
        )

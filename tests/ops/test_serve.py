"""`cosmoforge serve`: the server job of `engine.backend: openai` (tests/test_slurm.py runs a real
`vllm serve` through Slurm with it)."""

import sys
import threading
import time

import pytest
import yaml

from cosmoforge.core.config import load_config
from cosmoforge.core.errors import CosmoforgeError
from cosmoforge.ops import serve

# A stand-in server: answers /v1/models for a few seconds, then exits 0 on its own.
FAKE_SERVER = """
import http.server, sys, threading, time
class Models(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.end_headers()
        self.wfile.write(b'{"data": [{"id": "m"}]}')
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Models)
threading.Thread(target=server.serve_forever, daemon=True).start()
time.sleep(float(sys.argv[2]))
"""


def serve_fake_server(monkeypatch, tmp_path, seconds: int) -> None:
    """`cosmoforge serve` starts FAKE_SERVER for `seconds` instead of vllm serve."""
    script = tmp_path / "server.py"
    script.write_text(FAKE_SERVER)
    monkeypatch.setattr(
        serve,
        "vllm_serve_command",
        lambda config, host, port: [sys.executable, str(script), str(port), str(seconds)],
    )


@pytest.fixture
def config(repo, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    return load_config(repo / "config" / "config.yaml", {"model": {"path": str(model)}})


def test_the_server_gets_the_settings_offline_generation_would_use(config):
    command = serve.vllm_serve_command(config, "0.0.0.0", 8123)
    flags = " ".join(command[command.index("--model") :])
    model = config["model"]["path"]
    assert flags.startswith(f"--model {model} --served-model-name {config['model']['name']} ")
    # engine.dtype, max_model_len, enforce_eager and extra_args of config/config.yaml.
    for expected in (
        "--port 8123",
        "--dtype float32",
        "--max-model-len 2048",
        "--enforce-eager",
        "--no-enable-chunked-prefill",
        "--max-num-batched-tokens 4096",
        "--tensor-parallel-size 1",
    ):
        assert expected in flags, expected


def test_engine_arguments_become_flags_vllm_serve_parses():
    flags = serve.cli_flags(
        {"max_num_seqs": 8, "gpu_memory_utilization": 0.9, "enforce_eager": True, "x_y": False}
        | {"compilation_config": {"level": 0}, "revision": None}
    )
    assert flags == [
        "--max-num-seqs",
        "8",
        "--gpu-memory-utilization",
        "0.9",
        "--enforce-eager",
        "--no-x-y",
        "--compilation-config",
        '{"level": 0}',
    ]


def test_the_overlay_is_a_valid_config_that_sends_generation_to_the_server(repo, config):
    overlay = serve.overlay_for(config, "http://node7:8000/v1")
    merged = load_config(repo / "config" / "config.yaml", overlay)
    assert merged["engine"]["backend"] == "openai"
    assert merged["engine"]["openai"]["base_url"] == "http://node7:8000/v1"
    assert merged["engine"]["openai"]["model"] == config["model"]["name"]


def test_the_overlay_exists_exactly_while_the_server_answers(config, tmp_path, monkeypatch):
    serve_fake_server(monkeypatch, tmp_path, seconds=4)
    overlay = tmp_path / "server.yaml"
    seen = []

    def watch():
        while not seen:
            if overlay.exists():
                seen.append(yaml.safe_load(overlay.read_text()))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    status = serve.serve(config, overlay, tmp_path / "serve.log", port=8765, host="node7")
    watcher.join(timeout=5)
    assert status == 0
    assert seen == [serve.overlay_for(config, "http://node7:8765/v1")]
    assert not overlay.exists()  # the server is gone: no stale address is left behind


@pytest.mark.parametrize(
    "server, expected",
    [
        ("import sys; sys.exit(3)", "vllm serve exited with status 3 before it answered"),
        ("import time; time.sleep(60)", "vllm serve did not answer within 2 s"),
    ],
)
def test_a_server_that_never_comes_up_is_one_clear_line(
    config, tmp_path, monkeypatch, server, expected
):
    monkeypatch.setattr(
        serve, "vllm_serve_command", lambda config, host, port: [sys.executable, "-c", server]
    )
    config["engine"]["openai"]["ready_timeout_s"] = 2
    overlay = tmp_path / "server.yaml"
    with pytest.raises(CosmoforgeError) as error:
        serve.serve(config, overlay, tmp_path / "serve.log")
    assert str(error.value).startswith(expected)
    assert str(tmp_path / "serve.log") in str(error.value)
    assert not overlay.exists()


def test_a_missing_model_folder_stops_before_the_server_starts(config, tmp_path):
    config["model"]["path"] = str(tmp_path / "absent")
    with pytest.raises(CosmoforgeError, match="model.path: no model folder"):
        serve.serve(config, tmp_path / "server.yaml", tmp_path / "serve.log")


def test_sigterm_stops_the_server_and_takes_the_overlay_away(config, tmp_path, monkeypatch):
    """scancel or the time limit: the overlay goes at once, the server is stopped, status 0."""
    import os
    import signal

    serve_fake_server(monkeypatch, tmp_path, seconds=120)
    overlay = tmp_path / "server.yaml"
    seen = []

    def cancel_once_up():
        while not overlay.exists():
            time.sleep(0.05)
        seen.append(overlay.read_text())
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=cancel_once_up, daemon=True).start()
    started = time.monotonic()
    assert serve.serve(config, overlay, tmp_path / "serve.log", port=8766, host="n") == 0
    assert seen and not overlay.exists()
    assert time.monotonic() - started < 60  # the 120-second server did not run to its end
    assert signal.getsignal(signal.SIGTERM) == previous  # the caller's handler is back

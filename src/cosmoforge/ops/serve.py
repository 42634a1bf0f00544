"""A model server for `engine.backend: openai`, run as a job of its own: `cosmoforge serve`.

On a cluster the server is one long GPU job and the generation jobs are its clients. This starts
`vllm serve` with the run's own model and engine settings (the ones offline generation would
use), waits until it answers, and only then writes a config overlay that points the workflow at
it: `engine.backend: openai` and a `base_url` on this node. The workflow is then run with that
overlay added (`--configfile config.yaml server.yaml`); each generation job checks the server
answers before its first request.

If the server exits, or does not answer within `engine.openai.ready_timeout_s`, this stops with
one line saying so and naming the server's log, and writes no overlay. SIGTERM (scancel, the
end of the job's time) stops the server and removes the overlay, so a stale address is never
left behind for the next run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from cosmoforge.core.declare import RUN_CONFIG, Command, path_arg, run_config
from cosmoforge.core.errors import CosmoforgeError
from cosmoforge.core.io import atomic_path
from cosmoforge.engines import engine_env

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def served_model_name(config: dict) -> str:
    return config["engine"]["openai"]["model"] or config["model"]["name"]


def cli_flags(options: dict) -> list[str]:
    """vLLM engine keyword arguments (`engine.extra_args`) as `vllm serve` flags."""
    flags = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is False:
            flags.append("--no-" + key.replace("_", "-"))
        elif value is not None:
            # Numbers as written; dicts and lists as JSON, which vLLM parses for its
            # *-config arguments.
            flags += [flag, value if isinstance(value, str) else json.dumps(value)]
    return flags


def vllm_serve_command(config: dict, host: str, port: int) -> list[str]:
    """`vllm serve` with the settings offline generation (engines.VllmEngine) would use."""
    model, engine = config["model"], config["engine"]
    options = {
        "revision": model.get("revision"),
        "tensor_parallel_size": engine["tensor_parallel_size"],
        "dtype": engine["dtype"],
        "enforce_eager": engine["enforce_eager"] or None,
        "gpu_memory_utilization": engine["gpu_memory_utilization"],
        "enable_prefix_caching": engine["enable_prefix_caching"],
        "max_model_len": engine.get("max_model_len"),
        "max_num_seqs": engine.get("max_num_seqs"),
        "max_num_batched_tokens": engine.get("max_num_batched_tokens"),
        "seed": 0,
        **engine.get("extra_args", {}),
    }
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model["path"]),
        "--served-model-name",
        served_model_name(config),
        "--host",
        host,
        "--port",
        str(port),
        *cli_flags(options),
    ]


def overlay_for(config: dict, base_url: str) -> dict:
    """The config keys that send the workflow's generation to the server."""
    return {
        "engine": {
            "backend": "openai",
            "openai": {"base_url": base_url, "model": served_model_name(config)},
        }
    }


def _answers(base_url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{base_url}/models", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_until_ready(
    server: subprocess.Popen, port: int, timeout: float, log_path: Path, stopping: list
) -> bool:
    """Wait for the server to answer: True once it does, False if this job was stopped first;
    CosmoforgeError if it exits or does not answer within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not _answers(f"http://127.0.0.1:{port}/v1"):
        if stopping:
            return False
        if server.poll() is not None:
            raise CosmoforgeError(
                f"vllm serve exited with status {server.returncode} before it answered; "
                f"see {log_path}"
            )
        if time.monotonic() > deadline:
            raise CosmoforgeError(
                f"vllm serve did not answer within {timeout} s "
                f"(engine.openai.ready_timeout_s); see {log_path}"
            )
        time.sleep(2)
    return True


def serve(
    config: dict,
    overlay_path: str | Path,
    log_path: str | Path,
    port: int | None = None,
    host: str | None = None,
) -> int:
    """Run the server until it stops or is stopped; its exit status (0 when stopped by a
    signal). Raises CosmoforgeError if it never comes up."""
    from cosmoforge.engines.model import check_model_path

    check_model_path(config["model"]["path"], config["model"].get("revision"))
    overlay_path, log_path = Path(overlay_path), Path(log_path)
    port = port or free_port()
    # The address the generation jobs will use: this node's name, as the cluster knows it.
    address = host or socket.gethostname()
    base_url = f"http://{address}:{port}/v1"
    command = vllm_serve_command(config, "0.0.0.0", port)
    env = {**engine_env(config["engine"]), **os.environ}
    overlay_path.unlink(missing_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("starting %s (log: %s)", " ".join(command), log_path)
    with open(log_path, "ab") as server_log:
        server = subprocess.Popen(
            command, stdout=server_log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    stopping = []

    def stop(signum, _frame):
        # The address is dead from now on: take the overlay away first.
        overlay_path.unlink(missing_ok=True)
        stopping.append(signum)
        log.info("stopped by %s; stopping the server", signal.Signals(signum).name)
        with contextlib.suppress(ProcessLookupError):  # it may have been signalled too
            os.killpg(server.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        timeout = config["engine"]["openai"]["ready_timeout_s"]
        if not _wait_until_ready(server, port, timeout, log_path, stopping):
            return 0
        with atomic_path(overlay_path) as tmp:
            Path(tmp).write_text(yaml.safe_dump(overlay_for(config, base_url), sort_keys=False))
        log.info("serving %s at %s; overlay %s", served_model_name(config), base_url, overlay_path)
        status = server.wait()
        return 0 if stopping else status
    finally:
        overlay_path.unlink(missing_ok=True)
        if server.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# --- command line ------------------------------------------------------------------------------


def _serve_command(args) -> None:
    status = serve(run_config(args), args.overlay, args.log, port=args.port, host=args.host)
    if status:
        raise CosmoforgeError(f"vllm serve stopped with status {status}; see {args.log}")


COMMANDS = (
    Command(
        "serve",
        "run vllm serve with the run's model for engine.backend openai (a job of its own)",
        _serve_command,
        {
            **RUN_CONFIG,
            "--overlay": path_arg("config overlay written when up"),
            "--log": path_arg("the server's own output"),
            "--port": {"type": int, "help": "default: a free port"},
            "--host": {"help": "address the clients use (default: this node's name)"},
        },
        description=(
            "Starts vllm serve with the config's model and engine settings, waits until it "
            "answers, then writes OVERLAY (engine.backend: openai, base_url on this node) and "
            "runs until stopped. Run the workflow with --configfile CONFIG OVERLAY. On Slurm: "
            "sbatch --gpus=N --wrap 'srun python -m cosmoforge serve --config CONFIG --overlay "
            "results/server.yaml --log logs/serve.log'."
        ),
    ),
)

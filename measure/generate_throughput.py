"""Throughput of cosmoforge's generate step against a bare `vllm.LLM.generate` call.

Both sides get the same prompts (the embedded default's prompts of a few splits, chat template
applied), the same model, engine arguments and per-request sampling parameters (seeds
included), and each runs in a fresh process. Reported: completion tokens per second of
generation (engine start-up excluded on both sides) and their ratio; the goal is >= 0.95.

`--compare seeding` instead runs cosmoforge's generate step with and without per-request
seeds (`engine.per_request_seeds`): on GPUs a seeded request makes vLLM sample request by
request instead of in its batched (FlashInfer) kernels. Run it on a GPU node with your model
(`--config`) to see that cost there.

    .venv/bin/python measure/generate_throughput.py [--splits stories wikihow] [--repeats 2]
    .venv/bin/python measure/generate_throughput.py --compare seeding [--config my.yaml]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def settings_for(config: dict, max_tokens: int) -> dict:
    model = {**config["model"], "path": str(REPO / config["model"]["path"])}
    engine = {**config["engine"], "flush_every": config["engine"]["flush_every"]}
    return {
        "seed": config["seed"],
        "model": model,
        "engine": engine,
        "sampling": {**config["sampling"], "max_tokens": max_tokens},
    }


def build_prompt_file(config: dict, splits: list[str], path: Path) -> int:
    from cosmoforge.core.tables import write_prompt_shard
    from cosmoforge.stages.prompts import build_prompt_rows
    from cosmoforge.stages.seeds import read_split_seeds
    from cosmoforge.stages.templates import load_templates

    rows = []
    for split in splits:
        cfg = config["splits"][split]
        sources = [{**s, "path": str(REPO / s["path"])} for s in cfg["sources"]]
        seeds, _ = read_split_seeds(split, sources, max_seeds=cfg["max_seeds"])
        rows += build_prompt_rows(
            split,
            seeds,
            load_templates(REPO / "prompts", split),
            seed=config["seed"],
            shards=1,
            topic_probability=cfg["topic_probability"],
        )
    write_prompt_shard(rows, path)
    return len(rows)


def run_ours(prompts: Path, settings: dict) -> dict:
    from cosmoforge.stages.generate import generate_shard

    with tempfile.TemporaryDirectory() as tmp:
        stats = generate_shard(
            prompts, Path(tmp) / "out.parquet", settings, Path(tmp) / "stats.json"
        )
    return {
        "completion_tokens": stats["completion_tokens"],
        "seconds": stats["generate_s"],
        "engine_start_s": stats["engine_start_s"],
    }


def run_bare(prompts: Path, settings: dict) -> dict:

    from cosmoforge.core.tables import read_prompt_shard
    from cosmoforge.engines import VllmEngine
    from cosmoforge.stages.generate import request_seed

    rows = read_prompt_shard(prompts).to_pylist()
    started = time.perf_counter()
    # VllmEngine only to construct LLM(...) with identical arguments and environment.
    engine = VllmEngine(settings["model"], settings["engine"], settings["sampling"])
    start_s = time.perf_counter() - started
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    s = settings["sampling"]
    token_prompts = [
        TokensPrompt(prompt_token_ids=engine.chat_token_ids(r["prompt"])) for r in rows
    ]
    params = [
        SamplingParams(
            temperature=s["temperature"],
            top_p=s["top_p"],
            top_k=s["top_k"],
            repetition_penalty=s["repetition_penalty"],
            max_tokens=s["max_tokens"],
            seed=request_seed(settings["seed"], r["split"], r["template_id"], r["sample_id"]),
        )
        for r in rows
    ]
    started = time.perf_counter()
    outputs = engine.llm.generate(token_prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    return {
        "completion_tokens": sum(len(o.outputs[0].token_ids) for o in outputs),
        "seconds": round(seconds, 3),
        "engine_start_s": round(start_s, 3),
    }


def run_unseeded(prompts: Path, settings: dict) -> dict:
    engine = {**settings["engine"], "per_request_seeds": False}
    return run_ours(prompts, {**settings, "engine": engine})


def child(mode: str, prompts: Path, settings: dict) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--prompts",
            str(prompts),
            "--settings",
            json.dumps(settings),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", nargs="+", default=["stories", "web_samples_v2", "stanford"])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compare", choices=["bare", "seeding"], default="bare")
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--child", choices=["ours", "bare", "unseeded"])
    parser.add_argument("--prompts", type=Path)
    parser.add_argument("--settings")
    args = parser.parse_args()
    if args.child:
        run = {"ours": run_ours, "bare": run_bare, "unseeded": run_unseeded}[args.child]
        print(json.dumps(run(args.prompts, json.loads(args.settings))))
        return

    from cosmoforge.core.config import load_config

    config = load_config(args.config)
    other = "bare" if args.compare == "bare" else "unseeded"
    settings = settings_for(config, args.max_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.parquet"
        n = build_prompt_file(config, args.splits, prompts)
        print(
            f"{n} prompts from {', '.join(args.splits)}; max_tokens={args.max_tokens}; "
            f"model {config['model']['name']}"
        )
        results = {"ours": [], other: []}
        for i in range(args.repeats):
            # Alternate the order so warm file caches or thermal state favour neither side.
            for mode in (other, "ours") if i % 2 else ("ours", other):
                r = child(mode, prompts, settings)
                r["tok_s"] = r["completion_tokens"] / r["seconds"]
                results[mode].append(r)
                print(
                    f"  {mode:4s}: {r['completion_tokens']} tokens in {r['seconds']:.2f} s "
                    f"= {r['tok_s']:.1f} tok/s (engine start {r['engine_start_s']:.1f} s)"
                )
    ours = statistics.median(r["tok_s"] for r in results["ours"])
    theirs = statistics.median(r["tok_s"] for r in results[other])
    if args.compare == "bare":
        print(
            f"median tok/s: cosmoforge generate {ours:.1f}, bare LLM.generate {theirs:.1f}; "
            f"ratio {ours / theirs:.3f} (goal >= 0.95)"
        )
    else:
        print(
            f"median tok/s: per-request seeds {ours:.1f}, unseeded {theirs:.1f}; seeded / "
            f"unseeded = {ours / theirs:.3f}"
        )


if __name__ == "__main__":
    main()

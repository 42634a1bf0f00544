"""Scale rehearsal: synthetic web seeds through the whole DAG with Snakemake, at several sizes.

GENERATION IS THE FAKE ENGINE (deterministic pseudo-text of ~800 Mistral tokens, Cosmopedia's
mean length): this measures everything but the model. Topic clustering is measured beside the
DAG: its fit and assign stages run at full size on synthetic unit vectors, its embedding on a few
hundred real texts (its cost is per text, so it is extrapolated).

Every rule writes a Snakemake `benchmark:` file; this script takes each job's figures from an
exact record instead (USAGE_SHIM below says why) and prints, per rule and size: jobs, total wall
time, summed CPU time and the largest peak RSS of one job; the ratio of each rule's
peak at the largest size to its peak at the smallest; core-hours of the CPU side per million
prompts; and an extrapolation to the Cosmopedia preset. It writes the measured per-prompt rates
to resources/cpu_rates.json, which `cosmoforge plan` uses for the CPU side.

    .venv/bin/python measure/scale_rehearsal.py --prompts 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
BIN = Path(sys.executable).parent
RUN = "rehearsal"
# Rules whose cost is the model (or the embedding model): not part of the CPU side.
MODEL_RULES = {"generate", "topics_embed"}
# Rules whose cost does not grow with the prompts (one job of a fixed size).
FIXED_RULES = {"benchmark_index"}
# The fake engine draws 485..970 words (mean ~730), about 800 Mistral tokens of text.
FAKE_MAX_TOKENS = 970
SEED_CHARS = 3000


def synthetic_seeds(path: Path, count: int, seed: int = 1) -> None:
    """FineWeb-like web seeds of ~3,000 characters from a 5,000-word synthetic vocabulary."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocabulary = np.array(
        ["".join(rng.choice(letters, size=rng.integers(2, 10))) for _ in range(5000)]
    )
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("url", pa.string())])
    words_per_text = SEED_CHARS // 6
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, count, 20000):
            n = min(20000, count - start)
            picks = vocabulary[rng.integers(0, len(vocabulary), size=(n, words_per_text))]
            texts = [" ".join(row) + "." for row in picks]
            ids = [f"doc-{start + i:08d}" for i in range(n)]
            writer.write_table(
                pa.table(
                    {"id": ids, "text": texts, "url": [f"https://example.org/{i}" for i in ids]},
                    schema=schema,
                )
            )


def rehearsal_config(work: Path, prompts: int, per_shard: int) -> dict:
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return {
        "run_name": RUN,
        "seed": 1234,
        "prompts_dir": "prompts",
        "seeds": {"on_bad_row": "skip", "extract_chars": 1000},
        "splits": {
            "web_samples_v1": {
                "shards": max(1, prompts // per_shard),
                # one template: one prompt per seed
                "templates": ["textbook_academic"],
                "sources": [
                    {
                        "name": "web_samples_v1",
                        "kind": "web",
                        "format": "parquet",
                        "path": str(work / "seeds.parquet"),
                    }
                ],
            }
        },
        "model": {"name": "fake/engine", "path": "none", "gguf": None},
        "engine": {"backend": "fake", "flush_every": 4096},
        "sampling": {**default["sampling"], "max_tokens": FAKE_MAX_TOKENS},
        "release": {"min_token_length": 150},
        "topics": {"enabled": False},
        "dedup": default["dedup"],
        "decontamination": {
            **default["decontamination"],
            "benchmarks": {
                name: {"path": str(REPO / spec["path"])}
                for name, spec in default["decontamination"]["benchmarks"].items()
            },
        },
    }


# Every job's `python` is this shim, which runs the real interpreter as its child and records
# the child's exact CPU time and peak RSS (wait4's rusage, descendants included). Snakemake's
# `benchmark:` files sample the job every 0.5 s for 15 s and then every 30 s, so a 30-second job
# has its last half unseen: its CPU time and peak were undercounted by about half here.
USAGE_SHIM = """#!{python}
import json, os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv({python!r}, [{python!r}, *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
with open(os.environ["REHEARSAL_USAGE"], "a") as fh:
    fh.write(json.dumps({{"argv": sys.argv[1:5], "s": time.perf_counter() - started,
                         "cpu_time": usage.ru_utime + usage.ru_stime,
                         "max_rss": usage.ru_maxrss / 1024}}) + "\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def job_rule(argv: list[str]) -> str:
    """The rule of a `python -m cosmoforge COMMAND [STAGE]` job."""
    command = argv[2]
    if command in ("dedup", "topics"):
        return f"{command}_{argv[3]}"
    return command.replace("-", "_")


def read_usage(path: Path) -> dict[str, list[dict]]:
    """rule -> one dict per job (s, max_rss MB, cpu_time s) from the shim's records."""
    per_rule: dict[str, list[dict]] = defaultdict(list)
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["argv"][:2] == ["-m", "cosmoforge"]:
            per_rule[job_rule(record["argv"])].append(record)
    return per_rule


def run_dag(work: Path, prompts: int, per_shard: int, cores: int) -> dict:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "prompts").symlink_to(REPO / "prompts")
    started = time.perf_counter()
    synthetic_seeds(work / "seeds.parquet", prompts)
    seeds_s = time.perf_counter() - started
    (work / "config").mkdir()
    config = rehearsal_config(work, prompts, per_shard)
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shim = work / "bin" / "python"
    shim.parent.mkdir()
    shim.write_text(USAGE_SHIM.format(python=str(BIN / "python")))
    shim.chmod(0o755)
    usage = work / "usage.jsonl"
    env = {
        **os.environ,
        "PATH": f"{shim.parent}:{BIN}:{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
        "REHEARSAL_USAGE": str(usage),
    }
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(work)]
    cmd += ["--cores", str(cores), "--resources", "vllm_engine=1", "--quiet", "rules"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    stats = json.loads((work / "results" / RUN / "release" / "stats.json").read_text())
    stage_seconds: dict[str, float] = defaultdict(float)
    for path in (work / "results" / RUN / "release_stats").rglob("*.json"):
        for stage, seconds in json.loads(path.read_text())["stage_seconds"].items():
            stage_seconds[stage] += seconds
    shards = config["splits"]["web_samples_v1"]["shards"]
    return {
        "prompts": prompts,
        "shards": shards,
        "wall_s": wall,
        "synthetic_seeds_s": seeds_s,
        "rules": read_usage(usage),
        "released_rows": stats["rows"],
        "mean_tokens": stats["tokens"] / max(stats["rows"], 1),
        "finish_shard_stages": dict(stage_seconds),
        "finish_shard_bytes": finish_shard_bytes(work / "results" / RUN, shards),
    }


# What one finish_shard job writes, by folder under results/<run>/ (older layouts wrote full
# copies of each shard to deduped/ and decontaminated/ as well; a folder absent counts 0).
FINISH_SHARD_FOLDERS = (
    "deduped",
    "decontaminated",
    "dedup/removed",
    "dedup/stayed",
    "decont/contaminated",
    "release/web_samples_v1",
    "release_stats",
)


def finish_shard_bytes(results: Path, shards: int) -> dict[str, float]:
    """Mean bytes per shard that finish_shard left in each of its output folders."""
    return {
        folder: sum(f.stat().st_size for f in (results / folder).rglob("*") if f.is_file()) / shards
        for folder in FINISH_SHARD_FOLDERS
    }


def peak_rss_mb(pid: int) -> float:
    """The process's own peak RSS (VmHWM belongs to its address space; the kernel's rusage
    maxrss would carry this script's own RSS over the fork)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(cmd: list[str], env=None) -> dict:
    """Wall time, peak RSS (sampled every 50 ms) and CPU time of one command."""
    started, before = time.perf_counter(), os.times()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, peak_rss_mb(proc.pid))
        time.sleep(0.05)
    out = proc.stdout.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{out[-3000:]}")
    after = os.times()
    return {
        "s": time.perf_counter() - started,
        "max_rss": peak,
        "cpu_time": (after.children_user + after.children_system)
        - (before.children_user + before.children_system),
    }


def topic_stages(work: Path, seeds: int, per_shard: int) -> dict:
    """fit and assign at full size on synthetic unit vectors (145 clusters, 384-d); embedding on
    400 real texts with the bundled MiniLM."""
    from cosmoforge.stages.topics import write_embeddings

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(145, 384)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    shards = max(1, seeds // per_shard)
    paths = []
    for shard in range(shards):
        n = seeds // shards
        vectors = centres[rng.integers(0, 145, n)] + rng.normal(scale=0.05, size=(n, 384))
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        path = work / f"emb-{shard:05d}.parquet"
        ids = [f"web_samples_v1:doc-{shard}-{i}" for i in range(n)]
        write_embeddings(path, ["web_samples_v1"] * n, ids, vectors, 384)
        paths.append(path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cli = [str(BIN / "python"), "-m", "cosmoforge", "topics"]
    kmeans = {"k": 145, "sample_size": 100000, "niter": 25, "nredo": 3, "seed": 1234}
    fit = measure(
        cli
        + ["fit", "--embeddings", *map(str, paths), "--settings", json.dumps(kmeans)]
        + ["--out", str(work / "c.npy"), "--fit-report", str(work / "fit.json")]
        + ["--map-sample", str(work / "map.parquet")],
        env,
    )
    assign = [
        measure(
            cli
            + ["assign", "--embeddings", str(p), "--centroids", str(work / "c.npy")]
            + ["--settings", "{}", "--out", str(work / f"a-{i}.parquet")],
            env,
        )
        for i, p in enumerate(paths[:3])
    ]
    # embedding: 400 real-length texts through the CLI (model load included once)
    from cosmoforge.core.config import load_config
    from cosmoforge.stages.seeds import write_split_seeds

    texts = work / "texts.jsonl"
    words = (REPO / "README.md").read_text().split()
    random.seed(3)
    with open(texts, "w") as fh:
        for i in range(400):
            fh.write(json.dumps({"id": str(i), "text": " ".join(random.choices(words, k=500))}))
            fh.write("\n")
    seeds = work / "seeds.parquet"
    source = {"name": "w", "kind": "web", "format": "jsonl", "path": str(texts)}
    write_split_seeds("web_samples_v1", [source], seeds)
    embedding = load_config(REPO / "config" / "config.yaml")["topics"]["embedding"]
    embed = measure(
        cli
        + ["embed", "--split", "web_samples_v1", "--seeds", str(seeds), "--shard", "0"]
        + ["--shards", "1", "--settings", json.dumps(embedding)]
        + ["--out", str(work / "e.parquet")],
        env,
    )
    return {"shards": shards, "fit": fit, "assign": assign, "embed400": embed}


def summarize(rules: dict[str, list[dict]]) -> dict[str, dict]:
    return {
        rule: {
            "jobs": len(jobs),
            "wall_s": sum(j["s"] for j in jobs),
            "cpu_s": sum(j["cpu_time"] for j in jobs),
            "max_rss_mb": max(j["max_rss"] for j in jobs),
        }
        for rule, jobs in sorted(rules.items())
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", nargs="+", type=int, default=[100000, 1000000])
    parser.add_argument("--prompts-per-shard", type=int, default=20000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=REPO / "measure" / "out" / "rehearsal")
    parser.add_argument("--skip-topics", action="store_true")
    parser.add_argument("--rates-out", type=Path, default=REPO / "resources" / "cpu_rates.json")
    args = parser.parse_args()
    print("GENERATION BY THE FAKE ENGINE: these figures measure everything but the model.\n")
    runs = []
    for prompts in args.prompts:
        run = run_dag(args.workdir / str(prompts), prompts, args.prompts_per_shard, args.cores)
        run["summary"] = summarize(run["rules"])
        runs.append(run)
        print(
            f"== {prompts:,} prompts, {run['shards']} shards: DAG wall {run['wall_s']:.0f} s "
            f"on {args.cores} cores; {run['released_rows']:,} rows released, "
            f"mean {run['mean_tokens']:.0f} tokens (synthetic seeds made in "
            f"{run['synthetic_seeds_s']:.0f} s, outside the DAG)"
        )
        print(f"{'rule':<22}{'jobs':>6}{'wall s':>10}{'cpu s':>10}{'peak RSS MB':>13}")
        for rule, s in run["summary"].items():
            print(
                f"{rule:<22}{s['jobs']:>6}{s['wall_s']:>10.1f}{s['cpu_s']:>10.1f}"
                f"{s['max_rss_mb']:>13.0f}"
            )
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in run["finish_shard_stages"].items())
        print(f"  finish_shard's stages (summed over shards): {stages}")
        written = run["finish_shard_bytes"]
        print(
            f"  finish_shard writes {sum(written.values()) / 1e6:.1f} MB per shard: "
            + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in written.items() if v)
        )
        cpu_side = sum(s["cpu_s"] for r, s in run["summary"].items() if r not in MODEL_RULES)
        print(
            f"CPU side (all but generate/embed): {cpu_side / 3600:.3f} core-hours, "
            f"{cpu_side / 3600 / (prompts / 1e6):.3f} per million prompts; largest job "
            f"{max(s['max_rss_mb'] for s in run['summary'].values()):.0f} MB"
        )
        print()
    if len(runs) > 1:
        small, large = runs[0], runs[-1]
        print(f"peak RSS per rule, {large['prompts']:,} vs {small['prompts']:,} prompts:")
        for rule, s in large["summary"].items():
            base = small["summary"].get(rule)
            if base and base["max_rss_mb"]:
                ratio = s["max_rss_mb"] / base["max_rss_mb"]
                print(
                    f"  {rule:<22}{base['max_rss_mb']:>8.0f} MB -> {s['max_rss_mb']:>6.0f} MB"
                    f"  x{ratio:.2f}"
                )
        print()
    largest = runs[-1]
    rates = {
        rule: (
            {"core_s_per_run": s["cpu_s"], "peak_rss_mb": s["max_rss_mb"]}
            if rule in FIXED_RULES
            else {
                "core_s_per_prompt": s["cpu_s"] / largest["prompts"],
                "peak_rss_mb": s["max_rss_mb"],
            }
        )
        for rule, s in largest["summary"].items()
        if rule not in MODEL_RULES
    }
    if not args.skip_topics:
        seeds = largest["prompts"]
        topics = topic_stages(args.workdir / "topics", seeds, args.prompts_per_shard)
        assign_s = np.mean([a["cpu_time"] for a in topics["assign"]]) * topics["shards"]
        print(
            f"topics at {seeds:,} seeds (synthetic 384-d vectors, k=145, 100k sample, 3 restarts):"
            f" fit {topics['fit']['s']:.1f} s / {topics['fit']['max_rss']:.0f} MB; assign "
            f"{np.mean([a['s'] for a in topics['assign']]):.1f} s / "
            f"{max(a['max_rss'] for a in topics['assign']):.0f} MB per shard of "
            f"{seeds // topics['shards']:,}; embedding 400 texts with MiniLM on this CPU "
            f"{topics['embed400']['s']:.1f} s (model load included)"
        )
        rates["topics_assign"] = {
            "core_s_per_prompt": assign_s / seeds,
            "peak_rss_mb": max(a["max_rss"] for a in topics["assign"]),
        }
        rates["topics_fit"] = {
            "core_s_per_prompt": topics["fit"]["cpu_time"] / seeds,
            "peak_rss_mb": topics["fit"]["max_rss"],
        }
        print()
    from cosmoforge.core.config import load_config
    from cosmoforge.ops.plan import build_plan

    preset = build_plan(load_config(REPO / "config" / "presets" / "cosmopedia.yaml"), REPO)
    total = preset["prompts"]
    print(f"extrapolated to the Cosmopedia preset ({total:,} prompts, per-prompt rates above):")
    core_hours = 0.0
    for rule, rate in rates.items():
        hours = (rate.get("core_s_per_prompt", 0) * total + rate.get("core_s_per_run", 0)) / 3600
        core_hours += hours
        print(f"  {rule:<22}{hours:>10.1f} core-hours   peak per job {rate['peak_rss_mb']:.0f} MB")
    print(f"  {'CPU side total':<22}{core_hours:>10.1f} core-hours")
    args.rates_out.parent.mkdir(parents=True, exist_ok=True)
    args.rates_out.write_text(
        json.dumps(
            {
                "measured_by": "measure/scale_rehearsal.py",
                "prompts": largest["prompts"],
                "prompts_per_shard": args.prompts_per_shard,
                "rules": rates,
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    print(f"\nrates written to {args.rates_out}")


if __name__ == "__main__":
    main()

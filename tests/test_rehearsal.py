"""The production rehearsal (`make rehearse`): the unmodified Cosmopedia preset through
profiles/slurm on the local one-node Slurm, with one small overlay for what cannot exist here,
printed before the run:

- the seed sources: a few hundred synthetic rows per split in the real formats, the parquet
  exports at the preset's own paths and the hub splits as local `datasets` folders;
- the engine: the fake one (no GPU, no Mixtral);
- the shard counts, and the node's size (partitions, CPUs and memory per job);
- the benchmarks: the bundled local copies (no hub).

It checks that every job got the preset's settings apart from the overlay's keys, that the
plan's job and seed counts are what ran, and that the release, the ledger and the card agree.
"""

from __future__ import annotations

import json
import random
import subprocess
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from cosmoforge.cli import main
from cosmoforge.core.config import resolve_config
from cosmoforge.core.contracts import KINDS
from cosmoforge.stages.seeds import seed_cap
from tests.helpers import BIN, REPO, workdir

pytestmark = [pytest.mark.slurm, pytest.mark.rehearsal]
PRESET = REPO / "config" / "presets" / "cosmopedia.yaml"
ROWS = 150  # per source
WORDS = [
    "river",
    "market",
    "theory",
    "cell",
    "orbit",
    "protein",
    "ledger",
    "climate",
    "verse",
    "engine",
    "harvest",
    "signal",
    "fraction",
    "empire",
    "glacier",
    "circuit",
    "enzyme",
    "tariff",
    "sonnet",
    "magnet",
    "canyon",
    "vaccine",
    "algebra",
]
# The hub sources of the preset, as local dataset folders with the hub's column names.
HUB_FOLDERS = {
    "web_samples_v1": ("fineweb-sample-10BT", {"text": "text", "id": "id", "url": "url"}),
    "web_samples_v2": ("fineweb-sample-100BT", {"text": "text", "id": "id", "url": "url"}),
    "stories": ("ultrachat_200k", {"prompt": "question", "prompt_id": "id"}),
    "auto_math_text": ("automathtext", {"text": "text", "url": "id"}),
}


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def synthetic_rows(columns: list[str], split: str, rng: random.Random) -> dict[str, list]:
    rows = {c: [] for c in columns}
    for n in range(ROWS):
        for column in columns:
            if column in ("id", "prompt_id", "url"):
                value = f"{split}-{column}-{n}"
            elif column in ("text", "lesson_outline", "course_description", "answer"):
                value = " ".join(sentence(rng, 12) for _ in range(6))
            else:
                value = sentence(rng, 5)
            rows[column].append(value)
    return rows


def write_seed_data(work) -> dict:
    """The seed files and folders; returns the overlay's `splits` section."""
    preset = yaml.safe_load(PRESET.read_text())
    rng = random.Random(7)
    splits = {}
    for split, cfg in preset["splits"].items():
        sources = []
        for source in cfg["sources"]:
            fields = source.get("fields", {})
            if source["format"] == "parquet":  # at the preset's own path: nothing to swap
                required, optional = KINDS[source["kind"]]
                columns = [fields.get(f, f) for f in (*required, *optional)]
                path = work / source["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(pa.table(synthetic_rows(columns, split, rng)), path)
                sources.append(source)
                continue
            folder, columns = HUB_FOLDERS[split]
            data = work / "rehearsal-data" / folder / "data"
            data.mkdir(parents=True)
            table = pa.table(synthetic_rows(list(columns), split, rng))
            pq.write_table(table, data / "train-00000-of-00001.parquet")
            sources.append(
                {**source, "dataset": f"rehearsal-data/{folder}", "dataset_config": None}
                | {"dataset_split": "train"}
            )
        splits[split] = {"shards": 2 if split == "web_samples_v1" else 1}
        if sources != cfg["sources"]:
            splits[split]["sources"] = sources
    return splits


def overlay_for(work) -> dict:
    benchmarks = yaml.safe_load(PRESET.read_text())["decontamination"]["benchmarks"]
    return {
        "run_name": "rehearsal",
        "splits": write_seed_data(work),
        "engine": {"backend": "fake"},
        "topics": {"shards": 1},
        "decontamination": {
            "benchmarks": {b: {"path": f"resources/benchmarks/{b}.jsonl"} for b in benchmarks}
        },
        "slurm": {
            "gpu_partition": "gpu",
            "cpu_partition": "cpu",
            "cpus_per_gpu": 1,
            "generate_mem_mb": 4000,
            "cpu_mem_mb": 3000,
            "embed_mem_mb": 3000,
        },
    }


def leaf_keys(data, prefix="") -> set[str]:
    if not isinstance(data, dict) or not data:
        return {prefix}
    return {
        k for key, v in data.items() for k in leaf_keys(v, f"{prefix}.{key}" if prefix else key)
    }


def changed_keys(a, b, prefix="") -> set[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return {
            k
            for key in a.keys() | b.keys()
            for k in changed_keys(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        }
    return set() if a == b else {prefix}


def job_stats(stdout: str) -> dict[str, int]:
    import re

    table = stdout.split("Job stats:")[1].split("\n\n")[0]
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"
    }


def test_the_preset_rehearsed_on_slurm(repo, tmp_path, capsys):
    assert subprocess.run(["sinfo"], capture_output=True).returncode == 0, "no Slurm cluster"
    work = workdir(tmp_path / "work", link=("config", "prompts", "profiles"))
    (work / "resources").mkdir()
    (work / "resources" / "benchmarks").symlink_to(repo / "resources" / "benchmarks")
    overlay = overlay_for(work)
    (work / "rehearsal.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    preset_only = resolve_config([PRESET], None, work)
    rehearsed = resolve_config([PRESET, work / "rehearsal.yaml"], None, work)
    swapped = changed_keys(preset_only, rehearsed)
    print("swapped for the rehearsal (everything else is the preset's):")
    print("  " + "\n  ".join(sorted(swapped)))
    # Only the overlay's keys differ; a split's whole source list counts as one key.
    overlay_keys = {
        k.split(".sources")[0] + ".sources" if ".sources" in k else k for k in leaf_keys(overlay)
    }
    assert {
        k.split(".sources")[0] + ".sources" if ".sources" in k else k for k in swapped
    } <= overlay_keys

    capsys.readouterr()
    files = ["--configfile", str(PRESET), str(work / "rehearsal.yaml")]
    assert main(["plan", "--json", "--base-dir", str(work), *files]) == 0
    plan = json.loads(capsys.readouterr().out)

    started = time.time()
    proc = subprocess.run(
        ["timeout", "-k", "30", "3000", str(BIN / "snakemake"), "-s", str(repo / "Snakefile")]
        + ["--directory", str(work), "--profile", "profiles/slurm"]
        + ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1"]
        + ["--latency-wait", "5", *files],
        cwd=work,
        env={
            "PATH": f"{BIN}:/usr/bin:/bin:/usr/sbin:/sbin",
            "HF_HUB_OFFLINE": "1",
            "HOME": str(tmp_path),
        },
        capture_output=True,
        text=True,
    )
    seconds = time.time() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = job_stats(proc.stderr)
    print(f"rehearsal: {sum(ran.values())} jobs on Slurm in {seconds:.0f} s")

    # The plan's job counts are what ran (the model is a hub id: nothing converted).
    assert ran == {rule: n for rule, n in plan["jobs"].items() if n}
    results = work / "results" / "rehearsal"
    for split, planned in plan["splits"].items():
        seeds = json.loads((results / "seeds" / f"{split}.report.json").read_text())
        assert seeds["seeds"] == planned["seeds"], split
        assert seeds["max_seeds"] == seed_cap(preset_only["splits"][split]["max_seeds"])

    # Every released row was generated with the preset's model and sampling.
    release = results / "release"
    rows = pa.concat_tables(
        [
            pq.read_table(p, columns=["model", "sampling", "engine"])
            for p in release.glob("*/*.parquet")
        ]
    )
    assert set(rows.column("model").to_pylist()) == {preset_only["model"]["name"]}
    assert set(rows.column("engine").to_pylist()) == {"fake"}
    for sampling in set(rows.column("sampling").to_pylist()):
        used = json.loads(sampling) if isinstance(sampling, str) else sampling
        assert {k: used[k] for k in preset_only["sampling"]} == preset_only["sampling"]

    # The release, the ledger and the card agree.
    stats = json.loads((release / "stats.json").read_text())
    ledger = pq.read_table(results / "ledger.parquet", columns=["fate"]).column("fate").to_pylist()
    prompts = sum(
        pq.ParquetFile(p).metadata.num_rows for p in (results / "prompts").glob("*/*.parquet")
    )
    assert rows.num_rows == stats["rows"] == ledger.count("released") > 0
    assert len(ledger) == prompts
    assert f"Run `rehearsal`: {stats['rows']} rows" in (release / "README.md").read_text()
    print(f"rehearsal: {prompts:,} prompts, {stats['rows']:,} rows released")

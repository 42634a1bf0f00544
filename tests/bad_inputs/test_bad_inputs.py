"""Bad input, one case per kind, as a new user would make it: each case writes its input, runs
the stage through the CLI (as a Snakemake rule does), and checks the one-line message and that
nothing complete-looking was written.

A case is (id, stage, setup, expected, outputs): `setup(tmp)` writes the bad input and returns
the stage's arguments; `expected` is a regex the last line of stderr must match (errors exit 2);
`outputs` are paths (relative to tmp) that must not exist afterwards. ACCEPTED lists the odd but
valid inputs and what must hold of their outputs.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from cosmoforge.cli import main
from cosmoforge.stages.generate import parts_dir, set_aside_dir
from tests.helpers import DEDUP_PARAMS

REPO = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
DEDUP = DEDUP_PARAMS
SAMPLING = {"temperature": 0.6, "top_p": 0.95, "top_k": 50, "repetition_penalty": 1.2}
GENERATE = {
    "seed": 5,
    "model": {"name": "fake/model", "path": "nowhere", "revision": "r1"},
    "engine": {"backend": "fake", "flush_every": 2},
    "sampling": {**SAMPLING, "max_tokens": 40},
}


@dataclass(frozen=True)
class Case:
    id: str
    stage: str
    setup: Callable[[Path], list[str]]
    expected: str
    outputs: tuple[str, ...] = ()
    exit_code: int = 2


# --- inputs ------------------------------------------------------------------------------------


def write_lines(path: Path, lines: list[bytes | str | dict]) -> Path:
    with open(path, "wb") as fh:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line) + "\n"
            fh.write(line if isinstance(line, bytes) else line.encode())
    return path


def config_file(tmp: Path, edit: Callable[[dict], None] | None = None, text: str | None = None):
    """The default config with absolute paths, edited; or a raw text."""
    path = tmp / "config.yaml"
    if text is not None:
        path.write_text(text)
        return ["check", "--config", str(path), "--base-dir", str(REPO)]
    config = copy.deepcopy(DEFAULT)
    config["prompts_dir"] = str(REPO / "prompts")
    if edit:
        edit(config)
    path.write_text(yaml.safe_dump(config))
    return ["check", "--config", str(path), "--base-dir", str(REPO)]


def seeds_args(tmp: Path, source: dict, split="wikihow", on_bad_row="error") -> list[str]:
    settings = {"sources": [source], "on_bad_row": on_bad_row, "max_seeds": "all"}
    return ["seeds", "--split", split, "--settings", json.dumps(settings)] + [
        "--out",
        str(tmp / "out" / "seeds.parquet"),
        "--report",
        str(tmp / "out" / "seeds.report.json"),
    ]


def wikihow(tmp: Path, lines, fmt="jsonl", **extra) -> list[str]:
    path = write_lines(tmp / f"wikihow.{fmt}", lines)
    return seeds_args(
        tmp, {"name": "wikihow", "kind": "wikihow", "format": fmt, "path": str(path), **extra}
    )


def parquet_seeds(tmp: Path, damage: Callable[[Path], None]) -> list[str]:
    path = tmp / "wikihow.parquet"
    titles = [f"How to Do Thing Number {i} " * 20 for i in range(20000)]
    pq.write_table(
        pa.table({"id": [str(i) for i in range(20000)], "title": titles}), path, row_group_size=2000
    )
    damage(path)
    return seeds_args(
        tmp, {"name": "wikihow", "kind": "wikihow", "format": "parquet", "path": str(path)}
    )


def damage_middle(path: Path) -> None:
    """Overwrite bytes in the middle of the file: pages (and their headers) there are damaged."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))


def benchmark_args(tmp: Path, name: str, lines) -> list[str]:
    path = write_lines(tmp / f"{name}.jsonl", lines)
    settings = {"ngram": 10, "threshold": 0.5, "benchmarks": {name: {"path": str(path)}}}
    return ["benchmark-index", "--settings", json.dumps(settings)] + [
        "--out",
        str(tmp / "out" / "index.npz"),
        "--report",
        str(tmp / "out" / "benchmarks.json"),
    ]


def generated_shard(tmp: Path) -> Path:
    path = tmp / "gen.parquet"
    pq.write_table(
        pa.table(
            {
                "sample_id": ["a", "b"],
                "split": ["stories", "stories"],
                "text": ["one text here", "another text"],
            }
        ),
        path,
    )
    return path


def decontaminate_args(tmp: Path, shard: Path, index: Path, threshold="0.5") -> list[str]:
    return ["decontaminate", "--shard", str(shard), "--index", str(index)] + [
        "--threshold",
        threshold,
        "--out",
        str(tmp / "out" / "clean.parquet"),
        "--contaminated",
        str(tmp / "out" / "contaminated.parquet"),
    ]


def release_args(tmp: Path, shard: Path, min_len="40") -> list[str]:
    return ["release", "--split", "stories", "--shard", str(shard)] + [
        "--out",
        str(tmp / "out" / "train-00000-of-00001.parquet"),
        "--stats",
        str(tmp / "out" / "stats.json"),
        "--min-token-length",
        min_len,
    ]


def web_prompts_args(
    tmp: Path, edit_clusters: Callable[[list], None] | None, raw=None
) -> list[str]:
    """Four web seeds in 5 clusters (0, 1, 2, 3, 4 -> seeds 0-3 use 0-3), and a decisions file."""
    seeds = write_lines(
        tmp / "web.jsonl", [{"id": f"w{i}", "text": f"web text {i} " * 30} for i in range(4)]
    )
    assert (
        main(
            seeds_args(
                tmp,
                {"name": "web", "kind": "web", "format": "jsonl", "path": str(seeds)},
                split="web_samples_v1",
            )
        )
        == 0
    )
    assignments = tmp / "assignments.parquet"
    pq.write_table(
        pa.table(
            {
                "seed_id": [f"web:w{i}" for i in range(4)],
                "cluster": pa.array([0, 1, 2, 3], pa.int32()),
            }
        ),
        assignments,
    )
    clusters = [
        {"id": c, "topic": f"Topic {c}", "decision": "keep", "route": "all", "score": 7}
        for c in range(5)
    ]
    if edit_clusters:
        edit_clusters(clusters)
    decisions = tmp / "decisions.yaml"
    decisions.write_text(raw if raw is not None else yaml.safe_dump({"clusters": clusters}))
    settings = {
        "seed": 1,
        "shards": 1,
        "extract_chars": 1000,
        "topic_probability": 1.0,
        "templates": None,
    }
    return [
        "prompts",
        "--split",
        "web_samples_v1",
        "--seeds",
        str(tmp / "out" / "seeds.parquet"),
    ] + [
        "--prompts-dir",
        str(REPO / "prompts"),
        "--topic-assignments",
        str(assignments),
        "--topic-decisions",
        str(decisions),
        "--settings",
        json.dumps(settings),
        "--out-dir",
        str(tmp / "prompts"),
        "--report",
        str(tmp / "prompts.report.json"),
    ]


def too_many_shards(tmp: Path) -> list[str]:
    args = web_prompts_args(tmp, None)
    at = args.index("--settings") + 1
    args[at] = json.dumps({**json.loads(args[at]), "shards": 9})
    return args


def prompt_shard(tmp: Path) -> Path:
    from cosmoforge.core.tables import write_prompt_shard
    from cosmoforge.stages.prompts import build_prompt_rows
    from cosmoforge.stages.seeds import read_split_seeds
    from cosmoforge.stages.templates import load_templates

    seeds, _ = read_split_seeds("wikihow", DEFAULT["splits"]["wikihow"]["sources"], base_dir=REPO)
    rows = build_prompt_rows(
        "wikihow", seeds, load_templates(REPO / "prompts", "wikihow"), seed=5, shards=1
    )
    path = tmp / "prompts.parquet"
    write_prompt_shard(rows, path)
    return path


def generate_args(tmp: Path, settings=GENERATE) -> list[str]:
    return [
        "generate",
        "--prompts",
        str(tmp / "prompts.parquet"),
        "--settings",
        json.dumps(settings),
        "--out",
        str(tmp / "gen" / "00000.parquet"),
        "--stats",
        str(tmp / "gen" / "stats.json"),
    ]


def interrupted_generation(
    tmp: Path, damage: Callable[[Path], None] | None = None, settings=GENERATE
) -> list[str]:
    """A shard whose first run died after 4 rows (2 parts); the damage is done to part 0."""
    from cosmoforge.engines import FakeEngine
    from cosmoforge.stages.generate import generate_shard

    class Dies(FakeEngine):
        def run(self, requests):
            for n, completion in enumerate(super().run(requests)):
                if n == 4:
                    raise KeyboardInterrupt
                yield completion

    prompt_shard(tmp)
    with pytest.raises(KeyboardInterrupt):
        generate_shard(
            tmp / "prompts.parquet", tmp / "gen" / "00000.parquet", GENERATE, engine_factory=Dies
        )
    part = parts_dir(tmp / "gen" / "00000.parquet") / "part-00000.parquet"
    assert part.is_file()
    if damage:
        damage(part)
    return generate_args(tmp, settings)


def fit_args(tmp: Path, k: int) -> list[str]:
    from cosmoforge.stages.topics import write_embeddings

    vectors = np.eye(8, dtype=np.float32)[:6]
    write_embeddings(
        tmp / "emb.parquet", ["web_samples_v1"] * 6, [f"web:{i}" for i in range(6)], vectors, 8
    )
    settings = {"seed": 1, "k": k, "sample_size": 100, "niter": 5, "nredo": 1}
    return [
        "topics",
        "fit",
        "--settings",
        json.dumps(settings),
        "--embeddings",
        str(tmp / "emb.parquet"),
        "--out",
        str(tmp / "out" / "centroids.npy"),
        "--fit-report",
        str(tmp / "out" / "fit.json"),
    ]


def set_(path: str, value):
    def edit(config):
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


SEED_OUT = ("out/seeds.parquet",)
CASES = [
    # --- config (cosmoforge check, which the Snakefile runs the same way) -------------------
    Case(
        "config-unknown-key",
        "config",
        lambda t: config_file(t, set_("seeed", 1)),
        r"config.yaml: <top level>: Additional properties are not allowed "
        r"\('seeed' was unexpected\)",
    ),
    Case(
        "config-renamed-section",
        "config",
        lambda t: config_file(t, lambda c: c.update(cluster=c.pop("slurm"))),
        r"config.yaml: 'cluster' is now called 'slurm' \(the Slurm resources section; .*\); "
        r"rename it",
    ),
    Case(
        "config-wrong-type",
        "config",
        lambda t: config_file(t, set_("seed", "abc")),
        r"config.yaml: seed: 'abc' is not of type 'integer'",
    ),
    Case(
        "config-shards-zero",
        "config",
        lambda t: config_file(t, set_("splits.stories.shards", 0)),
        r"config.yaml: splits.stories.shards: 0 is less than the minimum of 1",
    ),
    Case(
        "config-threshold-above-1",
        "config",
        lambda t: config_file(t, set_("decontamination.threshold", 1.5)),
        r"config.yaml: decontamination.threshold: 1.5 is greater than the maximum of 1",
    ),
    Case(
        "config-run-name-dotdot",
        "config",
        lambda t: config_file(t, set_("run_name", "..")),
        r"config.yaml: run_name: '\.\.' must be one folder name: letters, digits, _ \. - "
        r"\(not \. or \.\.\), since it names results/<run_name>/",
    ),
    Case(
        "config-run-name-dot",
        "config",
        lambda t: config_file(t, set_("run_name", ".")),
        r"config.yaml: run_name: '\.' must be one folder name: letters, digits, _ \. - "
        r"\(not \. or \.\.\), since it names results/<run_name>/",
    ),
    Case(
        "config-run-name-slash",
        "config",
        lambda t: config_file(t, set_("run_name", "a/b")),
        r"config.yaml: run_name: 'a/b' must be one folder name: letters, digits, _ \. - "
        r"\(not \. or \.\.\), since it names results/<run_name>/",
    ),
    Case(
        "config-run-name-absolute",
        "config",
        lambda t: config_file(t, set_("run_name", "/tmp/run")),
        r"config.yaml: run_name: '/tmp/run' must be one folder name: letters, digits, _ \. - "
        r"\(not \. or \.\.\), since it names results/<run_name>/",
    ),
    Case(
        "config-run-name-space",
        "config",
        lambda t: config_file(t, set_("run_name", "my run")),
        r"config.yaml: run_name: 'my run' must be one folder name: letters, digits, _ \. - "
        r"\(not \. or \.\.\), since it names results/<run_name>/",
    ),
    Case(
        "config-converted-model-path-outside",
        "config",
        lambda t: config_file(t, set_("model.path", "prompts")),
        r"config.yaml: model.path: prompts is where the model converted from model.gguf is "
        r"written \(the folder is replaced\), so a relative path must be a folder under "
        r"resources/models/",
    ),
    Case(
        "config-nan-threshold",
        "config",
        lambda t: config_file(t, set_("decontamination.threshold", float("nan"))),
        r"config.yaml: decontamination.threshold: must be a finite number",
    ),
    Case(
        "config-inf-temperature",
        "config",
        lambda t: config_file(t, set_("sampling.temperature", float("inf"))),
        r"config.yaml: sampling.temperature: must be a finite number",
    ),
    Case(
        "config-duplicate-key",
        "config",
        lambda t: config_file(t, text="seed: 1\nseed: 2\n"),
        r"config.yaml: line 2, column 1: .*'seed' is given twice in one mapping "
        r"\(first on line 1\)",
    ),
    Case(
        "config-split-sampling-typo",
        "config",
        lambda t: config_file(t, set_("splits.wikihow.sampling", {"temprature": 0.9})),
        r"config.yaml: splits.wikihow.sampling: Additional properties are not allowed "
        r"\('temprature' was unexpected\)",
    ),
    Case(
        "config-empty-templates",
        "config",
        lambda t: config_file(t, set_("splits.wikihow.templates", [])),
        r"config.yaml: splits.wikihow.templates: \[\] should be non-empty",
    ),
    Case(
        "config-seed-path-is-a-folder",
        "config",
        lambda t: config_file(
            t,
            set_(
                "splits.wikihow.sources",
                [{"name": "w", "kind": "wikihow", "format": "jsonl", "path": "resources/seeds"}],
            ),
        ),
        r"config: splits.wikihow.sources\[0\].path: resources/seeds is a folder; name a jsonl "
        r"file \(a folder of data files is format hf\)",
    ),
    Case(
        "config-two-sources-one-name",
        "config",
        lambda t: config_file(
            t,
            set_(
                "splits.stories.sources",
                [
                    {**DEFAULT["splits"]["stories"]["sources"][0], "name": "same"},
                    {**DEFAULT["splits"]["stories"]["sources"][1], "name": "same"},
                ],
            ),
        ),
        r"config: splits.stories.sources\[1\].name: 'same' is also the name of sources\[0\]",
    ),
    Case(
        "config-unknown-split",
        "config",
        lambda t: config_file(t, set_("splits.poems", DEFAULT["splits"]["wikihow"])),
        r"config.yaml: splits: Additional properties are not allowed \('poems' was unexpected\)",
    ),
    Case(
        "config-unknown-benchmark",
        "config",
        lambda t: config_file(t, set_("decontamination.benchmarks.trivia", {"path": "x"})),
        r"config.yaml: decontamination.benchmarks: 'trivia' is not one of",
    ),
    Case(
        "config-empty-sources",
        "config",
        lambda t: config_file(t, set_("splits.wikihow.sources", [])),
        r"config.yaml: splits.wikihow.sources: \[\] should be non-empty",
    ),
    Case(
        "config-yaml-error",
        "config",
        lambda t: config_file(t, text="seed: 1\nsplits:\n  stories: [\n"),
        r"config.yaml: line 4, column 1: not valid YAML \(while parsing a flow node",
    ),
    Case(
        "config-missing-seed-path",
        "config",
        lambda t: config_file(
            t,
            set_(
                "splits.wikihow.sources",
                [
                    {
                        "name": "wikihow",
                        "kind": "wikihow",
                        "format": "jsonl",
                        "path": "resources/seeds/wikihow_titels.jsonl",
                    }
                ],
            ),
        ),
        r"config: splits.wikihow.sources\[0\].path: no such file "
        r"resources/seeds/wikihow_titels.jsonl",
    ),
    Case(
        "config-missing-template",
        "config",
        lambda t: config_file(t, set_("splits.wikihow.templates", ["how_to_typo"])),
        r"config: splits.wikihow.templates\[0\]: no such template "
        r".*/prompts/wikihow/how_to_typo.yaml",
    ),
    Case(
        "config-missing-benchmark-path",
        "config",
        lambda t: config_file(
            t, set_("decontamination.benchmarks.mmlu", {"path": "resources/mmlu.jsonl"})
        ),
        r"config: decontamination.benchmarks.mmlu.path: no such file resources/mmlu.jsonl",
    ),
    Case(
        "config-k-above-seeds",
        "topics fit",
        lambda t: fit_args(t, 9),
        r"topics.kmeans.k is 9 but only 6 web seeds were embedded",
        ("out/centroids.npy",),
    ),
    Case(
        "config-more-shards-than-seeds",
        "prompts",
        too_many_shards,
        r"splits.web_samples_v1.shards: 9 shards for 4 seed\(s\) in .*seeds.parquet would "
        r"leave 5 shard\(s\) empty; set splits.web_samples_v1.shards to at most 4$",
        ("prompts/00000.parquet", "prompts/00008.parquet", "prompts.report.json"),
    ),
    Case(
        "config-missing-model-path",
        "generate",
        lambda t: (
            prompt_shard(t),
            generate_args(
                t,
                {
                    **GENERATE,
                    "model": {"name": "m", "path": str(t / "models" / "typo")},
                    "engine": {"backend": "vllm", "flush_every": 2},
                },
            ),
        )[1],
        r"model.path: no model folder at .*/models/typo",
        ("gen/00000.parquet",),
    ),
    # --- seed files -----------------------------------------------------------------------
    Case(
        "seeds-missing-file",
        "seeds",
        lambda t: seeds_args(
            t,
            {
                "name": "wikihow",
                "kind": "wikihow",
                "format": "jsonl",
                "path": str(t / "nope.jsonl"),
            },
        ),
        r"nope.jsonl: seed file not found \(source 'wikihow'\)",
        SEED_OUT,
    ),
    Case(
        "seeds-empty-file",
        "seeds",
        lambda t: wikihow(t, []),
        r"split 'wikihow': no usable seed rows.*seeds.report.json",
        SEED_OUT,
    ),
    Case(
        "seeds-invalid-json",
        "seeds",
        lambda t: wikihow(t, [{"id": "1", "title": "How to A"}, b'{"id": "2", "title": \n']),
        r"wikihow.jsonl: row 2: not valid JSON",
        SEED_OUT,
    ),
    Case(
        "seeds-missing-field",
        "seeds",
        lambda t: wikihow(t, [{"id": "1", "name": "How to A"}]),
        r"wikihow.jsonl: row 1, field 'title': field 'title' is missing",
        SEED_OUT,
    ),
    Case(
        "seeds-blank-field",
        "seeds",
        lambda t: wikihow(t, [{"id": "1", "title": " \t "}]),
        r"wikihow.jsonl: row 1, field 'title': field 'title' is empty",
        SEED_OUT,
    ),
    Case(
        "seeds-wrong-type",
        "seeds",
        lambda t: wikihow(t, [{"id": "1", "title": ["How"]}]),
        r"wikihow.jsonl: row 1, field 'title': field 'title' is list, expected string",
        SEED_OUT,
    ),
    Case(
        "seeds-undecodable-bytes",
        "seeds",
        lambda t: wikihow(t, [b'{"id": "1", "title": "How to \xff"}\n']),
        r"wikihow.jsonl: row 1: not UTF-8",
        SEED_OUT,
    ),
    Case(
        "seeds-duplicate-id",
        "seeds",
        lambda t: wikihow(t, [{"id": "1", "title": "How to A"}, {"id": "1", "title": "How to B"}]),
        r"wikihow.jsonl: row 2, field 'id': seed id '1' already used at .*wikihow.jsonl: row 1",
        SEED_OUT,
    ),
    Case(
        "seeds-csv-without-column",
        "seeds",
        lambda t: wikihow(t, ["id,name\n", "1,How to A\n"], fmt="csv"),
        r"wikihow.csv: row 1, field 'title': field 'title' is missing",
        SEED_OUT,
    ),
    Case(
        "seeds-corrupt-parquet",
        "seeds",
        lambda t: wikihow(t, [b"PAR1 not parquet at all"], fmt="parquet"),
        r"wikihow.parquet: not a readable parquet file",
        SEED_OUT,
    ),
    Case(
        "seeds-damaged-parquet",
        "seeds",
        lambda t: parquet_seeds(t, damage_middle),
        r"wikihow.parquet: unreadable after row \d+",
        SEED_OUT,
    ),
    # --- benchmark files ------------------------------------------------------------------
    Case(
        "benchmark-missing",
        "benchmark-index",
        lambda t: [
            "benchmark-index",
            "--settings",
            json.dumps(
                {
                    "ngram": 10,
                    "threshold": 0.5,
                    "benchmarks": {"mmlu": {"path": str(t / "mmlu.jsonl")}},
                }
            ),
            "--out",
            str(t / "out" / "index.npz"),
            "--report",
            str(t / "out" / "b.json"),
        ],
        r"mmlu.jsonl: benchmark file not found",
        ("out/index.npz",),
    ),
    Case(
        "benchmark-corrupt",
        "benchmark-index",
        lambda t: benchmark_args(t, "mmlu", [b"{not json\n"]),
        r"mmlu.jsonl: row 1: not valid UTF-8 JSON",
        ("out/index.npz",),
    ),
    Case(
        "benchmark-missing-field",
        "benchmark-index",
        lambda t: benchmark_args(t, "mmlu", [{"subject": "x", "choices": ["a"], "answer": 0}]),
        r"mmlu.jsonl: row 1: field 'question' is missing",
        ("out/index.npz",),
    ),
    Case(
        "benchmark-empty",
        "benchmark-index",
        lambda t: benchmark_args(t, "mmlu", []),
        r"mmlu.jsonl: no benchmark items \(0 row\(s\) without text\); .* remove 'mmlu' from "
        r"decontamination.benchmarks",
        ("out/index.npz",),
    ),
    Case(
        "benchmark-index-corrupt",
        "decontaminate",
        lambda t: decontaminate_args(
            t, generated_shard(t), write_lines(t / "index.npz", [b"garbage"])
        ),
        r"index.npz: not a readable benchmark index .*delete it and rerun",
        ("out/clean.parquet",),
    ),
    # --- intermediates ----------------------------------------------------------------------
    Case(
        "intermediate-corrupt-shard",
        "dedup signatures",
        lambda t: [
            "dedup",
            "signatures",
            "--settings",
            json.dumps(DEDUP),
            "--shard",
            str(write_lines(t / "gen.parquet", [b"PAR1garbagePAR1"])),
            "--rank",
            "0",
            "--tasks",
            "1",
            "--out-dir",
            str(t / "out" / "sig"),
            "--logging-dir",
            str(t / "logs"),
        ],
        r"gen.parquet: unreadable parquet \(.*\); delete it and rerun",
        ("out/sig",),
    ),
    Case(
        "intermediate-damaged-pages",
        "release",
        lambda t: release_args(t, (lambda p: (damage_thrift(p), p)[1])(clean_shard(t))),
        r"clean.parquet: unreadable parquet \(.*\); delete it and rerun",
        ("out/train-00000-of-00001.parquet", "out/stats.json"),
    ),
    # --- the decisions file -----------------------------------------------------------------
    Case(
        "decisions-bad-value",
        "prompts",
        lambda t: web_prompts_args(t, lambda c: c[1].update(decision="maybe")),
        r"decisions.yaml: cluster 1: field 'decision' must be keep or drop",
        ("prompts.report.json",),
    ),
    Case(
        "decisions-removed-cluster",
        "prompts",
        lambda t: web_prompts_args(t, lambda c: c.pop(2)),
        r"decisions.yaml: missing cluster\(s\) \[2\]; every cluster id from 0 to 4",
        ("prompts.report.json",),
    ),
    Case(
        "decisions-duplicate",
        "prompts",
        lambda t: web_prompts_args(t, lambda c: c.append(dict(c[3]))),
        r"decisions.yaml: cluster 3: appears more than once",
        ("prompts.report.json",),
    ),
    Case(
        "decisions-yaml-error",
        "prompts",
        lambda t: web_prompts_args(t, None, raw="clusters: [\n  {id: 0\n"),
        r"decisions.yaml: line \d+, column \d+: not valid YAML",
        ("prompts.report.json",),
    ),
    Case(
        "decisions-all-dropped",
        "prompts",
        lambda t: web_prompts_args(t, lambda c: [e.update(decision="drop") for e in c]),
        r"decisions.yaml: every cluster is dropped, so the web splits would get no prompts",
        ("prompts.report.json",),
    ),
    # --- checkpoint parts: set aside with a warning, the shard completes --------------------
    Case(
        "parts-corrupt",
        "generate",
        lambda t: interrupted_generation(t, lambda p: p.write_bytes(b"PAR1 garbage")),
        r"part-00000.parquet: not reused, it is unreadable",
        exit_code=0,
    ),
    Case(
        "parts-damaged",
        "generate",
        lambda t: interrupted_generation(t, damage_thrift),
        r"part-00000.parquet: not reused, it is unreadable",
        exit_code=0,
    ),
    Case(
        "parts-wrong-schema",
        "generate",
        lambda t: interrupted_generation(
            t, lambda p: pq.write_table(pa.table({"sample_id": ["x"]}), p)
        ),
        r"part-00000.parquet: not reused, it lacks column\(s\)",
        exit_code=0,
    ),
    Case(
        "parts-stale-settings",
        "generate",
        lambda t: interrupted_generation(
            t, settings={**GENERATE, "sampling": {**GENERATE["sampling"], "top_p": 0.9}}
        ),
        r"part-00000.parquet: not reused, it was made with other settings: "
        r"sampling.top_p 0.95 -> 0.9",
        exit_code=0,
    ),
    # --- a stage's own arguments, with the schema's rules ------------------------------------
    Case(
        "cli-threshold-above-1",
        "decontaminate",
        lambda t: decontaminate_args(t, generated_shard(t), t / "index.npz", threshold="1.5"),
        r"argument --threshold: decontamination.threshold: 1.5 is greater than the maximum of 1",
    ),
    Case(
        "cli-threshold-not-a-number",
        "decontaminate",
        lambda t: decontaminate_args(t, generated_shard(t), t / "index.npz", threshold="half"),
        r"argument --threshold: not a float: 'half'",
    ),
    Case(
        "cli-threshold-nan",
        "decontaminate",
        lambda t: decontaminate_args(t, generated_shard(t), t / "index.npz", threshold="nan"),
        r"argument --threshold: decontamination.threshold: must be a finite number",
    ),
    Case(
        "cli-negative-min-token-length",
        "release",
        lambda t: release_args(t, generated_shard(t), min_len="-1"),
        r"argument --min-token-length: release.min_token_length: -1 is less than the minimum of 0",
    ),
    Case(
        "cli-sampling-out-of-range",
        "generate",
        lambda t: generate_args(
            t, {**GENERATE, "sampling": {**GENERATE["sampling"], "top_p": 1.5}}
        ),
        r"argument --settings: sampling.top_p: 1.5 is greater than the maximum of 1",
    ),
    Case(
        "cli-dedup-settings",
        "dedup signatures",
        lambda t: [
            "dedup",
            "signatures",
            "--settings",
            json.dumps({**DEDUP, "n_grams": 0}),
            "--shard",
            "x",
            "--logging-dir",
            str(t),
        ],
        r"argument --settings: dedup.n_grams: 0 is less than the minimum of 1",
    ),
    Case(
        "cli-topics-stage-without-its-input",
        "topics fit",
        lambda t: [
            "topics",
            "fit",
            "--settings",
            "{}",
            "--out",
            str(t / "c.npy"),
            "--fit-report",
            str(t / "r.json"),
        ],
        r"the following arguments are required: --embeddings",
    ),
    Case(
        "cli-dedup-filter-without-outputs",
        "dedup filter",
        lambda t: [
            "dedup",
            "filter",
            "--settings",
            json.dumps(DEDUP),
            "--shard",
            "x",
            "--rank",
            "0",
            "--in-dir",
            str(t),
            "--logging-dir",
            str(t),
        ],
        r"the following arguments are required: --kept, --removed, --stayed",
    ),
    Case(
        "cli-unknown-split",
        "seeds",
        lambda t: seeds_args(
            t, {"name": "w", "kind": "wikihow", "format": "jsonl", "path": "x"}, split="poems"
        ),
        r"argument --split: invalid choice: 'poems'",
    ),
    Case(
        "cli-bad-source",
        "seeds",
        lambda t: seeds_args(t, {"name": "w", "kind": "wikihow", "format": "xml", "path": "x"}),
        r"argument --settings: splits.\*.sources.0.format: 'xml' is not one of",
    ),
    Case(
        "cli-kept-by-without-split",
        "seeds",
        lambda t: (
            seeds_args(t, {"name": "w", "kind": "wikihow", "format": "jsonl", "path": "x"})
            + ["--kept-by", "seeds/web_samples_v1.parquet"]
        ),
        r"argument --kept-by: 'seeds/web_samples_v1.parquet': expected SPLIT=PATH with SPLIT one",
    ),
    Case(
        "seeds-kept-by-not-in-settings",
        "seeds",
        lambda t: (
            seeds_args(
                t,
                {"name": "w", "kind": "wikihow", "format": "jsonl", "path": "x"},
                split="wikihow",
            )
            + ["--kept-by", f"web_samples_v1={t / 'v1.parquet'}"]
        ),
        r"split 'wikihow': --kept-by gives the seed files of \['web_samples_v1'\], but its "
        r"settings' yields_to is empty",
    ),
]


def clean_shard(tmp: Path) -> Path:
    """A decontaminated shard as release reads it (the generation schema), 3,000 rows."""
    from cosmoforge.core.tables import GENERATION_SCHEMA

    n = 3000
    rows = {name: [None] * n for name in GENERATION_SCHEMA.names}
    rows.update(
        sample_id=[f"s{i}" for i in range(n)],
        split=["stories"] * n,
        shard=[0] * n,
        text=[f"text number {i} " * 40 for i in range(n)],
        finish_reason=["stop"] * n,
    )
    path = tmp / "clean.parquet"
    pq.write_table(pa.table(rows, schema=GENERATION_SCHEMA), path, row_group_size=500)
    return path


def damage_thrift(path: Path) -> None:
    """Corrupt the footer's metadata: the file still ends in PAR1 with a plausible length."""
    data = bytearray(path.read_bytes())
    footer_len = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - footer_len
    data[start : start + footer_len // 2] = b"\x07" * (footer_len // 2)
    path.write_bytes(bytes(data))


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_clear_line(case, tmp_path, capsys, caplog):
    argv = case.setup(tmp_path)
    capsys.readouterr()
    caplog.clear()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == case.exit_code, err[-2000:]
    if case.exit_code == 0:
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any(re.search(case.expected, w) for w in warnings), warnings
        out = tmp_path / "gen" / "00000.parquet"
        assert pq.read_table(out).num_rows == pq.read_table(tmp_path / "prompts.parquet").num_rows
        assert (set_aside_dir(parts_dir(out)) / "part-00000.parquet").is_file()
    else:
        assert re.search(case.expected, last_line(err)), last_line(err)
    for name in case.outputs:
        path = tmp_path / name
        written = path.is_file() or (path.is_dir() and any(p.is_file() for p in path.rglob("*")))
        assert not written, f"{name} was written"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            [
                "seeds",
                "--split",
                "web_samples_v1",
                "--settings",
                json.dumps(
                    {
                        "sources": [
                            {"name": "fw", "kind": "web", "format": "hf", "dataset": "nobody/x"}
                        ],
                        "on_bad_row": "error",
                        "max_seeds": "all",
                    }
                ),
            ]
            + ["--out", "out/seeds.parquet", "--report", "out/seeds.report.json"],
            r"error: hf:nobody/x: cannot load from the Hugging Face hub \(.*\)\. Offline .*"
            r"give the file as a jsonl or parquet source \(format and path\)$",
        ),
        (
            [
                "benchmark-index",
                "--settings",
                json.dumps({"ngram": 10, "threshold": 0.5, "benchmarks": {"mmlu": {}}}),
            ]
            + ["--out", "out/index.npz", "--report", "out/benchmarks.json"],
            r"error: hf:cais/mmlu: cannot load from the Hugging Face hub \(.*\)\. Offline .*"
            r"give the file as decontamination.benchmarks.mmlu.path$",
        ),
    ],
    ids=["seeds", "benchmark"],
)
def test_a_hub_source_offline_is_one_line(argv, expected, tmp_path):
    # A process of its own: the hub libraries read HF_HUB_OFFLINE when they are imported.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    run = subprocess.run(
        [sys.executable, "-m", "cosmoforge", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert re.search(expected, last_line(run.stderr)), last_line(run.stderr)
    assert not [p for p in tmp_path.glob("out/**/*") if p.is_file()]


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    args = wikihow(tmp_path, [{"id": "1", "title": "How to Fold a Paper Crane"}])

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    assert main(args) == 2
    assert re.search(
        r"/out/seeds\.\S+: not written: the disk is full; free space there and rerun "
        r"\(No space left on device\); nothing partial was kept$",
        last_line(capsys.readouterr().err),
    )
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_every_kind_in_the_issue_has_a_case():
    kinds = {c.id.split("-")[0] for c in CASES}
    assert kinds == {"config", "seeds", "benchmark", "intermediate", "decisions", "parts", "cli"}
    assert len(CASES) + len(ACCEPTED) >= 49


# --- odd but valid inputs: accepted, with the right result -----------------------------------


def one_mb_seed(tmp: Path):
    text = "A long line of seed text. " * 40_000  # ~1 MB
    args = seeds_args(
        tmp,
        {
            "name": "web",
            "kind": "web",
            "format": "jsonl",
            "path": str(write_lines(tmp / "web.jsonl", [{"id": "big", "text": text}])),
        },
        split="web_samples_v1",
    )

    def check():
        from cosmoforge.stages.prompts import build_prompt_rows
        from cosmoforge.stages.templates import load_templates

        seeds = pq.read_table(tmp / "out" / "seeds.parquet")
        assert seeds.column("text")[0].as_py() == text  # kept whole in the seed file
        rows = build_prompt_rows(
            "web_samples_v1",
            seeds,
            load_templates(REPO / "prompts", "web_samples_v1"),
            seed=1,
            shards=1,
        )
        assert rows and all(len(r["prompt"]) < 1000 + 2000 for r in rows)  # the extract is cut

    return args, check


def bom(tmp: Path, fmt: str):
    path = tmp / f"wikihow.{fmt}"
    body = (
        '{"id": "wh-1", "title": "How to A"}\n' if fmt == "jsonl" else "id,title\nwh-1,How to A\n"
    )
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    args = seeds_args(tmp, {"name": "wikihow", "kind": "wikihow", "format": fmt, "path": str(path)})

    def check():
        assert pq.read_table(tmp / "out" / "seeds.parquet").column("seed_id").to_pylist() == [
            "wikihow:wh-1"
        ]

    return args, check


def template_syntax_in_seed(tmp: Path):
    nasty = "Use {{ name }} and {% if x %} or ${VAR}"
    args = wikihow(tmp, [{"id": "1", "title": nasty}])

    def check():
        from cosmoforge.stages.prompts import build_prompt_rows
        from cosmoforge.stages.templates import load_templates

        seeds = pq.read_table(tmp / "out" / "seeds.parquet")
        rows = build_prompt_rows(
            "wikihow", seeds, load_templates(REPO / "prompts", "wikihow"), seed=1, shards=1
        )
        assert rows and all(nasty in r["prompt"] for r in rows)

    return args, check


ACCEPTED = {
    "seeds-1mb-seed": one_mb_seed,
    "seeds-bom-jsonl": lambda t: bom(t, "jsonl"),
    "seeds-bom-csv": lambda t: bom(t, "csv"),
    "seeds-template-syntax-literal": template_syntax_in_seed,
}


@pytest.mark.parametrize("name", ACCEPTED)
def test_odd_but_valid_input_is_accepted(name, tmp_path):
    args, check = ACCEPTED[name](tmp_path)
    assert main(args) == 0
    check()

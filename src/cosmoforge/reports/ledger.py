"""The ledger: one row per prompt of the run with its final fate, and `explain` for one sample.

Fates: `released`; `near_duplicate` (detail: the sample id that stayed in its MinHash cluster);
`contaminated` (detail: the benchmark items it matched); `dropped:<reason>` (an engine error or
a quality flag in `quality.drop`; the release step records these). Every generated row leaves
exactly one trace (removed by dedup, or by decontamination, or left out, or released), and the
ledger checks that each prompt has exactly one. It is written one shard at a time.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cosmoforge.core.declare import BASE_DIR, RUN_CONFIG, Command, json_arg, path_arg, run_config
from cosmoforge.core.errors import CosmoforgeError
from cosmoforge.core.io import atomic_path, read_input_table
from cosmoforge.core.layout import Layout, RunPaths
from cosmoforge.stages.release import PROVENANCE_COLUMNS

LEDGER_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("split", pa.string()),
        ("shard", pa.string()),
        ("template_id", pa.string()),
        ("fate", pa.string()),
        ("detail", pa.string()),
    ]
)


def shard_files(paths: RunPaths, split: str, shard: str) -> dict[str, str]:
    """The files of one generation shard that its fates are read from."""
    return {
        "generated": paths.generated(split, shard),
        "removed": paths.dedup_removed(split, shard),
        "contaminated": paths.decont_contaminated(split, shard),
        "left_out": paths.release_left_out(split, shard),
        "release": paths.release_file(split, shard),
    }


def shard_fates(files: dict[str, str | Path], stayed: dict[str, str]) -> pa.Table:
    """The ledger rows of one generation shard."""
    generated = read_input_table(files["generated"], columns=["sample_id", "split", "template_id"])
    fate: dict[str, tuple[str, str | None]] = {}

    def record(sample_id: str, value: tuple[str, str | None], where) -> None:
        if sample_id in fate:
            raise CosmoforgeError(
                f"{where}: sample {sample_id!r} already has the fate {fate[sample_id][0]!r}; "
                "the shard's outputs are from different runs (rerun its finish_shard job)"
            )
        fate[sample_id] = value

    removed = read_input_table(files["removed"], columns=["sample_id", "minhash_cluster_id"])
    for sample_id, cluster in zip(*(c.to_pylist() for c in removed.columns), strict=True):
        record(sample_id, ("near_duplicate", stayed.get(str(cluster))), files["removed"])
    dirty = read_input_table(files["contaminated"], columns=["sample_id", "benchmark_matches"])
    for sample_id, matches in zip(*(c.to_pylist() for c in dirty.columns), strict=True):
        items = sorted({m.get("item_id", "?") for m in json.loads(matches or "[]")})
        record(sample_id, ("contaminated", ", ".join(items) or None), files["contaminated"])
    left_out = read_input_table(files["left_out"])
    for sample_id, reason in zip(*(c.to_pylist() for c in left_out.columns), strict=True):
        record(sample_id, (f"dropped:{reason}", None), files["left_out"])
    released = read_input_table(files["release"], columns=["sample_id"]).column(0).to_pylist()
    for sample_id in released:
        record(sample_id, ("released", None), files["release"])
    ids = generated.column("sample_id").to_pylist()
    missing = [i for i in ids if i not in fate]
    extra = set(fate) - set(ids)
    if missing or extra:
        raise CosmoforgeError(
            f"{files['generated']}: {len(missing)} generated row(s) without a fate (e.g. "
            f"{missing[:2]}) and {len(extra)} fate(s) of rows not generated here; the shard's "
            "outputs are from different runs (rerun its finish_shard job)"
        )
    shard = Path(files["generated"]).stem
    return pa.table(
        {
            "sample_id": ids,
            "split": generated.column("split"),
            "shard": [shard] * len(ids),
            "template_id": generated.column("template_id"),
            "fate": [fate[i][0] for i in ids],
            "detail": [fate[i][1] for i in ids],
        },
        schema=LEDGER_SCHEMA,
    )


def write_ledger(paths: RunPaths, output: str | Path) -> dict:
    """The run's ledger, shard by shard in canonical order; returns fate counts per split."""
    stayed: dict[str, str] = {}
    for path in (paths.dedup_stayed(split, shard) for split, shard in paths.gen_shards):
        stayed.update(json.loads(Path(path).read_text(encoding="utf-8")))
    counts: dict[str, Counter] = {}
    with atomic_path(output) as tmp, pq.ParquetWriter(tmp, LEDGER_SCHEMA, compression="zstd") as w:
        for split, shard in paths.gen_shards:
            table = shard_fates(shard_files(paths, split, shard), stayed)
            if table.num_rows:
                w.write_table(table)
            counts.setdefault(split, Counter()).update(table.column("fate").to_pylist())
    return {split: dict(sorted(c.items())) for split, c in counts.items()}


def explain(config: dict, sample_id: str, base_dir: str | Path = ".") -> str:
    """The prompt, the text, the provenance and the fate of one sample, from the run's files."""
    layout = Layout(config)
    base = Path(base_dir)
    ledger_path = base / layout.ledger()
    if not ledger_path.is_file():
        raise CosmoforgeError(f"{ledger_path}: no ledger yet (it is written after the release)")
    ledger = read_input_table(ledger_path, filters=[("sample_id", "=", sample_id)]).to_pylist()
    if not ledger:
        raise CosmoforgeError(f"{ledger_path}: no sample {sample_id!r} in this run")
    entry = ledger[0]
    generated = base / layout.generated(entry["split"], entry["shard"])
    rows = read_input_table(generated).filter(pc.equal(pc.field("sample_id"), sample_id))
    row = rows.to_pylist()[0]
    # The release's provenance columns, and the engine error of a row that was dropped for it.
    provenance = {k: row.get(k) for k in (*PROVENANCE_COLUMNS, "error") if k != "sample_id"}
    fate = entry["fate"] + (f" ({entry['detail']})" if entry["detail"] else "")
    return "\n".join(
        [
            f"sample {sample_id}: {fate}",
            "",
            "provenance:",
            *(f"  {k}: {v}" for k, v in provenance.items()),
            "",
            "prompt:",
            row["prompt"],
            "",
            "text:",
            row["text"] or "",
        ]
    )


# --- command line ------------------------------------------------------------------------------


def _ledger_command(args) -> None:
    counts = write_ledger(RunPaths.of_settings(args.settings), args.out)
    print(json.dumps(counts, indent=2))


def _explain_command(args) -> None:
    print(explain(run_config(args), args.sample_id, args.base_dir))


COMMANDS = (
    Command(
        "ledger",
        "one row per prompt with its final fate (ledger.parquet)",
        _ledger_command,
        {
            "--settings": {
                "required": True,
                "type": json_arg,
                "help": 'JSON: {"run_name", "shards": {split: count}}: where the files are',
            },
            "--out": path_arg("ledger.parquet"),
        },
    ),
    Command(
        "explain",
        "prompt, text, provenance and fate of one sample",
        _explain_command,
        {"sample_id": {}, **RUN_CONFIG, **BASE_DIR},
    ),
)

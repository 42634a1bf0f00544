"""Time `cosmoforge status` on a run laid out like the Cosmopedia preset (773 generation shards):
half the shards done, 40 running with 20 checkpoint parts each, the rest pending. Synthetic
files in a temporary folder; prints the seconds of one status read (goal: <= 2 s).

    .venv/bin/python measure/status_speed.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cosmoforge.core.config import load_config  # noqa: E402
from cosmoforge.core.layout import Layout  # noqa: E402
from cosmoforge.ops.status import format_status, run_status  # noqa: E402
from cosmoforge.stages.generate import parts_dir  # noqa: E402


def main() -> None:
    config = load_config(REPO / "config" / "presets" / "cosmopedia.yaml")
    layout = Layout(config)
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        shutil.copytree(REPO / "prompts", base / "prompts")
        part = pa.table({"completion_tokens": pa.array([800] * 512, pa.int32())})
        running = 0
        for n, (split, shard) in enumerate(layout.gen_shards):
            report = base / layout.prompt_report(split)
            if not report.exists():
                report.parent.mkdir(parents=True, exist_ok=True)
                per = {str(int(s)): 40000 for s in layout.shards(split)}
                report.write_text(json.dumps({"per_shard": per}))
            out = base / layout.generated(split, shard)
            out.parent.mkdir(parents=True, exist_ok=True)
            if n % 2 == 0:
                out.write_bytes(b"")
                stats = {
                    "rows": 40000,
                    "total_completion_tokens": 32_000_000,
                    "engine_start_s": 300,
                    "generate_s": 16000,
                }
                out.with_name(out.stem + ".stats.json").write_text(json.dumps(stats))
            elif running < 40:
                running += 1
                folder = parts_dir(out)
                folder.mkdir()
                for i in range(20):
                    pq.write_table(part, folder / f"part-{i:05d}.parquet")
        started = time.perf_counter()
        status = run_status(config, base)
        seconds = time.perf_counter() - started
    print(format_status(status))
    print(
        f"\nstatus of {len(layout.gen_shards)} shards ({running} running x 20 parts): "
        f"{seconds:.2f} s"
    )


if __name__ == "__main__":
    main()

"""Speed of the split-level stages on one core, and the exact duplicate-id set at 10M ids.

- seeds: rows/s reading, validating and writing synthetic FineWeb-like web seeds (~3,000
  characters) from parquet, from the same file as a `datasets` source and from jsonl, with
  peak RSS;
- prompts: prompts/s of the prompts job (one web template, extracts of 1,000 characters);
- the duplicate-id set (`cosmoforge.stages.seeds.rows.IdHashSet`) at 10M ids: seconds and
  bytes per id;
- a jsonl source broken at row 5,000,000 under `on_bad_row: error`: the message, and that
  nothing was written.

    .venv/bin/python measure/stage_speed.py [--seeds 200000] [--broken-row 5000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "measure"))


def run(code: str) -> dict:
    """Run `code` in a fresh single-threaded interpreter; its last line of output is JSON. The
    peak RSS is the child's own (VmHWM), which rusage would mix with this process's."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    code += (
        "\nimport json as _j, pathlib as _p\n"
        "_h = [l for l in _p.Path('/proc/self/status').read_text().splitlines()"
        " if l.startswith('VmHWM')][0]\n"
        "print(_j.dumps({'vmhwm_kb': int(_h.split()[1])}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    lines = proc.stdout.strip().splitlines()
    return {**json.loads(lines[-2]), "peak_rss_mb": json.loads(lines[-1])["vmhwm_kb"] / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=200000)
    parser.add_argument("--ids", type=int, default=10_000_000)
    parser.add_argument("--broken-row", type=int, default=5_000_000)
    args = parser.parse_args()
    from scale_rehearsal import synthetic_seeds

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        synthetic_seeds(work / "web.parquet", args.seeds)
        import pyarrow.parquet as pq

        with open(work / "web.jsonl", "w") as fh:
            for batch in pq.ParquetFile(work / "web.parquet").iter_batches(batch_size=20000):
                for row in batch.to_pylist():
                    fh.write(json.dumps(row) + "\n")
        # The same file as a `datasets` source (format hf, the preset's web splits), read from a
        # local folder: what the stage does per row once the hub's bytes have arrived.
        (work / "hf").mkdir()
        (work / "hf" / "train-00000.parquet").symlink_to(work / "web.parquet")
        for fmt in ("parquet", "hf", "jsonl"):
            source = {"name": "web", "kind": "web", "format": fmt, "path": str(work / f"web.{fmt}")}
            if fmt == "hf":
                source = {"name": "web", "kind": "web", "format": "hf", "dataset": str(work / "hf")}
            result = run(
                "import json, time\n"
                "from cosmoforge.stages.seeds import write_split_seeds\n"
                "t = time.perf_counter()\n"
                f"r = write_split_seeds('web_samples_v1', [{source!r}], "
                f"{str(work / 's.parquet')!r})\n"
                "print(json.dumps({'s': time.perf_counter() - t, 'seeds': r['seeds']}))"
            )
            print(
                f"seeds from {fmt:<8} {result['seeds']:>9,} rows in {result['s']:6.1f} s: "
                f"{result['seeds'] / result['s']:>9,.0f} rows/s, peak RSS "
                f"{result['peak_rss_mb']:.0f} MB"
            )
        result = run(
            "import json, time\n"
            "from cosmoforge.stages.prompts import write_split_prompts\n"
            "from cosmoforge.stages.templates import load_templates\n"
            f"t = load_templates({str(REPO / 'prompts')!r}, 'web_samples_v1', "
            "['textbook_academic'])\n"
            "start = time.perf_counter()\n"
            f"r = write_split_prompts('web_samples_v1', {str(work / 's.parquet')!r}, t, 10,"
            f" {str(work / 'prompts')!r}, seed=1)\n"
            "print(json.dumps({'s': time.perf_counter() - start, 'prompts': r['prompts']}))"
        )
        print(
            f"prompts (one split job, 10 shards, 1 core) {result['prompts']:,} in "
            f"{result['s']:.1f} s: "
            f"{result['prompts'] / result['s']:,.0f} prompts/s, peak RSS "
            f"{result['peak_rss_mb']:.0f} MB"
        )
        result = run(
            "import json, time, numpy as np\n"
            "from cosmoforge.stages.seeds.rows import IdHashSet, hash_ids\n"
            "s = IdHashSet(); ids = 0; t = time.perf_counter()\n"
            f"for start in range(0, {args.ids}, 100000):\n"
            "    batch = [f'fineweb:<urn:uuid:{i:012d}>' for i in range(start, start + 100000)]\n"
            "    seen = s.add(hash_ids(batch))\n"
            "    ids += len(seen) - int(seen.sum())\n"
            "print(json.dumps({'s': time.perf_counter() - t, 'ids': ids, 'bytes': s.slots.nbytes}))"
        )
        print(
            f"duplicate-id set: {result['ids']:,} distinct ids in {result['s']:.1f} s "
            f"({1e6 * result['s'] / result['ids']:.2f} us/id incl. hashing the strings), "
            f"table {result['bytes'] / 2**20:.0f} MB = {result['bytes'] / result['ids']:.1f} "
            f"bytes/id, peak RSS {result['peak_rss_mb']:.0f} MB"
        )
        if args.broken_row:
            broken = work / "broken.jsonl"
            line = json.dumps({"id": "x", "text": "a short extract"})[:-1]
            with open(broken, "w") as fh:
                for i in range(1, args.broken_row + 100):
                    if i == args.broken_row:
                        fh.write('{"id": "broken", "text": \n')
                    else:
                        fh.write(line.replace('"x"', f'"{i}"') + "}\n")
            out = work / "out" / "seeds.parquet"
            settings = json.dumps(
                {
                    "sources": [
                        {"name": "w", "kind": "web", "format": "jsonl", "path": str(broken)}
                    ],
                    "on_bad_row": "error",
                    "max_seeds": None,
                }
            )
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "cosmoforge", "seeds", "--split", "web_samples_v1"]
                + ["--settings", settings, "--out", str(out), "--report", str(out) + ".json"],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(REPO / "src")},
            )
            left = sorted(p.name for p in out.parent.iterdir()) if out.parent.exists() else []
            print(
                f"source broken at row {args.broken_row:,}: exit {proc.returncode} after "
                f"{time.perf_counter() - started:.0f} s, message: {proc.stderr.strip()[-200:]!r}; "
                f"files left in the output folder: {left}"
            )


if __name__ == "__main__":
    main()

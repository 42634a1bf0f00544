"""What the seed gates and compressed inputs cost: seconds per million seeds.

Writes synthetic web seeds (2% of them two words long, the rest 40 to 900 words) as JSON
lines, plain and gzip/zstandard-compressed, and runs the seeds stage's reader over each, with
and without the length gates. Prints seeds per second and CPU seconds per million seeds (the
least of three runs), side by side, as a ratio to the plain file without gates.

    .venv/bin/python measure/seed_gates.py --seeds 200000
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cosmoforge.stages.seeds import write_split_seeds  # noqa: E402
from cosmoforge.stages.seeds.gates import SeedGates  # noqa: E402

WORDS = ["river", "soil", "cloud", "market", "theory", "garden", "signal", "protein", "harbor"]


def synthetic_lines(count: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        words = 2 if rng.random() < 0.02 else rng.randint(40, 900)
        text = " ".join(rng.choice(WORDS) for _ in range(words))
        out.append(json.dumps({"id": f"u{i}", "text": text}))
    return ("\n".join(out) + "\n").encode()


def run(path: Path, gates: SeedGates | None, scratch: Path) -> tuple[float, float, dict]:
    source = {"name": "web", "kind": "web", "format": "jsonl", "path": str(path)}
    cpu, wall = time.process_time(), time.perf_counter()
    report = write_split_seeds("web_samples_v1", [source], scratch / "s.parquet", gates=gates)
    return time.process_time() - cpu, time.perf_counter() - wall, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=200_000)
    args = parser.parse_args()
    import zstandard

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        data = synthetic_lines(args.seeds)
        files = {"plain": scratch / "web.jsonl", "gzip": scratch / "web.jsonl.gz"}
        files["plain"].write_bytes(data)
        files["gzip"].write_bytes(gzip.compress(data, 6))
        files["zstd"] = scratch / "web.jsonl.zst"
        files["zstd"].write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
        gates = SeedGates(min_chars={"web": 200}, max_chars={"web": 200_000})
        print(f"{args.seeds:,} synthetic web seeds, {len(data) / 1e6:.0f} MB of JSON lines")
        header = f"{'input':<8}{'gates':<7}{'CPU s':>8}{'CPU s per 1M':>14}{'seeds/s':>11}"
        print(header + f"{'kept':>10}")
        base = None
        run(files["plain"], None, scratch)  # warm-up: imports and the page cache
        for name, path in files.items():
            for gate in (None, gates):
                # the least of three: the figure least disturbed by the rest of the machine
                cpu, wall, report = min(run(path, gate, scratch) for _ in range(3))
                per_million = cpu / args.seeds * 1e6
                base = base or per_million
                print(
                    f"{name:<8}{'on' if gate else 'off':<7}{cpu:>8.1f}{per_million:>14.1f}"
                    f"{args.seeds / wall:>11,.0f}{report['seeds']:>10,}  x{per_million / base:.2f}"
                )


if __name__ == "__main__":
    main()

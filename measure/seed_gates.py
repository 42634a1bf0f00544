"""What the seed gates and compressed inputs cost: CPU seconds per million seeds.

Writes synthetic seeds as JSON lines and runs the seeds stage over them, the least of
`--repeats` runs each, printed side by side as a ratio to the first row of each table:

- web seeds (sentences of English words, 40 to 900 words; 2% of them two words long, 1% with
  mojibake and a control character, 3% in German), plain, with the gates added one at a time:
  none, length, + repair (ftfy), + language (py3langid): the default web gates;
- the same seeds gzip- and zstandard-compressed, with the default web gates;
- stanford seeds whose course descriptions are HTML in half the rows, without and with
  html_to_text (resiliparse).

    .venv/bin/python measure/seed_gates.py --seeds 100000
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


def _words(sentence: str) -> list[str]:
    return sentence.split()


ENGLISH = _words(
    "the river carries soil to the sea and a market grows where the water slows; a theory of "
    "signals explains how a protein folds, while the garden by the harbor needs rain in spring "
    "because every cloud that passes brings less than the farmers hoped for this year"
)
GERMAN = _words(
    "der Fluss trägt die Erde bis zum Meer und ein Markt wächst dort wo das Wasser langsamer "
    "fließt während der Garten am Hafen im Frühling mehr Regen braucht als jede Wolke bringt"
)


def _sentences(rng: random.Random, words: list[str], count: int) -> str:
    out, left = [], count
    while left > 0:
        n = min(left, rng.randint(8, 20))
        sentence = " ".join(rng.choice(words) for _ in range(n))
        out.append(sentence[0].upper() + sentence[1:] + ".")
        left -= n
    return " ".join(out)


def synthetic_lines(count: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        draw = rng.random()
        if draw < 0.02:
            text = " ".join(rng.choice(ENGLISH) for _ in range(2))
        else:
            words = GERMAN if draw > 0.97 else ENGLISH
            text = _sentences(rng, words, rng.randint(40, 900))
            if 0.02 <= draw < 0.03:  # UTF-8 read as cp1252, and a control character
                text = "The bakery\u00e2\u20ac\u2122s loaf.\x10 " + text
        out.append(json.dumps({"id": f"u{i}", "text": text}))
    return ("\n".join(out) + "\n").encode()


def html_lines(count: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        body = _sentences(rng, ENGLISH, rng.randint(30, 150))
        if i % 2:
            body = f"<p>{body}</p><ul><li>Week 1 &amp; 2</li><li>Labs</li></ul>"
        row = {"id": f"c{i}", "course_title": "Course", "unit_title": f"Unit {i}"}
        out.append(json.dumps({**row, "course_description": body}))
    return ("\n".join(out) + "\n").encode()


def run(path: Path, gates: SeedGates | None, scratch: Path, kind: str = "web"):
    source = {"name": kind, "kind": kind, "format": "jsonl", "path": str(path)}
    split = "web_samples_v1" if kind == "web" else kind
    cpu, wall = time.process_time(), time.perf_counter()
    report = write_split_seeds(split, [source], scratch / "s.parquet", gates=gates)
    return time.process_time() - cpu, time.perf_counter() - wall, report


def table(title: str, rows: list, seeds: int, repeats: int, scratch: Path) -> None:
    print(f"\n{title}")
    print(f"{'input':<8}{'gates':<26}{'CPU s':>8}{'CPU s per 1M':>14}{'seeds/s':>11}{'kept':>10}")
    base = None
    for name, path, label, gates, kind in rows:
        # the least of the runs: the figure least disturbed by the rest of the machine
        cpu, wall, report = min(run(path, gates, scratch, kind) for _ in range(repeats))
        per_million = cpu / seeds * 1e6
        base = base or per_million
        print(
            f"{name:<8}{label:<26}{cpu:>8.1f}{per_million:>14.1f}{seeds / wall:>11,.0f}"
            f"{report['seeds']:>10,}  x{per_million / base:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
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
        html = scratch / "stanford.jsonl"
        html.write_bytes(html_lines(args.seeds))
        length = {"min_chars": {"web": 200}, "max_chars": {"web": 200_000}}
        repair = SeedGates(**length, repair_text=True)
        default = SeedGates(**length, repair_text=True, languages={"web": ["en"]})
        print(f"{args.seeds:,} synthetic web seeds, {len(data) / 1e6:.0f} MB of JSON lines")
        run(files["plain"], default, scratch)  # warm-up: imports, the language model, caches
        plain = files["plain"]
        table(
            "web seeds, plain JSON lines, gates added one at a time",
            [
                ("plain", plain, "none", None, "web"),
                ("plain", plain, "length", SeedGates(**length), "web"),
                ("plain", plain, "length + repair", repair, "web"),
                ("plain", plain, "length + repair + language", default, "web"),
            ],
            args.seeds,
            args.repeats,
            scratch,
        )
        table(
            "web seeds, compressed, default web gates",
            [(name, path, "default", default, "web") for name, path in files.items()],
            args.seeds,
            args.repeats,
            scratch,
        )
        table(
            "stanford seeds, HTML descriptions in half the rows",
            [
                ("plain", html, "none", None, "stanford"),
                (
                    "plain",
                    html,
                    "repair + html_to_text",
                    SeedGates(repair_text=True, html_to_text=("stanford",)),
                    "stanford",
                ),
            ],
            args.seeds,
            args.repeats,
            scratch,
        )


if __name__ == "__main__":
    main()

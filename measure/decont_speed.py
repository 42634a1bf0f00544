"""Decontamination speed and agreement: cosmoforge's index vs a straightforward implementation
of Cosmopedia's original rule, on the same synthetic data.

The baseline is the rule as decontaminate.py has it, standard library only
(cosmoforge.stages.decont.reference.OriginalRule with stdlib=True): NFD with a per-character
combining filter, a dict of 10-gram tuples keeping the last owner, the first hit per document, then
difflib.SequenceMatcher. Both see the same documents: random prose-like text
with benchmark items planted verbatim and with 5% of their words edited.

    .venv/bin/python measure/decont_speed.py [--docs 10000] [--items 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cosmoforge.stages.decont import BenchmarkIndex, BenchmarkItem  # noqa: E402
from cosmoforge.stages.decont.reference import OriginalRule  # noqa: E402


def make_data(n_docs: int, n_items: int, seed: int = 0):
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(30000)]
    vocab += ["café", "naïve", "über", "résumé"]
    weights = [1 / (i + 1) for i in range(len(vocab))]  # Zipf-like, as in real text

    def words(k):
        return " ".join(rng.choices(vocab, weights=weights, k=k)).capitalize() + "."

    items = [BenchmarkItem("mmlu", f"mmlu:{i}", words(rng.randint(40, 80))) for i in range(n_items)]
    docs = [words(rng.randint(400, 600)) for _ in range(n_docs)]
    planted = {}
    for d in rng.sample(range(n_docs), min(100, n_docs // 10)):
        item = rng.randrange(n_items)
        text = items[item].text.split()
        if len(planted) % 2:  # every other one lightly edited: 5% of the words replaced
            for i in rng.sample(range(len(text)), max(1, len(text) // 20)):
                text[i] = rng.choice(vocab)
        words_doc = docs[d].split()
        cut = rng.randrange(len(words_doc))
        docs[d] = " ".join(words_doc[:cut] + text + words_doc[cut:])
        planted[d] = item
    return docs, items, planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=10000)
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    docs, items, planted = make_data(args.docs, args.items)
    words = sum(len(d.split()) for d in docs) / len(docs)
    print(
        f"{len(docs)} documents (~{words:.0f} words), {len(items)} benchmark items, "
        f"{len(planted)} planted (half verbatim, half 5%-edited)"
    )

    # Both sides build their index once (per job in the workflow) and then scan; the figure
    # that scales with the data is the scan, so scans are compared, index builds shown apart.
    # This machine's speed drifts by tens of percent from minute to minute: both sides run
    # alternately, `--repeats` times, and the median of the per-pair ratios is reported.
    started = time.perf_counter()
    original = OriginalRule(items, 10, 0.5, stdlib=True)
    ref_build_s = time.perf_counter() - started
    started = time.perf_counter()
    index = BenchmarkIndex(items, n=10)
    build_s = time.perf_counter() - started
    # The compiled kernels are loaded (numba's cache) or compiled before timing; the baseline
    # has nothing to compile.
    index.check_batch(docs[: args.batch])
    ratios = []
    for repeat in range(args.repeats):
        started = time.perf_counter()
        reference = {d for d, doc in enumerate(docs) if original.contaminated(doc)}
        ref_s = time.perf_counter() - started
        started = time.perf_counter()
        fast = set()
        for start in range(0, len(docs), args.batch):
            results = index.check_batch(docs[start : start + args.batch])
            fast.update(start + i for i, found in enumerate(results) if found)
        fast_s = time.perf_counter() - started
        ratios.append(ref_s / fast_s)
        print(
            f"pair {repeat + 1}: straightforward original rule scan {ref_s:.2f} s = "
            f"{len(docs) / ref_s:,.0f} docs/s; cosmoforge scan {fast_s:.2f} s = "
            f"{len(docs) / fast_s:,.0f} docs/s; ratio {ref_s / fast_s:.1f}x"
        )
    print(
        f"index builds (once per job): original {ref_build_s:.2f} s, cosmoforge {build_s:.2f} s; "
        f"median speed-up of the scan {statistics.median(ratios):.1f}x over {args.repeats} pairs "
        "(goal >= 20x)"
    )
    print(
        f"removed: original {len(reference)}, cosmoforge {len(fast)}; cosmoforge is a superset: "
        f"{reference <= fast}; planted caught: original {len(reference & set(planted))}/"
        f"{len(planted)}, cosmoforge {len(fast & set(planted))}/{len(planted)}; "
        f"unplanted removed: {len(fast - set(planted))}"
    )


if __name__ == "__main__":
    main()

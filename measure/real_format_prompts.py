"""Two prompts per split built from the real-format seed fixtures (tests/fixtures/real_format)
by the seeds and prompts stages with the default config's gates, as the workflow runs them.

    .venv/bin/python measure/real_format_prompts.py [--per-split 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from tests.stages.test_real_format_seeds import run_fixture_set  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-split", type=int, default=2)
    args = parser.parse_args()
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        _, _, prompts = run_fixture_set(REPO, demo, Path(tmp))
    for split, rows in prompts.items():
        shown, seen = [], set()  # one prompt per seed, from the first seeds
        for row in rows:
            if row["seed_id"] not in seen and len(shown) < args.per_split:
                seen.add(row["seed_id"])
                shown.append(row)
        for row in shown:
            print(f"=== {split} / {row['template_id']} / {row['seed_id']}\n{row['prompt']}\n")


if __name__ == "__main__":
    main()

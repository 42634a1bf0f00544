"""Two prompts per split built from the real-format seed fixtures (tests/fixtures/real_format)
by the seeds and prompts stages with the default config's gates, as the workflow runs them.

    .venv/bin/python measure/real_format_prompts.py [--per-split 2]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from cosmoforge.core.config import validate_config  # noqa: E402
from cosmoforge.core.layout import Layout  # noqa: E402
from cosmoforge.stages.prompts import prompts_stage  # noqa: E402
from cosmoforge.stages.seeds import seeds_stage  # noqa: E402
from tests.stages.test_real_format_seeds import sources  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-split", type=int, default=2)
    args = parser.parse_args()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config = copy.deepcopy(config)
    config["splits"] = {
        split: {**config["splits"][split], "sources": split_sources, "max_seeds": "all"}
        for split, split_sources in sources(REPO).items()
    }
    config["topics"]["enabled"] = False
    config["prompts_dir"] = str(REPO / "prompts")
    layout = Layout(validate_config(config))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for split in layout.splits:
            seeds = base / layout.seeds(split)
            seeds.parent.mkdir(parents=True, exist_ok=True)
            kept_by = {other: base / layout.seeds(other) for other in layout.yields_to(split)}
            settings = layout.seeds_settings(split)
            seeds_stage(split, settings, seeds, base / layout.seed_report(split), kept_by)
            out = base / "prompts" / split
            settings = layout.prompts_settings(split)
            prompts_stage(split, seeds, settings, REPO / "prompts", out, out / "report.json")
            rows = [r for p in sorted(out.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
            # one prompt per seed, from the first seeds
            shown, seen = [], set()
            for row in rows:
                if row["seed_id"] not in seen and len(shown) < args.per_split:
                    seen.add(row["seed_id"])
                    shown.append(row)
            for row in shown:
                print(f"=== {split} / {row['template_id']} / {row['seed_id']}\n{row['prompt']}\n")


if __name__ == "__main__":
    main()

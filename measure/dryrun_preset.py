"""How long `snakemake -n` takes on the Cosmopedia preset (goal <= 30 s), and its job count.

The preset's local seed files are stand-ins here (empty files in a scratch work directory:
the plan then sizes those splits by `expected_seeds`), so the DAG can be built on any machine.

    .venv/bin/python measure/dryrun_preset.py [--profile profiles/slurm]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO / "config" / "presets" / "cosmopedia.yaml"))
    parser.add_argument("--profile", help="e.g. profiles/slurm (adds the executor plugin's cost)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        (work / config.get("prompts_dir", "prompts")).symlink_to(REPO / "prompts")
        for split in config["splits"].values():
            for source in split["sources"]:
                if source["format"] != "hf":
                    path = work / source["path"]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
        cmd = [
            str(Path(sys.executable).parent / "snakemake"),
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(work),
            "--configfile",
            args.config,
            "-n",
            "--quiet",
            "rules",
        ]
        if args.profile:
            cmd[1:1] = ["--profile", str(REPO / args.profile)]
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
            times.append(time.perf_counter() - started)
            if out.returncode != 0:
                raise SystemExit(out.stdout[-2000:] + out.stderr[-2000:])
    total = re.search(r"^total\s+(\d+)$", out.stdout, re.M)[1]
    generate = re.search(r"^generate\s+(\d+)$", out.stdout, re.M)[1]
    with_profile = f" with {args.profile}" if args.profile else ""
    print(
        f"snakemake -n on {Path(args.config).name}{with_profile}: "
        f"{total} jobs ({generate} generate); "
        f"{', '.join(f'{t:.1f}' for t in times)} s (median {sorted(times)[len(times) // 2]:.1f} s, "
        "goal <= 30 s)"
    )


if __name__ == "__main__":
    main()

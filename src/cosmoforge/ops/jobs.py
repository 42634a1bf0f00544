"""What the workflow asks Slurm for, per job: resources and time limits, from the config and (for
generation) the shard's own prompt count and the run's calibration. The rules take these as
they are (workflow/rules/common.smk makes one `JobResources`); unit-tested in
tests/ops/test_jobs.py.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

from cosmoforge.core.config import split_sampling
from cosmoforge.ops.plan import (
    estimate_split,
    generate_runtime_minutes,
    measured_split_rate,
    stop_signal_seconds,
)


class JobResources:
    def __init__(self, config: dict, base_dir: str | Path = "."):
        self.config = config
        self.slurm = config["slurm"]
        self.base_dir = Path(base_dir)

    def serves_itself(self) -> bool:
        """Whether a generating job runs its own engine (vllm, fake), not a server's client."""
        return self.config["engine"]["backend"] != "openai"

    def cpu(self) -> dict:
        # Unset (None) values are left out of the sbatch call: the cluster's defaults apply.
        return {
            "mem_mb": self.slurm["cpu_mem_mb"],
            "runtime": self.slurm["cpu_runtime_minutes"],
            "slurm_partition": self.slurm["cpu_partition"],
            "slurm_account": self.slurm["account"],
        }

    def embed_threads(self) -> int:
        return self.slurm["cpus_per_gpu"]

    def embed(self) -> dict:
        """The MiniLM embedding jobs: a GPU each (slurm.embed_gpus), or CPU jobs with 0."""
        gpus = self.slurm["embed_gpus"]
        return {
            "gpu": gpus,
            "gpu_model": self.slurm["gpu_model"] if gpus else None,
            "mem_mb": self.slurm["embed_mem_mb"],
            "runtime": self.slurm["embed_runtime_minutes"],
            "slurm_partition": self.slurm["gpu_partition" if gpus else "cpu_partition"],
            "slurm_account": self.slurm["account"],
        }

    def generate_threads(self) -> int:
        if not self.serves_itself():
            return 1  # an asyncio client: the server does the work
        return self.slurm["cpus_per_gpu"] * self.config["engine"]["tensor_parallel_size"]

    def engine(self, runtime) -> dict:
        """Resources of a job that generates (`runtime`: minutes, or Snakemake's callable).
        With its own engine: whole GPUs, tensor_parallel_size of them (locally one engine at a
        time: profiles/local caps vllm_engine at 1, since on CPU an engine binds every core). As
        a client of a server (engine.backend openai): a CPU job."""
        account = {"runtime": runtime, "slurm_account": self.slurm["account"]}
        if not self.serves_itself():
            return self.cpu() | account
        return account | {
            "vllm_engine": 1,
            "gpu": self.config["engine"]["tensor_parallel_size"],
            "gpu_model": self.slurm["gpu_model"],
            "cpus_per_gpu": self.slurm["cpus_per_gpu"],
            "mem_mb": self.slurm["generate_mem_mb"],
            "slurm_partition": self.slurm["gpu_partition"],
        }

    def start_only_runtime(self) -> int:
        """A job that starts an engine for a short probe (calibrate, canary)."""
        return self.slurm["engine_start_minutes"] + 60

    def calibrate_gpus(self) -> int:
        """GPUs of the calibrate job: the most any sweep point's engine needs."""
        points = self.config["calibrate"]["sweep"]
        tp = self.config["engine"]["tensor_parallel_size"]
        return max([tp] + [p.get("tensor_parallel_size", tp) for p in points])

    def calibrate_resources(self) -> dict:
        """The calibrate job: one probe, or a sweep's points one after another within its
        GPU-minutes budget (spent on the job's GPUs), each with its start-up."""
        cal = self.config["calibrate"]
        if not cal["sweep"]:
            return self.engine(self.start_only_runtime())
        gpus = self.calibrate_gpus()
        minutes = cal["sweep_budget_gpu_minutes"] / gpus
        runtime = math.ceil(minutes + 2 * self.slurm["engine_start_minutes"] + 30)
        resources = self.engine(runtime)
        if "gpu" in resources:
            resources["gpu"] = gpus
        return resources

    @functools.cache  # noqa: B019 (one object per workflow; the plan reads every seed file)
    def planned_prompts_per_shard(self, split: str) -> int:
        return estimate_split(self.config, split, self.base_dir)["prompts_per_shard"]

    def generate_runtime(self, split: str, shard_report: str | Path) -> int:
        """Time limit of a generation job: its prompt count (from the prompts stage's shard
        report; before it exists, as in a dry run, the plan's estimate) at the calibrated
        throughput (results/<run>/calibration.json), else at the configured one."""
        measured_per_prompt, measured_rate = measured_split_rate(self.config, split, self.base_dir)
        per_prompt = (
            measured_per_prompt
            or self.slurm["expected_completion_tokens"]
            or split_sampling(self.config, split)["max_tokens"]
        )
        report = Path(shard_report)
        if report.is_file():
            prompts = json.loads(report.read_text(encoding="utf-8"))["prompts"]
        else:
            prompts = self.planned_prompts_per_shard(split)
        return generate_runtime_minutes(self.config, prompts, per_prompt, measured_rate)

    def slurm_extra(self, runtime_minutes: int) -> str:
        """SIGUSR1 slurm.stop_signal_seconds before the time limit, for jobs long enough; and
        with slurm.time_min_share, a shorter minimum time for backfill (time_min_minutes)."""
        seconds = stop_signal_seconds(self.config, runtime_minutes)
        flags = [f"--signal=USR1@{seconds}"] if seconds else []
        time_min = self.time_min_minutes(runtime_minutes)
        if time_min is not None:
            flags.append(f"--time-min={time_min}")
        return " ".join(flags)

    def time_min_minutes(self, runtime_minutes: int) -> int | None:
        """The --time-min of a generation job: its share of the limit, but at least the engine's
        start-up plus 10 minutes of generation (a shorter window would be all start-up); None
        when off or when that is not shorter than the limit."""
        share = self.slurm["time_min_share"]
        if share is None:
            return None
        minutes = max(
            math.ceil(share * runtime_minutes), math.ceil(self.slurm["engine_start_minutes"]) + 10
        )
        return minutes if minutes < runtime_minutes else None

    def topic_label_runtime(self) -> int:
        label = self.config["topics"]["label"]
        requests = self.config["topics"]["kmeans"]["k"] * label["max_attempts"]
        return generate_runtime_minutes(self.config, requests, label["sampling"]["max_tokens"])

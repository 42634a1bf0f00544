"""What each job asks Slurm for (cosmoforge.ops.jobs): the rules take these as they are."""

import json
import re

from cosmoforge.ops.jobs import JobResources


def test_cpu_jobs_take_the_cpu_partition_and_leave_unset_values_to_the_cluster(default_config):
    config = default_config
    config["slurm"].update(cpu_mem_mb=3000, cpu_runtime_minutes=45, cpu_partition="short")
    assert JobResources(config).cpu() == {
        "mem_mb": 3000,
        "runtime": 45,
        "slurm_partition": "short",
        "slurm_account": None,
    }


def test_a_job_with_its_own_engine_takes_whole_gpus_and_a_server_client_a_cpu(default_config):
    config = default_config
    config["engine"]["tensor_parallel_size"] = 2
    config["slurm"].update(cpus_per_gpu=8, gpu_partition="gpu", generate_mem_mb=64000)
    jobs = JobResources(config)
    own = jobs.engine(runtime=90)
    assert (own["gpu"], own["vllm_engine"], own["mem_mb"], own["runtime"]) == (2, 1, 64000, 90)
    assert own["slurm_partition"] == "gpu" and jobs.generate_threads() == 16
    config["engine"]["backend"] = "openai"
    client = jobs.engine(runtime=90)
    assert "gpu" not in client and client["slurm_partition"] == config["slurm"]["cpu_partition"]
    assert client["runtime"] == 90 and jobs.generate_threads() == 1


def test_a_generation_time_limit_uses_the_shards_own_prompt_count(default_config, tmp_path):
    config = default_config
    config["slurm"].update(
        engine_start_minutes=2,
        tokens_per_s_per_gpu=10,
        runtime_margin=3,
        expected_completion_tokens=100,
    )
    jobs = JobResources(config, tmp_path)
    report = tmp_path / "00000.report.json"
    report.write_text(json.dumps({"prompts": 60}))
    # 60 prompts x 100 tokens at 10 tokens/s: 10 minutes, x3 margin, plus 2 to start
    assert jobs.generate_runtime("stories", report) == 32
    assert jobs.slurm_extra(32) == "--signal=USR1@300"
    assert jobs.slurm_extra(19) == ""  # under 4 x 300 s: the limit's own SIGTERM is enough


def test_time_min_asks_for_a_share_of_the_limit_but_never_a_window_of_only_start_up(
    default_config, tmp_path
):
    from cosmoforge.ops.jobs import JobResources

    config = default_config
    config["slurm"].update(engine_start_minutes=15, time_min_share=0.25)
    jobs = JobResources(config, tmp_path)
    assert jobs.slurm_extra(240) == "--signal=USR1@300 --time-min=60"  # a quarter of 4 h
    assert jobs.time_min_minutes(60) == 25  # 15 min of start-up + 10 of generation
    assert jobs.time_min_minutes(20) is None  # not shorter than the limit: no --time-min
    config["slurm"]["time_min_share"] = None
    assert JobResources(config, tmp_path).slurm_extra(240) == "--signal=USR1@300"
    # the Slurm plugin refuses slurm_extra flags it manages itself (--time among them)
    from snakemake_executor_plugin_slurm.validation import get_forbidden_slurm_options

    for pattern in get_forbidden_slurm_options():
        assert not re.search(pattern, "--signal=USR1@300 --time-min=60"), pattern


def test_before_the_prompts_exist_the_time_limit_comes_from_the_plan(default_config, repo):
    config = default_config
    config["slurm"].update(
        engine_start_minutes=2,
        tokens_per_s_per_gpu=10,
        runtime_margin=3,
        expected_completion_tokens=100,
    )
    jobs = JobResources(config, repo)
    assert jobs.planned_prompts_per_shard("stories") == 29  # the bundled stories seeds, 1 shard
    # 29 prompts x 100 tokens at 10 tokens/s: 290 s, x3 margin = 14.5 minutes, plus 2 to start
    assert jobs.generate_runtime("stories", repo / "no-such-report.json") == 17


def test_the_calibrate_job_asks_for_the_largest_points_gpus_and_its_budget(
    default_config, tmp_path
):
    from cosmoforge.ops.jobs import JobResources

    config = default_config
    config["engine"]["backend"] = "vllm"
    config["slurm"]["engine_start_minutes"] = 10
    assert JobResources(config, tmp_path).calibrate_resources()["runtime"] == 70  # one probe
    config["calibrate"].update(
        sweep=[{"max_num_seqs": 64}, {"tensor_parallel_size": 4}], sweep_budget_gpu_minutes=120
    )
    resources = JobResources(config, tmp_path).calibrate_resources()
    assert resources["gpu"] == 4
    assert resources["runtime"] == 120 // 4 + 2 * 10 + 30

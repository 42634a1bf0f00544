# One job per split x shard. Inside a job the whole shard goes to vLLM at once; finished rows
# are checkpointed in <output>.parts/ so a rerun of a killed job resumes where it stopped.
rule generate:
    input:
        prompts=f"{RESULTS}/prompts/{{split}}",
        model=model_input,
    output:
        generated=f"{RESULTS}/generated/{{split}}/{{shard}}.parquet",
        stats=f"{RESULTS}/generated/{{split}}/{{shard}}.stats.json",
    params:
        settings=generate_settings,
    log:
        f"{LOGS}/generate/{{split}}/{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/generate/{{split}}/{{shard}}.tsv"
    threads: generate_threads()
    resources:
        # Locally, one engine at a time (profiles/local caps vllm_engine at 1): on CPU it
        # binds every core. On Slurm each job gets whole GPUs: tensor_parallel_size of them.
        vllm_engine=1,
        gpu=config["engine"]["tensor_parallel_size"],
        gpu_model=CLUSTER["gpu_model"],
        cpus_per_gpu=CLUSTER["cpus_per_gpu"],
        mem_mb=CLUSTER["generate_mem_mb"],
        runtime=generate_runtime,
        slurm_partition=CLUSTER["gpu_partition"],
        slurm_account=CLUSTER["account"],
        # SIGUSR1 before the time limit (Slurm's SIGTERM at the limit is handled the same way):
        # the job flushes its finished rows and exits non-zero, and the retry resumes it.
        slurm_extra=generate_slurm_extra,
    conda:
        "../../envs/generate.yaml"
    shell:
        "python -m cosmoforge generate --prompts {input.prompts}/{wildcards.shard}.parquet"
        " --settings {params.settings:q} --out {output.generated} --stats {output.stats}"
        " > {log} 2>&1"


# Not part of the run: `make calibrate` (or this rule as a target) before launching. A short
# probe of the run's own prompts through the generation code, one GPU job; plan and the
# generation time limits then use its measurement.
rule calibrate:
    input:
        prompts=expand(f"{RESULTS}/prompts/{{split}}", split=L.splits),
        model=model_input,
    output:
        f"{RESULTS}/calibration.json",
    params:
        settings=as_json(L.generate_settings(L.splits[0]) | {"sampling": config["sampling"]}),
        prompts_dirs=" ".join(f"{s}={RESULTS}/prompts/{s}" for s in L.splits),
    log:
        f"{LOGS}/calibrate.log",
    benchmark:
        f"{LOGS}/benchmarks/calibrate.tsv"
    threads: generate_threads()
    resources:
        vllm_engine=1,
        gpu=config["engine"]["tensor_parallel_size"],
        gpu_model=CLUSTER["gpu_model"],
        cpus_per_gpu=CLUSTER["cpus_per_gpu"],
        mem_mb=CLUSTER["generate_mem_mb"],
        runtime=CLUSTER["engine_start_minutes"] + 60,
        slurm_partition=CLUSTER["gpu_partition"],
        slurm_account=CLUSTER["account"],
    conda:
        "../../envs/generate.yaml"
    shell:
        "python -m cosmoforge calibrate --prompts-dirs {params.prompts_dirs}"
        " --settings {params.settings:q} --out {output} > {log} 2>&1"


# Not part of the run: `make canary` before the big job. A few prompts per template through
# the configured model, with the quality flags and a verdict per template.
rule canary:
    input:
        prompts=expand(f"{RESULTS}/prompts/{{split}}", split=L.splits),
        model=model_input,
        quality_patterns=config["quality"]["patterns"],
    output:
        directory(f"{RESULTS}/canary"),
    params:
        settings=as_json(L.generate_settings(L.splits[0]) | {"sampling": config["sampling"]}),
        prompts_dirs=" ".join(f"{s}={RESULTS}/prompts/{s}" for s in L.splits),
        quality=as_json(config["quality"]),
        min_token_length=config["release"]["min_token_length"],
        target_words=as_json({s: L.prompts_settings(s)["target_words"] for s in L.splits}),
    log:
        f"{LOGS}/canary.log",
    benchmark:
        f"{LOGS}/benchmarks/canary.tsv"
    threads: generate_threads()
    resources:
        vllm_engine=1,
        gpu=config["engine"]["tensor_parallel_size"],
        gpu_model=CLUSTER["gpu_model"],
        cpus_per_gpu=CLUSTER["cpus_per_gpu"],
        mem_mb=CLUSTER["generate_mem_mb"],
        runtime=CLUSTER["engine_start_minutes"] + 60,
        slurm_partition=CLUSTER["gpu_partition"],
        slurm_account=CLUSTER["account"],
    conda:
        "../../envs/generate.yaml"
    shell:
        "python -m cosmoforge canary --prompts-dirs {params.prompts_dirs}"
        " --settings {params.settings:q} --quality {params.quality:q}"
        " --min-token-length {params.min_token_length} --target-words {params.target_words:q}"
        " --out-dir {output} > {log} 2>&1 && cat {output}/report.md"

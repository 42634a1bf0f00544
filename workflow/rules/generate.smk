# One job per split x shard. Inside a job the whole shard goes to vLLM at once; finished rows
# are checkpointed in <output>.parts/ so a rerun of a killed job resumes where it stopped.
rule generate:
    input:
        prompts=rules.prompts.output.prompts,
        model=model_input,
    output:
        generated=L.generated("{split}", "{shard}"),
        stats=L.generation_stats("{split}", "{shard}"),
    log:
        f"{LOGS}/generate/{{split}}/{{shard}}.log",
    benchmark:
        f"{LOGS}/timings/generate/{{split}}/{{shard}}.tsv"
    conda:
        "../../envs/generate.yaml"
    threads: JOBS.generate_threads()
    resources:
        **JOBS.engine(generate_runtime),
        # SIGUSR1 before the time limit (Slurm's SIGTERM at the limit is handled the same way):
        # the job flushes its finished rows and exits non-zero, and the retry resumes it.
        slurm_extra=generate_slurm_extra,
    params:
        settings=generate_settings,
    shell:
        "python -m cosmoforge generate --prompts {input.prompts}/{wildcards.shard}.parquet"
        " --settings {params.settings:q} --out {output.generated} --stats {output.stats}"
        " > {log} 2>&1"


# Not part of the run: `make calibrate` (or this rule as a target) before launching. A short
# probe of the run's own prompts through the generation code, one GPU job; plan and the
# generation time limits then use its measurement.
rule calibrate:
    input:
        prompts=expand(rules.prompts.output.prompts, split=L.splits),
        model=model_input,
    output:
        L.calibration(),
    log:
        f"{LOGS}/calibrate.log",
    benchmark:
        f"{LOGS}/timings/calibrate.tsv"
    conda:
        "../../envs/generate.yaml"
    threads: JOBS.generate_threads()
    resources:
        **JOBS.calibrate_resources(),
    params:
        settings=as_json(L.generate_settings()),
        prompts_dirs=split_prompt_dirs,
        probe=config["calibrate"]["probe_prompts"],
        sweep=as_json(config["calibrate"]["sweep"]),
        budget=config["calibrate"]["sweep_budget_gpu_minutes"],
    shell:
        "python -m cosmoforge calibrate --prompts-dirs {params.prompts_dirs}"
        " --settings {params.settings:q} --prompts {params.probe} --sweep {params.sweep:q}"
        " --sweep-budget-gpu-minutes {params.budget} --out {output} > {log} 2>&1"


# Not part of the run: `make canary` before the big job. A few prompts per template through
# the configured model, with the quality flags and a verdict per template.
rule canary:
    input:
        prompts=expand(rules.prompts.output.prompts, split=L.splits),
        model=model_input,
        quality_patterns=config["quality"]["patterns"],
    output:
        directory(f"{RESULTS}/canary"),
    log:
        f"{LOGS}/canary.log",
    benchmark:
        f"{LOGS}/timings/canary.tsv"
    conda:
        "../../envs/generate.yaml"
    threads: JOBS.generate_threads()
    resources:
        **JOBS.engine(JOBS.start_only_runtime()),
    params:
        settings=as_json(L.generate_settings()),
        prompts_dirs=split_prompt_dirs,
        quality=as_json(config["quality"]),
        min_token_length=config["release"]["min_token_length"],
        target_words=as_json({s: L.prompts_settings(s).target_words for s in L.splits}),
    shell:
        "python -m cosmoforge canary --prompts-dirs {params.prompts_dirs}"
        " --settings {params.settings:q} --quality {params.quality:q}"
        " --min-token-length {params.min_token_length} --target-words {params.target_words:q}"
        " --out-dir {output} > {log} 2>&1 && cat {output}/report.md"

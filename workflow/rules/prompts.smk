# One job per generation shard: the shard's block of seeds x templates. The shard's prompts
# depend only on its own seeds (and, for web seeds, their topic clusters).
rule prompts:
    input:
        # Web splits with topic clustering: assignments (their clusters) and decisions.
        unpack(split_topic_inputs),
        seeds=f"{RESULTS}/seeds/{{split}}.parquet",
        templates=template_paths,
    output:
        prompts=f"{RESULTS}/prompts/{{split}}/{{shard}}.parquet",
        report=f"{RESULTS}/prompts/{{split}}/{{shard}}.report.json",
    params:
        settings=prompts_settings,
        prompts_dir=config["prompts_dir"],
        topics=topic_args,
    log:
        f"{LOGS}/prompts/{{split}}/{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/prompts/{{split}}/{{shard}}.tsv"
    # On Slurm, several shards' prompt jobs are submitted as one (profile: group-components).
    group:
        "prompts"
    resources:
        **cpu_resources(),
    conda:
        "../../envs/cosmoforge.yaml"
    shell:
        "python -m cosmoforge prompts --split {wildcards.split} --shard {wildcards.shard}"
        " --seeds {input.seeds} --prompts-dir {params.prompts_dir}"
        " --settings {params.settings:q} {params.topics}"
        " --out {output.prompts} --report {output.report} > {log} 2>&1"

# One job per split, streaming its seeds into one prompt file per generation shard
# (prompts/<split>/<shard>.parquet): memory is bounded by a batch of seeds, and a shard's file
# depends only on its own block of seeds (and, for web seeds, their topic clusters).
rule prompts:
    input:
        # Web splits with topic clustering: assignments (their clusters) and decisions.
        unpack(split_topic_inputs),
        seeds=rules.seeds.output.seeds,
        templates=template_paths,
    output:
        prompts=directory(L.prompt_dir("{split}")),
        report=L.prompt_report("{split}"),
    log:
        f"{LOGS}/prompts/{{split}}.log",
    benchmark:
        f"{LOGS}/timings/prompts/{{split}}.tsv"
    conda:
        "../../envs/cosmoforge.yaml"
    resources:
        **JOBS.cpu(),
    params:
        settings=prompts_settings,
        prompts_dir=config["prompts_dir"],
        topics=topic_args,
    shell:
        "python -m cosmoforge prompts --split {wildcards.split} --seeds {input.seeds}"
        " --prompts-dir {params.prompts_dir} --settings {params.settings:q} {params.topics}"
        " --out-dir {output.prompts} --report {output.report} > {log} 2>&1"

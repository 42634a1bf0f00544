rule prompts:
    input:
        # Web splits with topic clustering: assignments (their clusters) and decisions.
        unpack(split_topic_inputs),
        seeds=f"{RESULTS}/seeds/{{split}}.parquet",
        templates=template_paths,
    output:
        prompts=f"{RESULTS}/prompts/{{split}}.parquet",
        report=f"{RESULTS}/prompts/{{split}}.report.json",
    params:
        settings=prompts_settings,
        prompts_dir=config["prompts_dir"],
        topics=topic_args,
    log:
        f"{LOGS}/prompts/{{split}}.log",
    resources:
        **cpu_resources(),
    conda:
        "../../envs/cosmoforge.yaml"
    shell:
        "python -m cosmoforge prompts --split {wildcards.split} --seeds {input.seeds}"
        " --prompts-dir {params.prompts_dir} --settings {params.settings:q} {params.topics}"
        " --out {output.prompts} --report {output.report} > {log} 2>&1"

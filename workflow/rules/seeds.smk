rule seeds:
    input:
        files=seed_files,
        kept_by=seeds_kept_by,
    output:
        seeds=L.seeds("{split}"),
        report=L.seed_report("{split}"),
    log:
        f"{LOGS}/seeds/{{split}}.log",
    benchmark:
        f"{LOGS}/timings/seeds/{{split}}.tsv"
    conda:
        "../../envs/cosmoforge.yaml"
    resources:
        **JOBS.cpu(),
    params:
        settings=seeds_settings,
        kept_by=seeds_kept_by_args,
    shell:
        "python -m cosmoforge seeds --split {wildcards.split} --settings {params.settings:q}"
        " --out {output.seeds} --report {output.report} {params.kept_by} > {log} 2>&1"

rule seeds:
    input:
        seed_files,
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
    shell:
        "python -m cosmoforge seeds --split {wildcards.split} --settings {params.settings:q}"
        " --out {output.seeds} --report {output.report} > {log} 2>&1"

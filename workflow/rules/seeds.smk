rule seeds:
    input:
        seed_files,
    output:
        seeds=f"{RESULTS}/seeds/{{split}}.parquet",
        report=f"{RESULTS}/seeds/{{split}}.report.json",
    params:
        settings=seeds_settings,
    log:
        f"{LOGS}/seeds/{{split}}.log",
    benchmark:
        f"{LOGS}/benchmarks/seeds/{{split}}.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../envs/cosmoforge.yaml"
    shell:
        "python -m cosmoforge seeds --split {wildcards.split} --settings {params.settings:q}"
        " --out {output.seeds} --report {output.report} > {log} 2>&1"

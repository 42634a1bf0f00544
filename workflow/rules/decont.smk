# Benchmark decontamination of what dedup kept, with Cosmopedia's rule, as a datatrove step.


rule benchmark_index:
    input:
        benchmark_files,
    output:
        index=f"{RESULTS}/decont/benchmark_index.npz",
        report=f"{RESULTS}/decont/benchmarks.json",
    params:
        settings=decont_settings,
    log:
        f"{LOGS}/decont/benchmark_index.log",
    benchmark:
        f"{LOGS}/benchmarks/benchmark_index.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../envs/cosmoforge.yaml"
    shell:
        "python -m cosmoforge benchmark-index --settings {params.settings:q}"
        " --out {output.index} --report {output.report} > {log} 2>&1"


rule decontaminate:
    input:
        shard=f"{RESULTS}/deduped/{{split}}/{{shard}}.parquet",
        index=f"{RESULTS}/decont/benchmark_index.npz",
    output:
        clean=f"{RESULTS}/decontaminated/{{split}}/{{shard}}.parquet",
        contaminated=f"{RESULTS}/decont/contaminated/{{split}}/{{shard}}.parquet",
    params:
        threshold=config["decontamination"]["threshold"],
        logging_dir=f"{LOGS}/datatrove/decont",
    log:
        f"{LOGS}/decont/{{split}}/{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/decontaminate/{{split}}/{{shard}}.tsv"
    group:
        SHARD_GROUP
    resources:
        **cpu_resources(),
    conda:
        "../../envs/cosmoforge.yaml"
    shell:
        "python -m cosmoforge decontaminate --shard {input.shard} --index {input.index}"
        " --threshold {params.threshold} --out {output.clean}"
        " --contaminated {output.contaminated} --logging-dir {params.logging_dir} > {log} 2>&1"


rule contamination_report:
    input:
        per_shard(f"{RESULTS}/decont/contaminated/{{split}}/{{shard}}.parquet"),
    output:
        csv=f"{RESULTS}/decont/contamination.csv",
        json=f"{RESULTS}/decont/contamination.json",
    params:
        settings=decont_settings,
    log:
        f"{LOGS}/decont/report.log",
    benchmark:
        f"{LOGS}/benchmarks/contamination_report.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../envs/cosmoforge.yaml"
    shell:
        "python -m cosmoforge contamination-report --contaminated {input}"
        " --settings {params.settings:q} --out-csv {output.csv} --out-json {output.json}"
        " > {log} 2>&1"

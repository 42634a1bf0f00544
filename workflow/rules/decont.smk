# Benchmark decontamination of what dedup kept, with Cosmopedia's rule, as a datatrove step.


rule benchmark_index:
    input:
        benchmark_files,
    output:
        index=f"{RESULTS}/decont/benchmark_index.npz",
        report=f"{RESULTS}/decont/benchmarks.json",
    log:
        f"{LOGS}/decont/benchmark_index.log",
    benchmark:
        f"{LOGS}/timings/benchmark_index.tsv"
    conda:
        "../../envs/cosmoforge.yaml"
    resources:
        **JOBS.cpu(),
    params:
        settings=decont_settings,
    shell:
        "python -m cosmoforge benchmark-index --settings {params.settings:q}"
        " --out {output.index} --report {output.report} > {log} 2>&1"


rule contamination_report:
    input:
        L.every_shard(L.decont_contaminated),
    output:
        csv=f"{RESULTS}/decont/contamination.csv",
        json=f"{RESULTS}/decont/contamination.json",
    log:
        f"{LOGS}/decont/report.log",
    benchmark:
        f"{LOGS}/timings/contamination_report.tsv"
    conda:
        "../../envs/cosmoforge.yaml"
    resources:
        **JOBS.cpu(),
    params:
        settings=decont_settings,
        # the per-shard inputs above, by where they are
        shards=as_json(L.settings()),
    shell:
        "python -m cosmoforge contamination-report --shards {params.shards:q}"
        " --settings {params.settings:q} --out-csv {output.csv} --out-json {output.json}"
        " > {log} 2>&1"

rule collect:
    input:
        clean_shards,
    output:
        collected=f"{RESULTS}/collected/{{split}}.parquet",
        report=f"{RESULTS}/collected/{{split}}.filter.json",
    params:
        min_token_length=config["release"]["min_token_length"],
        drop_truncated="--drop-truncated" if config["release"]["drop_truncated"] else "",
    log:
        f"{LOGS}/collect/{{split}}.log",
    resources:
        **cpu_resources(),
    conda:
        "../../envs/cosmoforge.yaml"
    shell:
        "python -m cosmoforge collect --split {wildcards.split} --shards {input}"
        " --min-token-length {params.min_token_length} {params.drop_truncated}"
        " --out {output.collected} --report {output.report} > {log} 2>&1"


rule release:
    input:
        f"{RESULTS}/collected/{{split}}.parquet",
    output:
        f"{RESULTS}/release/{{split}}/train-00000-of-00001.parquet",
    log:
        f"{LOGS}/release/{{split}}.log",
    resources:
        **cpu_resources(),
    conda:
        "../../envs/cosmoforge.yaml"
    shell:
        "python -m cosmoforge release --collected {input} --out {output} > {log} 2>&1"


rule card:
    input:
        releases=expand(f"{RESULTS}/release/{{split}}/train-00000-of-00001.parquet", split=SPLITS),
        filter_reports=expand(f"{RESULTS}/collected/{{split}}.filter.json", split=SPLITS),
        seed_reports=expand(f"{RESULTS}/seeds/{{split}}.report.json", split=SPLITS),
        generation_stats=generated_stats,
        dedup_report=f"{RESULTS}/dedup/report.json",
        contamination=f"{RESULTS}/decont/contamination.json",
        benchmarks=f"{RESULTS}/decont/benchmarks.json",
        topics=topic_card_inputs,
    output:
        card=f"{RESULTS}/release/README.md",
        stats=f"{RESULTS}/release/stats.json",
        plots=expand(f"{RESULTS}/release/plots/{{plot}}.png", plot=card_plots()),
    params:
        releases=card_release_args,
        settings=card_settings,
        topics=lambda wildcards, input: f"--topics-report {input.topics[0]}" if input.topics else "",
    log:
        f"{LOGS}/card.log",
    resources:
        **cpu_resources(),
    conda:
        "../../envs/cosmoforge.yaml"
    shell:
        "python -m cosmoforge card --release {params.releases} --filter-reports {input.filter_reports}"
        " --seed-reports {input.seed_reports} --generation-stats {input.generation_stats}"
        " --dedup-report {input.dedup_report} --contamination {input.contamination}"
        " --benchmarks {input.benchmarks} {params.topics}"
        " --settings {params.settings:q} --out {output.card} --stats {output.stats} > {log} 2>&1"

# One release file per generation shard, in the hub's layout (train-00007-of-00310.parquet),
# then the card from the shards' statistics. On Slurm, a shard's dedup filter, decontamination
# and release run as one job (group "shard_cpu").
rule release_shard:
    input:
        f"{RESULTS}/decontaminated/{{split}}/{{shard}}.parquet",
    output:
        release=f"{RESULTS}/release/{{split}}/train-{{shard}}-of-{{shards}}.parquet",
        stats=f"{RESULTS}/release_stats/{{split}}/{{shard}}-of-{{shards}}.json",
    params:
        min_token_length=config["release"]["min_token_length"],
        drop_truncated="--drop-truncated" if config["release"]["drop_truncated"] else "",
    log:
        f"{LOGS}/release/{{split}}/{{shard}}-of-{{shards}}.log",
    benchmark:
        f"{LOGS}/benchmarks/release_shard/{{split}}/{{shard}}-of-{{shards}}.tsv"
    group:
        SHARD_GROUP
    resources:
        **cpu_resources(),
    conda:
        "../../envs/cosmoforge.yaml"
    shell:
        "python -m cosmoforge release --split {wildcards.split} --shard {input}"
        " --min-token-length {params.min_token_length} {params.drop_truncated}"
        " --out {output.release} --stats {output.stats} > {log} 2>&1"


rule card:
    input:
        releases=L.release_files(),
        release_stats=L.release_stats_files(),
        seed_reports=expand(f"{RESULTS}/seeds/{{split}}.report.json", split=SPLITS),
        generation_stats=per_shard(f"{RESULTS}/generated/{{split}}/{{shard}}.stats.json"),
        dedup_report=f"{RESULTS}/dedup/report.json",
        contamination=f"{RESULTS}/decont/contamination.json",
        benchmarks=f"{RESULTS}/decont/benchmarks.json",
        topics=topic_card_inputs,
    output:
        card=f"{RESULTS}/release/README.md",
        stats=f"{RESULTS}/release/stats.json",
        plots=expand(f"{RESULTS}/release/plots/{{plot}}.png", plot=card_plots()),
    params:
        settings=as_json(L.card_settings()),
        topics=lambda wildcards, input: f"--topics-report {input.topics[0]}" if input.topics else "",
    log:
        f"{LOGS}/card.log",
    benchmark:
        f"{LOGS}/benchmarks/card.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../envs/cosmoforge.yaml"
    shell:
        "python -m cosmoforge card --release-stats {input.release_stats}"
        " --seed-reports {input.seed_reports} --generation-stats {input.generation_stats}"
        " --dedup-report {input.dedup_report} --contamination {input.contamination}"
        " --benchmarks {input.benchmarks} {params.topics}"
        " --settings {params.settings:q} --out {output.card} --stats {output.stats} > {log} 2>&1"

# One job per generation shard after the dedup barrier (cosmoforge.stages.finish): MinHash filter,
# benchmark decontamination, then the shard's file of the release in the hub's layout
# (train-00007-of-00310.parquet) and its statistics, from which the card is built. One rule per
# split, finish_shard_<split>: the shard count in the release file's name is the split's.
for _split in SPLITS:

    rule:
        name:
            f"finish_shard_{_split}"
        input:
            generated=L.generated(_split, "{shard}"),
            clusters=rules.dedup_cluster.output[0],
            index=rules.benchmark_index.output.index,
            quality_patterns=config["quality"]["patterns"],
        output:
            removed=L.dedup_removed(_split, "{shard}"),
            stayed=L.dedup_stayed(_split, "{shard}"),
            contaminated=L.decont_contaminated(_split, "{shard}"),
            release=L.release_file(_split, "{shard}"),
            stats=L.release_stats(_split, "{shard}"),
            left_out=L.release_left_out(_split, "{shard}"),
        log:
            f"{LOGS}/finish_shard/{_split}/{{shard}}.log",
        benchmark:
            f"{LOGS}/timings/finish_shard/{_split}/{{shard}}.tsv"
        conda:
            "../../envs/cosmoforge.yaml"
        resources:
            **JOBS.cpu(),
        params:
            split=_split,
            rank=lambda wildcards, split=_split: L.dedup_rank(split, wildcards.shard),
            threshold=config["decontamination"]["threshold"],
            min_token_length=config["release"]["min_token_length"],
            drop_truncated=("--drop-truncated" if config["release"]["drop_truncated"] else ""),
            quality=as_json(config["quality"]),
        shell:
            "python -m cosmoforge finish-shard --split {params.split}"
            " --generated {input.generated} --rank {params.rank}"
            " --clusters {input.clusters} --index {input.index} --threshold {params.threshold}"
            " --min-token-length {params.min_token_length} {params.drop_truncated}"
            " --quality {params.quality:q}"
            " --removed {output.removed} --stayed {output.stayed}"
            " --contaminated {output.contaminated} --release {output.release}"
            " --stats {output.stats} --left-out {output.left_out} > {log} 2>&1"


# One row per prompt with its final fate (cosmoforge.reports.ledger); the card counts fates from it.
rule ledger:
    input:
        # Every file the ledger reads (it finds them by the run's paths: the list of 773
        # shards' paths would not fit on one command line).
        generated=L.every_shard(L.generated),
        removed=L.every_shard(L.dedup_removed),
        contaminated=L.every_shard(L.decont_contaminated),
        left_out=L.every_shard(L.release_left_out),
        releases=L.release_files(),
        stayed=L.every_shard(L.dedup_stayed),
    output:
        L.ledger(),
    log:
        f"{LOGS}/ledger.log",
    benchmark:
        f"{LOGS}/timings/ledger.tsv"
    conda:
        "../../envs/cosmoforge.yaml"
    resources:
        **JOBS.cpu(),
    params:
        settings=as_json(L.settings()),
    shell:
        "python -m cosmoforge ledger --settings {params.settings:q}" " --out {output} > {log} 2>&1"


rule card:
    input:
        releases=L.release_files(),
        release_stats=L.release_stats_files(),
        seed_reports=expand(rules.seeds.output.report, split=SPLITS),
        generation_stats=L.every_shard(L.generation_stats),
        dedup_report=rules.dedup_report.output.report,
        contamination=rules.contamination_report.output.json,
        benchmarks=rules.benchmark_index.output.report,
        topics=topic_card_inputs,
        ledger=rules.ledger.output[0],
    output:
        card=f"{RESULTS}/release/README.md",
        stats=f"{RESULTS}/release/stats.json",
        plots=expand(f"{RESULTS}/release/plots/{{plot}}.png", plot=card_plots()),
    log:
        f"{LOGS}/card.log",
    benchmark:
        f"{LOGS}/timings/card.tsv"
    conda:
        "../../envs/cosmoforge.yaml"
    resources:
        **JOBS.cpu(),
    params:
        settings=as_json(L.card_settings()),
        # The per-shard inputs above, by where they are (not one path each on the command line).
        shards=as_json(L.settings()),
        topics=lambda wildcards, input: (
            f"--topics-report {input.topics[0]}" if input.topics else ""
        ),
    shell:
        "python -m cosmoforge card --shards {params.shards:q}"
        " --seed-reports {input.seed_reports}"
        " --dedup-report {input.dedup_report} --contamination {input.contamination}"
        " --benchmarks {input.benchmarks} {params.topics} --ledger {input.ledger}"
        " --settings {params.settings:q} --out {output.card}"
        " --stats {output.stats} > {log} 2>&1"

# MinHash dedup across all splits: datatrove's four stages, one datatrove task per job.
# Ranks are the generation shards in canonical order (cosmoforge.core.layout); counts from the config.


rule dedup_signatures:
    input:
        shard_of_rank,
    output:
        expand(L.dedup_signature("{bucket}", "{{rank}}"), bucket=SIG_BUCKETS),
    log:
        f"{LOGS}/dedup/signatures/{{rank}}.log",
    benchmark:
        f"{LOGS}/timings/dedup_signatures/{{rank}}.tsv"
    conda:
        "../../envs/cosmoforge.yaml"
    resources:
        **JOBS.cpu(),
    params:
        dedup=as_json(DEDUP),
        tasks=len(L.gen_shards),
        out_dir=grandparent_of_output,
        logging_dir=f"{LOGS}/datatrove/signatures",
    shell:
        "python -m cosmoforge dedup signatures --shard {input} --rank {wildcards.rank}"
        " --tasks {params.tasks} --out-dir {params.out_dir} --settings {params.dedup:q}"
        " --logging-dir {params.logging_dir} > {log} 2>&1"


rule dedup_buckets:
    input:
        signatures_of_bucket,
    output:
        f"{RESULTS}/dedup/buckets/{{bucket}}_{{worker}}.dups",
    log:
        f"{LOGS}/dedup/buckets/{{bucket}}_{{worker}}.log",
    benchmark:
        f"{LOGS}/timings/dedup_buckets/{{bucket}}_{{worker}}.tsv"
    conda:
        "../../envs/cosmoforge.yaml"
    resources:
        **JOBS.cpu(),
    params:
        dedup=as_json(DEDUP),
        rank=bucket_rank,
        in_dir=grandparent_of_input,
        out_dir=parent_of_output,
        logging_dir=f"{LOGS}/datatrove/buckets",
    shell:
        "python -m cosmoforge dedup buckets --rank {params.rank} --in-dir {params.in_dir}"
        " --out-dir {params.out_dir} --settings {params.dedup:q}"
        " --logging-dir {params.logging_dir} > {log} 2>&1"


# One job holds every duplicate pair in memory (union-find): the large-memory job on a cluster.
rule dedup_cluster:
    input:
        expand(
            rules.dedup_buckets.output[0],
            bucket=[f"{b:05d}" for b in range(DEDUP["num_buckets"])],
            worker=DEDUP_WORKERS,
        ),
    output:
        directory(f"{RESULTS}/dedup/clusters"),
    log:
        f"{LOGS}/dedup/cluster.log",
    benchmark:
        f"{LOGS}/timings/dedup_cluster.tsv"
    conda:
        "../../envs/cosmoforge.yaml"
    resources:
        **JOBS.cpu(),
    params:
        dedup=as_json(DEDUP),
        in_dir=parent_of_input,
        logging_dir=f"{LOGS}/datatrove/cluster",
    shell:
        "python -m cosmoforge dedup cluster --in-dir {params.in_dir} --out-dir {output}"
        " --settings {params.dedup:q} --logging-dir {params.logging_dir} > {log} 2>&1"


rule dedup_report:
    input:
        removed=L.every_shard(L.dedup_removed),
        stayed=L.every_shard(L.dedup_stayed),
        generated=L.every_shard(L.generated),
    output:
        removed=f"{RESULTS}/dedup/removed.parquet",
        report=f"{RESULTS}/dedup/report.json",
    log:
        f"{LOGS}/dedup/report.log",
    benchmark:
        f"{LOGS}/timings/dedup_report.tsv"
    conda:
        "../../envs/cosmoforge.yaml"
    resources:
        **JOBS.cpu(),
    params:
        dedup=as_json(DEDUP),
        # the per-shard inputs above, by where they are
        shards=as_json(L.settings()),
    shell:
        "python -m cosmoforge dedup-report --shards {params.shards:q}"
        " --settings {params.dedup:q}"
        " --out {output.removed} --report {output.report} > {log} 2>&1"

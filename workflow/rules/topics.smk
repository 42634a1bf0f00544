# Topic clustering of the web seeds: embed (GPU on Slurm) -> k-means fit on a sample (one job)
# -> assign every seed (per shard) -> label each cluster with the generation engine (one GPU job)
# -> decisions file (user-editable) -> cluster table and plots. Web prompts read the
# assignments of their split and the decisions file.


rule topics_embed:
    input:
        rules.seeds.output.seeds,
    output:
        L.topic_file("embeddings", "{split}", "{shard}"),
    log:
        f"{LOGS}/topics/embed/{{split}}/{{shard}}.log",
    benchmark:
        f"{LOGS}/timings/topics_embed/{{split}}/{{shard}}.tsv"
    conda:
        "../../envs/topics.yaml"
    threads: JOBS.embed_threads()
    resources:
        **JOBS.embed(),
    params:
        settings=as_json(TOPICS["embedding"]),
        shards=TOPICS["shards"],
    shell:
        "python -m cosmoforge topics embed --split {wildcards.split} --seeds {input}"
        " --shard {wildcards.shard} --shards {params.shards} --settings {params.settings:q}"
        " --out {output} > {log} 2>&1"


rule topics_fit:
    input:
        topic_files("embeddings"),
    output:
        centroids=f"{RESULTS}/topics/kmeans/centroids.npy",
        report=f"{RESULTS}/topics/kmeans/fit.json",
        map_sample=f"{RESULTS}/topics/kmeans/map_sample.parquet",
    log:
        f"{LOGS}/topics/fit.log",
    benchmark:
        f"{LOGS}/timings/topics_fit.tsv"
    conda:
        "../../envs/topics.yaml"
    resources:
        **JOBS.cpu(),
    params:
        settings=as_json({**TOPICS["kmeans"], "seed": TOPIC_SEED}),
    shell:
        "python -m cosmoforge topics fit --embeddings {input} --settings {params.settings:q}"
        " --out {output.centroids} --fit-report {output.report} --map-sample {output.map_sample}"
        " > {log} 2>&1"


rule topics_assign:
    input:
        embeddings=rules.topics_embed.output[0],
        centroids=rules.topics_fit.output.centroids,
    output:
        L.topic_file("assignments", "{split}", "{shard}"),
    log:
        f"{LOGS}/topics/assign/{{split}}/{{shard}}.log",
    benchmark:
        f"{LOGS}/timings/topics_assign/{{split}}/{{shard}}.tsv"
    conda:
        "../../envs/topics.yaml"
    resources:
        **JOBS.cpu(),
    params:
        settings=as_json({}),
    shell:
        "python -m cosmoforge topics assign --embeddings {input.embeddings}"
        " --centroids {input.centroids} --settings {params.settings:q} --out {output}"
        " > {log} 2>&1"


rule topics_label:
    input:
        assignments=topic_files("assignments"),
        seeds=expand(rules.seeds.output.seeds, split=TOPIC_SPLITS),
        template=TOPICS["label"]["template"],
        model=model_input,
    output:
        f"{RESULTS}/topics/labels.parquet",
    log:
        f"{LOGS}/topics/label.log",
    benchmark:
        f"{LOGS}/timings/topics_label.tsv"
    conda:
        "../../envs/generate.yaml"
    threads: JOBS.generate_threads()
    resources:
        # Same engine and resources as generation.
        **JOBS.engine(JOBS.topic_label_runtime()),
    params:
        settings=as_json(L.topic_label_settings()),
        seeds=split_seed_args,
    shell:
        "python -m cosmoforge topics label --assignments {input.assignments}"
        " --split-seeds {params.seeds} --settings {params.settings:q} --out {output}"
        " > {log} 2>&1"


# Writes the decisions file once per change of the labels or the decision settings; edits made
# to it in place are kept until then (see its header).
rule topics_decide:
    input:
        rules.topics_label.output[0],
    output:
        L.topic_decisions(),
    log:
        f"{LOGS}/topics/decide.log",
    benchmark:
        f"{LOGS}/timings/topics_decide.tsv"
    conda:
        "../../envs/cosmoforge.yaml"
    resources:
        **JOBS.cpu(),
    params:
        settings=as_json(TOPICS["decisions"]),
    shell:
        "python -m cosmoforge topics decide --labels {input} --settings {params.settings:q}"
        " --out {output} > {log} 2>&1"


rule topics_report:
    input:
        decisions=rules.topics_decide.output[0],
        labels=rules.topics_label.output[0],
        assignments=topic_files("assignments"),
        map_sample=rules.topics_fit.output.map_sample,
        centroids=rules.topics_fit.output.centroids,
        fit=rules.topics_fit.output.report,
    output:
        table=f"{RESULTS}/topics/report/clusters.csv",
        report=f"{RESULTS}/topics/report/report.json",
        plots=expand(f"{RESULTS}/topics/report/{{plot}}.png", plot=TOPIC_PLOTS),
    log:
        f"{LOGS}/topics/report.log",
    benchmark:
        f"{LOGS}/timings/topics_report.tsv"
    conda:
        "../../envs/topics.yaml"
    resources:
        **JOBS.cpu(),
    params:
        settings=as_json(
            {
                "min_score": TOPICS["decisions"]["min_score"],
                "embedding_model": TOPICS["embedding"]["name"],
            }
        ),
        out_dir=parent_of_output,
    shell:
        "python -m cosmoforge topics report --decisions {input.decisions} --labels {input.labels}"
        " --assignments {input.assignments} --map-sample {input.map_sample}"
        " --centroids {input.centroids} --fit-report {input.fit} --settings {params.settings:q}"
        " --out-dir {params.out_dir} > {log} 2>&1"

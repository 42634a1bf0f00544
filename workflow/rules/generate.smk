# One job per split x shard. Inside a job the whole shard goes to vLLM at once; finished rows
# are checkpointed in <output>.parts/ so a rerun of a killed job resumes where it stopped.
rule generate:
    input:
        prompts=f"{RESULTS}/prompts/{{split}}.parquet",
        model=model_input,
    output:
        generated=f"{RESULTS}/generated/{{split}}/{{shard}}.parquet",
        stats=f"{RESULTS}/generated/{{split}}/{{shard}}.stats.json",
    params:
        settings=generate_settings,
    log:
        f"{LOGS}/generate/{{split}}/{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/generate/{{split}}/{{shard}}.tsv"
    threads: workflow.cores
    resources:
        # One engine at a time per machine: on CPU it binds every core, on a GPU node the
        # Slurm profile asks for whole GPUs instead.
        vllm_engine=1,
    conda:
        "../../envs/generate.yaml"
    shell:
        "cosmoforge generate --prompts {input.prompts} --shard {wildcards.shard}"
        " --settings {params.settings:q} --out {output.generated} --stats {output.stats}"
        " > {log} 2>&1"

rule convert_model:
    output:
        directory(config["model"]["path"]),
    log:
        f"{LOGS}/convert_model.log",
    benchmark:
        f"{LOGS}/timings/convert_model.tsv"
    conda:
        "../../envs/convert.yaml"
    resources:
        **JOBS.cpu(),
    params:
        package=(config["model"]["gguf"] or {}).get("package", ""),
        file=(config["model"]["gguf"] or {}).get("file", ""),
    shell:
        "python -m cosmoforge convert-model --package {params.package} --file {params.file}"
        " --out {output} > {log} 2>&1"

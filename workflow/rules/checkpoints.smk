# One checkpoint per model: downloaded and converted, or synthesized (llama/checkpoint.py).

# The download needs the network and no GPU: on a cluster it runs in the main Snakemake
# process (the login node); locally this changes nothing.
localrules:
    download,


rule download:
    output:
        directory("resources/hf/{model}"),
    params:
        repo=model_name,
    conda:
        "../envs/llama.yaml"
    log:
        "logs/download/{model}.log",
    shell:
        "python -m llama.checkpoint download --repo {params.repo:q} --out {output:q} > {log:q} 2>&1"


rule convert:
    input:
        "resources/hf/{model}",
    output:
        multiext("resources/checkpoints/hf/{model}/", *CHECKPOINT_FILES),
    params:
        repo=model_name,
        out=lambda wildcards: checkpoint_dir("hf", wildcards.model),
    conda:
        "../envs/llama.yaml"
    log:
        "logs/convert/{model}.log",
    resources:
        # HF weights (often fp32 .bin or bf16 safetensors) and our layout are in memory together.
        mem_mb=lambda wildcards: host_mem_mb(model_name(wildcards), factor=3.0),
        runtime=60,
    shell:
        "python -m llama.checkpoint convert --hf_dir {input:q} --out {params.out:q} --model {params.repo:q} > {log:q} 2>&1"


rule synthesize:
    output:
        multiext("resources/checkpoints/synthetic/{model}/", *CHECKPOINT_FILES),
    params:
        name=model_name,
        out=lambda wildcards: checkpoint_dir("synthetic", wildcards.model),
        seed=config["seed"],
    conda:
        "../envs/llama.yaml"
    log:
        "logs/synthesize/{model}.log",
    resources:
        mem_mb=lambda wildcards: host_mem_mb(model_name(wildcards), factor=2.0),
        runtime=30,
    shell:
        "python -m llama.checkpoint synthesize --model {params.name:q} --out {params.out:q} --seed {params.seed} > {log:q} 2>&1"

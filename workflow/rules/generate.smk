# One generate job per (model, technique, cache size, prefill size, batch size): one result JSON,
# written atomically by llama.generate (status ok, oom or unsupported; all exit 0).


rule generate:
    input:
        checkpoint_files,
    output:
        GENERATE_JSON,
    params:
        gpu_launch=GPU_LAUNCH,  # pins one GPU per job on multi-GPU hosts (llama/gpus.py)
        checkpoint=lambda wildcards: checkpoint_dir(wildcards.source, wildcards.model),
        prefill=lambda wildcards: "" if wildcards.prefill == "default" else f"--prefill_size {wildcards.prefill}",
        compile=f"--compile {COMPILE_MODE}" + (" --compile_prefill" if GEN["compile_prefill"] else ""),
        max_new_tokens=GEN["max_new_tokens"],
        num_samples=GEN["num_samples"],
        device=config["device"],
        precision=config["precision"],
    conda:
        "../envs/llama.yaml"
    log:
        "logs/generate/{source}/{model}/{technique}/cache{cache}-prefill{prefill}-batch{batch}.log",
    benchmark:
        "logs/benchmarks/generate/{source}/{model}/{technique}/cache{cache}-prefill{prefill}-batch{batch}.tsv"
    resources:
        gpu=1,
        mem_mb=generate_mem_mb,
        runtime=generate_runtime_min,
    shell:
        "{params.gpu_launch} python -m llama.generate --checkpoint {params.checkpoint:q} --technique {wildcards.technique:q}"
        " --out {output:q} --cache_size {wildcards.cache} --batch_size {wildcards.batch} {params.prefill}"
        " --max_new_tokens {params.max_new_tokens} --num_samples {params.num_samples} {params.compile}"
        " --device {params.device} --precision {params.precision} > {log:q} 2>&1"

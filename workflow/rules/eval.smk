# One eval job per (model, technique, task) through lm-eval (llama/eval.py); synthetic models
# run only the offline local perplexity task (see eval_tasks in common.smk).


rule eval:
    input:
        checkpoint_files,
    output:
        EVAL_JSON,
    params:
        gpu_launch=GPU_LAUNCH,  # pins one GPU per job on multi-GPU hosts (llama/gpus.py)
        checkpoint=lambda wildcards: checkpoint_dir(wildcards.source, wildcards.model),
        limit="" if EVAL["limit"] is None else f"--limit {EVAL['limit']}",
        num_fewshot="" if EVAL["num_fewshot"] is None else f"--num_fewshot {EVAL['num_fewshot']}",
        device=config["device"],
        precision=config["precision"],
    conda:
        "../envs/llama.yaml"
    log:
        "logs/eval/{source}/{model}/{technique}/{task}.log",
    benchmark:
        "logs/benchmarks/eval/{source}/{model}/{technique}/{task}.tsv"
    resources:
        gpu=1,
        mem_mb=eval_mem_mb,
        runtime=120,
    shell:
        "{params.gpu_launch} python -m llama.eval --checkpoint {params.checkpoint:q} --technique {wildcards.technique:q}"
        " --task {wildcards.task:q} --out {output:q} {params.limit} {params.num_fewshot}"
        " --device {params.device} --precision {params.precision} > {log:q} 2>&1"

# Aggregation: every result JSON read back with llama.results.load_results into one tidy
# table, then Markdown tables (pandas + tabulate) and plots (matplotlib). One script, one
# function per output, so each table builds from just the results it needs.


rule aggregate:
    input:
        generate=generate_results(),
        eval=eval_results(),
    output:
        report("results/benchmarks.csv", caption="../report/benchmarks.rst", category="Tables"),
    conda:
        "../envs/llama.yaml"
    log:
        "logs/report/aggregate.log",
    script:
        "../scripts/tables.py"


rule readme_table:
    input:
        generate=generate_results(),
        eval=eval_results(),
    output:
        report("results/readme_table.md", caption="../report/readme_table.rst", category="Tables"),
    params:
        models=config["models"],
        techniques=config["techniques"],
        cv_threshold=config["report"]["cv_threshold"],
        accuracy_metrics=config["report"]["accuracy_metrics"],
    conda:
        "../envs/llama.yaml"
    log:
        "logs/report/readme_table.log",
    script:
        "../scripts/tables.py"


rule kv_cache_table:
    input:
        generate=generate_results(),
    output:
        report("results/kv_cache_table.md", caption="../report/kv_cache_table.rst", category="Tables"),
    params:
        models=config["models"],
        techniques=config["techniques"],
    conda:
        "../envs/llama.yaml"
    log:
        "logs/report/kv_cache_table.log",
    script:
        "../scripts/tables.py"


rule eval_table:
    input:
        eval=eval_results(),
    output:
        report("results/eval_table.md", caption="../report/eval_table.rst", category="Tables"),
    params:
        models=config["models"],
        techniques=config["techniques"],
    conda:
        "../envs/llama.yaml"
    log:
        "logs/report/eval_table.log",
    script:
        "../scripts/tables.py"


rule plots:
    input:
        generate=generate_results(),
    output:
        memory=report("results/peak_memory_vs_context.png", caption="../report/peak_memory.rst", category="Plots"),
        speed=report("results/tok_s_per_technique.png", caption="../report/tok_s.rst", category="Plots"),
    params:
        models=config["models"],
        techniques=config["techniques"],
    conda:
        "../envs/llama.yaml"
    log:
        "logs/report/plots.log",
    script:
        "../scripts/tables.py"

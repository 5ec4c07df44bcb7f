"""Result JSONs -> tidy CSV, Markdown tables and plots. Run by the report rules (report.smk).

Every function takes DataFrames from llama.results.load_results (the one results schema) and
returns text or writes a figure, so tests can call them on hand-made results.
"""

import sys

import matplotlib

matplotlib.use("Agg")  # no display on nodes and in CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from tabulate import tabulate  # noqa: E402

from llama.results import load_results  # noqa: E402

GB = 1e9
CV_MARK = "†"
SYNTHETIC_MARK = "*"


def load(paths) -> pd.DataFrame:
    """load_results, with lm-eval's 'metric,filter' names shortened to 'metric' for the 'none' filter."""
    df = load_results(paths)
    return df.rename(columns=lambda c: c.removesuffix(",none"))


def ordered(df: pd.DataFrame, models, techniques) -> pd.DataFrame:
    """Rows in config order (models, then techniques), then by the numeric settings."""
    if df.empty:
        return df
    df = df.assign(_m=df["model"].map({m: i for i, m in enumerate(models)}),
                   _t=df["technique"].map({t: i for i, t in enumerate(techniques)}))
    keys = ["_m", "synthetic", "_t"] + [c for c in ("task", "batch_size", "cache_size", "prompt_tokens") if c in df]
    return df.sort_values(keys, na_position="last").drop(columns=["_m", "_t"])


def model_label(row) -> str:
    return f"{row['model']} (synthetic)" if row["synthetic"] else row["model"]


def number(value, fmt: str) -> str:
    return "" if value is None or pd.isna(value) else format(value, fmt)


def varying(df: pd.DataFrame, columns) -> list[str]:
    """The run settings that differ between rows (the rest go in the caption line)."""
    return [c for c in columns if c in df and df[c].nunique(dropna=False) > 1]


def describe_setup(df: pd.DataFrame) -> str:
    parts = []
    for column, label in (("device_name", "device"), ("precision", "precision"), ("batch_size", "batch"),
                          ("cache_size", "cache"), ("prompt_tokens", "prompt tokens"),
                          ("max_new_tokens", "new tokens"), ("num_samples", "samples"), ("compile", "compile")):
        if column in df and df[column].nunique(dropna=True) == 1:
            parts.append(f"{label} {df[column].dropna().iloc[0]}")
        elif column in df and df[column].nunique(dropna=True) > 1 and column in ("device_name", "precision"):
            parts.append(f"{label} " + " / ".join(map(str, df[column].dropna().unique())))
    return "; ".join(parts)


SETTING_LABELS = {"batch_size": "batch", "cache_size": "cache size", "prompt_tokens": "prompt tokens"}


def readme_table(gen: pd.DataFrame, ev: pd.DataFrame, models, techniques, cv_threshold: float,
                 accuracy_metrics: dict) -> str:
    """One row per generate result: speed, memory, size, and the accuracy of (model, technique)."""
    if gen.empty:
        return "No generate results.\n"
    gen = ordered(gen, models, techniques)
    settings = varying(gen, SETTING_LABELS)
    accuracy = {}  # (model, synthetic, technique) -> {column: cell}
    accuracy_columns = []
    if not ev.empty:
        for _, r in ordered(ev, models, techniques).iterrows():
            metric = accuracy_metrics.get(r["task"])
            if metric is None:
                continue
            column = f"{r['task']} {metric}"
            if column not in accuracy_columns:
                accuracy_columns.append(column)
            value = r.get(f"metric/{metric}")
            cell = r["status"] if r["status"] != "ok" else number(value, ".4g")
            if r["status"] == "ok" and r["synthetic"] and cell:
                cell += SYNTHETIC_MARK
            accuracy.setdefault((r["model"], bool(r["synthetic"]), r["technique"]), {})[column] = cell

    rows, noisy = [], False
    for _, r in gen.iterrows():
        row = {"model": model_label(r), "technique": r["technique"]}
        row.update({SETTING_LABELS[c]: r[c] for c in settings})
        if r["status"] == "ok":
            cells = {}
            for column, rate, cv in (("tok/s", "tok_s_median", "tok_s_cv"),
                                     ("decode tok/s", "decode_tok_s_median", "decode_tok_s_cv")):
                cells[column] = number(r[rate], ".1f")
                if pd.notna(r[cv]) and r[cv] > cv_threshold:
                    cells[column] += f" {CV_MARK}"
                    noisy = True
            cells["TTFT (s)"] = number(r["ttft_s_median"], ".3g")
            cells["bandwidth (GB/s)"] = number(r["bandwidth_gb_s"], ".3g")
            cells["peak memory (GB)"] = number(r["peak_alloc_bytes"] / GB, ".3g")
            cells["model size (GB)"] = number(r["model_size_bytes"] / GB, ".3g")
        else:  # oom / unsupported: say so where the numbers would be
            cells = dict.fromkeys(["tok/s", "decode tok/s", "TTFT (s)", "bandwidth (GB/s)",
                                   "peak memory (GB)", "model size (GB)"], r["status"])
        row.update(cells)
        acc = accuracy.get((r["model"], bool(r["synthetic"]), r["technique"]), {})
        row.update({c: acc.get(c, "") for c in accuracy_columns})
        rows.append(row)

    table = tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True)
    lines = [f"Setup: {describe_setup(gen)}."]
    if noisy:
        lines.append(f"{CV_MARK} coefficient of variation over the samples above {cv_threshold:.0%}: noisy, rerun before quoting.")
    if gen["synthetic"].any():
        lines.append("(synthetic): seeded random weights of the model's shape; speed and memory are those of real "
                     f"weights, but accuracy{SYNTHETIC_MARK} is meaningless (it only checks the pipeline).")
    not_ok = gen[gen["status"] != "ok"]
    for _, r in not_ok.drop_duplicates(["technique", "status", "reason"]).iterrows():
        lines.append(f"{r['technique']}: {r['status']}: {r['reason']}")
    return table + "\n\n" + "\n\n".join(lines) + "\n"


# kv_cache_table's sections: (title, column suffix, result field, scale, format)
KV_SECTIONS = (("peak memory allocated", "peak (GB)", "peak_alloc_bytes", 1 / GB, ".3g"),
               ("peak memory reserved", "reserved (GB)", "peak_reserved_bytes", 1 / GB, ".3g"),
               ("decode tokens/s (median)", "decode tok/s", "decode_tok_s_median", 1, ".4g"))


def kv_cache_table(gen: pd.DataFrame, models, techniques) -> str:
    """Seed layout: rows context length (cache size), one column per KV variant (technique); one
    table each for peak allocated, peak reserved and decode tok/s."""
    if gen.empty:
        return "No generate results.\n"
    gen = ordered(gen, models, techniques)
    sections = []
    for (model, synthetic, batch, prompt), group in gen.groupby(
            ["model", "synthetic", "batch_size", "prompt_tokens"], sort=False, dropna=False):
        label = f"{model} (synthetic)" if synthetic else model
        for title, suffix, field, scale, fmt in KV_SECTIONS:
            if field not in group or group[field].isna().all():
                continue
            cells = group.assign(cell=[number(r[field] * scale, fmt) if r["status"] == "ok" else r["status"]
                                       for _, r in group.iterrows()])
            table = cells.pivot_table(index="cache_size", columns="technique", values="cell", aggfunc="first", sort=False)
            table = table.reindex(columns=[t for t in techniques if t in table.columns]).sort_index()
            table.columns = [f"{t} {suffix}" for t in table.columns]
            table.index.name = "context length (tokens)"
            sections.append(f"{label}, batch {batch}, prompt {prompt} tokens: {title}\n\n"
                            + tabulate(table.fillna(""), headers="keys", tablefmt="github", disable_numparse=True))
    return "\n\n".join(sections) + f"\n\nSetup: {describe_setup(gen)}.\n"


def eval_table(ev: pd.DataFrame, models, techniques) -> str:
    """One table per task: every metric (± its stderr) per (model, technique)."""
    if ev.empty:
        return "No eval results.\n"
    ev = ordered(ev, models, techniques)
    sections = []
    for task, group in ev.groupby("task", sort=False):
        metrics = [c.removeprefix("metric/") for c in group.columns
                   if c.startswith("metric/") and group[c].notna().any()]
        rows = []
        for _, r in group.iterrows():
            row = {"model": model_label(r), "technique": r["technique"], "limit": number(r["limit"], "g") or "all",
                   "fewshot": number(r["num_fewshot"], "g")}
            for m in metrics:
                if r["status"] != "ok":
                    row[m] = r["status"]
                    continue
                value, err = r.get(f"metric/{m}"), r.get(f"stderr/{m}")
                row[m] = number(value, ".4g") + (f" ± {number(err, '.2g')}" if number(err, "g") else "")
            rows.append(row)
        sections.append(f"### {task}\n\n" + tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True))
    notes = []
    if ev["synthetic"].any():
        notes.append("(synthetic): seeded random weights; their metrics are meaningless and only check the pipeline.")
    for _, r in ev[ev["status"] != "ok"].iterrows():
        notes.append(f"{model_label(r)} {r['technique']} {r['task']}: {r['status']}: {r['reason']}")
    return "\n\n".join(sections + notes) + "\n"


def plot_peak_memory(gen: pd.DataFrame, models, techniques, path) -> None:
    """Peak allocated memory against context length: one panel per model, one line per technique."""
    ok = ordered(gen[gen["status"] == "ok"], models, techniques) if not gen.empty else gen
    panels = list(ok.groupby(["model", "synthetic"], sort=False)) if not ok.empty else []
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6 * max(1, len(panels)), 4.5), squeeze=False)
    for ax, ((model, synthetic), group) in zip(axes[0], panels):
        for (technique, batch), line in group.groupby(["technique", "batch_size"], sort=False):
            line = line.sort_values("cache_size")
            label = technique + (f" batch {batch}" if group["batch_size"].nunique() > 1 else "")
            ax.plot(line["cache_size"], line["peak_alloc_bytes"] / GB, marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{model}{' (synthetic)' if synthetic else ''}")
        ax.legend(fontsize="small")
    if not panels:
        axes[0][0].text(0.5, 0.5, "no ok results", ha="center", transform=axes[0][0].transAxes)
    for ax in axes[0]:
        ax.set_xlabel("context length (KV cache slots)")
        ax.set_ylabel("peak memory allocated (GB)")
    fig.suptitle("Peak memory vs context")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tok_s(gen: pd.DataFrame, models, techniques, path) -> None:
    """Median tok/s per technique, one bar group per model, at each model's first setting."""
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(techniques) + 2), 4.5))
    ok = gen[gen["status"] == "ok"] if not gen.empty else gen
    if not ok.empty:
        ok = ordered(ok, models, techniques)
        first = ok.groupby(["model", "synthetic", "technique"], sort=False).head(1)  # smallest batch/cache
        table = first.assign(model=[model_label(r) for _, r in first.iterrows()]).pivot_table(
            index="technique", columns="model", values="tok_s_median", sort=False)
        table.reindex([t for t in techniques if t in table.index]).plot.bar(ax=ax, rot=30)
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no ok results", ha="center", transform=ax.transAxes)
    ax.set_ylabel("tokens/s (median)")
    ax.set_title("Throughput per technique")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(smk) -> None:
    sys.stderr = open(smk.log[0], "w")
    params = smk.params
    gen = load(smk.input.get("generate", []))
    ev = load(smk.input.get("eval", []))
    if smk.rule == "aggregate":
        load(list(smk.input.generate) + list(smk.input.eval)).to_csv(smk.output[0], index=False)
    elif smk.rule == "readme_table":
        text = readme_table(gen, ev, params.models, params.techniques, params.cv_threshold, params.accuracy_metrics)
        open(smk.output[0], "w").write(text)
    elif smk.rule == "kv_cache_table":
        open(smk.output[0], "w").write(kv_cache_table(gen, params.models, params.techniques))
    elif smk.rule == "eval_table":
        open(smk.output[0], "w").write(eval_table(ev, params.models, params.techniques))
    elif smk.rule == "plots":
        plot_peak_memory(gen, params.models, params.techniques, smk.output.memory)
        plot_tok_s(gen, params.models, params.techniques, smk.output.speed)
    else:
        raise ValueError(f"tables.py has no output for rule {smk.rule!r}")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (defined by Snakemake's script directive)

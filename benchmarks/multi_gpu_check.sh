#!/usr/bin/env bash
# Issue 8 check on a host with 2 GPUs: the same GPU sweep (config/multi_gpu.yaml) run with K=2
# GPU slots, then again with K=1; prints the GPU each job ran on (from its result JSON) and
# both runs' decode tok/s side by side.
#   bash benchmarks/multi_gpu_check.sh [OUTDIR]
set -eu
out=${1:-/tmp/multi-gpu}; mkdir -p "$out"
export NCCL_NVLS_ENABLE=0
sm() { python3 -m snakemake --configfile=config/multi_gpu.yaml --scheduler greedy "$@"; }
sm --cores 2 --resources gpu=1 --until synthesize > "$out/prepare.log" 2>&1  # the checkpoint, outside the timing
for k in 2 1; do
  rm -rf results/generate results/benchmarks.csv
  start=$(date +%s)
  sm --cores 4 --resources gpu=$k -- results/benchmarks.csv > "$out/k$k.log" 2>&1 || { tail -n 40 "$out/k$k.log"; exit 1; }
  echo "K=$k: workflow wall $(( $(date +%s) - start )) s"
  rm -rf "$out/k$k" && cp -r results/generate "$out/k$k"
done
python3 - "$out" <<'PY'
import glob, json, sys
import pandas as pd
out = sys.argv[1]
rows = []
for k in (2, 1):
    for p in sorted(glob.glob(f"{out}/k{k}/**/*.json", recursive=True)):
        r = json.load(open(p))
        rows.append(dict(K=k, technique=r["technique"], status=r["status"], gpu=r["env"].get("cuda_visible_devices"),
                         pci=r["env"].get("pci_bus_id"), decode_tok_s=r["decode_tok_s_median"],
                         cv=r["decode_tok_s_cv"], peak_alloc_GB=(r["peak_alloc_bytes"] or 0) / 1e9,
                         ttft_ms=1e3 * (r["ttft_s_median"] or float("nan")), finished=r["finished_at"]))
df = pd.DataFrame(rows)
print(df.to_markdown(index=False, floatfmt=".4g"))
w = df.pivot(index="technique", columns="K", values="decode_tok_s")
w["K2/K1"] = w[2] / w[1]
print()
print(w.to_markdown(floatfmt=".4g"))
PY

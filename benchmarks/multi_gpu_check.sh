#!/usr/bin/env bash
# Issue 8 check on a host with 2 GPUs: the same GPU sweep (config/multi_gpu.yaml) run with K=1 GPU
# slot, then K=2, then K=1 again. The two K=1 runs give the run-to-run noise; K=2 agrees with K=1
# when its difference is of that size. Prints the GPU and CPU share each job got (from its result
# JSON) and every run's decode tok/s side by side.
#   bash benchmarks/multi_gpu_check.sh [OUTDIR]      (RUNS="k1 k2" for a subset; job logs go to OUTDIR/RUN-logs)
set -eu
out=${1:-/tmp/multi-gpu}; mkdir -p "$out"
export NCCL_NVLS_ENABLE=0
sm() { python3 -m snakemake --configfile=config/multi_gpu.yaml --scheduler greedy "$@"; }
sm --cores 2 --resources gpu=1 --until synthesize > "$out/prepare.log" 2>&1  # the checkpoint, outside the timing
table() {
python3 - "$out" <<'PY'
import glob, json, sys
import pandas as pd
out = sys.argv[1]
rows = []
for run in ("k1", "k2", "k1b"):
    for p in sorted(glob.glob(f"{out}/{run}/**/*.json", recursive=True)):
        r = json.load(open(p))
        rows.append(dict(run=run, technique=r["technique"], status=r["status"], gpu=r["env"].get("cuda_visible_devices"),
                         pci=r["env"].get("pci_bus_id"), cpus=r["env"].get("cpu_affinity"),
                         decode_tok_s=r.get("decode_tok_s_median"), cv=r.get("decode_tok_s_cv"),
                         peak_alloc_GB=(r.get("peak_alloc_bytes") or 0) / 1e9, warmup_s=r.get("warmup_s"),
                         finished=r.get("finished_at")))
df = pd.DataFrame(rows)
print(df.to_markdown(index=False, floatfmt=".4g"))
w = df.pivot(index="technique", columns="run", values="decode_tok_s")
if "k2" in w:
    w["K2/K1"] = w["k2"] / w["k1"]
if "k1b" in w:
    w["K1 again/K1 (noise)"] = w["k1b"] / w["k1"]
print()
print(w.to_markdown(floatfmt=".4g"))
m = df.pivot(index="technique", columns="run", values="peak_alloc_GB")
print()
print("peak allocated GB per job:")
print(m.to_markdown(floatfmt=".4g"))
PY
}
for run in ${RUNS:-k1 k2 k1b}; do
  k=${run:1:1}
  rm -rf results/generate results/benchmarks.csv logs/generate
  start=$(date +%s)
  sm --cores 4 --resources gpu=$k -- results/benchmarks.csv > "$out/$run.log" 2>&1 || { tail -n 40 "$out/$run.log"; exit 1; }
  echo "$run (K=$k): workflow wall $(( $(date +%s) - start )) s"
  rm -rf "$out/$run" "$out/$run-logs" && cp -r results/generate "$out/$run" && cp -r logs/generate "$out/$run-logs"
  table > "$out/table.md"  # after every run, so a run cut short still leaves the runs before it
done
cat "$out/table.md"

# Counts the int4 v3 loop (gemv_sass.py) once a session6 patch is applied to llama/kernels/gemv.py:
#   git apply --include=llama/kernels/gemv.py docs/perf/h200/session6/int4_v3_planes.patch   (then the zero-stride one on top)
#   python docs/perf/h200/session6/count_v3.py; PYTHONPATH=<triton 3.6 install> python docs/perf/h200/session6/count_v3.py
import sys
from pathlib import Path
ROOT = Path(__file__).resolve().parents[4]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
import gemv_sass as gs
from llama.kernels import gemv
import triton
sig = {"planes_ptr": "*fp32", **{k: v for k, v in gs.INT4_V2.items() if k != "x_ptr"}}
for cfg in [(32, 512, 2, 1), (16, 512, 2, 0)]:
    bn, bk, w, pf = cfg
    k = gs.compile_sm90(gemv._int4_gemv_v3_kernel, sig, dict(GROUP=128, BLOCK_N=bn, BLOCK_K=bk, PREFETCH=pf), w)
    print(triton.__version__, gs.loop_report(f"v3 {cfg}", k, bn * bk / 2 / (32 * w)).splitlines()[0])

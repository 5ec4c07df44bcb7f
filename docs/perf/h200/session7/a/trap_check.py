"""Does a changed GEMV_CONFIGS entry get its own compiled graph with inductor's on-disk caches ON?
Sets the float8 entry from argv directly (not apply_configs, which turns the caches off), compiles a
float8 linear, and prints the GEMV kernel the compiled graph launches."""
import sys

import torch

from llama.kernels import gemv

gemv.GEMV_CONFIGS["float8_e4m3fn"] = tuple(int(v) for v in sys.argv[1].split(","))
torch.manual_seed(0)
lin = torch.nn.Sequential(torch.nn.Linear(1024, 2048, bias=False)).cuda().to(torch.bfloat16)
gemv.quantize_linears(lin, "float8")
f = torch.compile(lin, fullgraph=True)
x = torch.randn(1, 1024, device="cuda", dtype=torch.bfloat16)
ref = lin(x)
f(x)
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as p:
    y = f(x)
    torch.cuda.synchronize()
print(f"entry {sys.argv[1]}: fx_graph_cache={torch._inductor.config.fx_graph_cache} kernels "
      f"{sorted({e.name for e in p.events() if 'gemv' in e.name})} rel err vs eager {((y - ref).float().norm() / ref.float().norm()).item():.1e}")

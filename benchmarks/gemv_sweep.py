"""Sweep the Triton GEMV kernels' launch configs on Llama-3.1-8B's linear shapes (batch-1 decode).

Weight kinds: bf16, int8 and float8 (the rowwise kernel v1, and v2, which reads int32 words)
and int4 with groups of 64 and 128 (kernels v1 and v2, llama/kernels/gemv.py), all but int4 v1 with
prefetch off and on. Every config is checked against the dequantized reference and
timed as decode runs it: CUDA-graph replays cycling
over enough copies of the weight to overflow L2, median.

Two phases keep it to a few minutes on an H200:
  1. screen: the config grid on the two biggest matrices (output, w13), int4 with groups of 128;
  2. deploy: the best few configs per kernel, plus today's GEMV_CONFIGS entry (each with split-K
     off and on, but int4 v1), each set as the
     GEMV_CONFIGS entry and called as the model calls it (config=None, so matrices with few rows get
     narrower blocks) on all five matrices; ranked by time per decode token (matrices x layers).
     int4 with groups of 128 also runs its candidates as given, without that narrowing.

Prints per kind the best config: ms per token, GB/s and its fraction of the device's copy bandwidth,
GB/s per matrix, then a GEMV_CONFIGS literal to paste into llama/kernels/gemv.py. Raw lines go to
--out/gemv_sweep.txt as they are measured, the summary to --out/summary.txt and the recommended
entries to --out/gemv_configs.json (decode_roofline.py --gemv_configs reads it). Exits 1, naming them,
if any config failed or mismatched the reference (the others are still reported).

    python benchmarks/gemv_sweep.py                         # H200: about 3-4 minutes
    python benchmarks/gemv_sweep.py --kinds int8,int4       # some kinds only
    python benchmarks/gemv_sweep.py --device cpu --smoke    # no GPU: checks through Triton's interpreter
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

if not torch.cuda.is_available():  # as tests/conftest.py; Triton reads it when the kernels are defined
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llama.generate import copy_bandwidth_gb_s  # noqa: E402
from llama.kernels import gemv  # noqa: E402
from llama.model import ARCHITECTURES  # noqa: E402

ROWWISE_DTYPES = {"bfloat16": None, "int8": torch.int8, "float8_e4m3fn": torch.float8_e4m3fn}
KINDS = (*ROWWISE_DTYPES, "int4")
# Rowwise kinds with a v2 (the word kernel) -> inputs per int32 word, from the kernel's own table.
WORD_KINDS = {gemv._config_key(dtype): per_word for dtype, (_, per_word) in gemv.WORD_KERNEL_WEIGHTS.items()}
INT4_GROUPS = (64, 128)
SCREEN_GROUP = 128  # int4 screens with this group; the recommended int4 entry is the best for it
SCREEN_SHAPES = ("output", "w13")
L2_OVERFLOW_BYTES = 256e6  # weights cycled per timing; the H200's L2 holds 60 MB
TOLERANCE = 1e-2  # relative error vs the dequantized reference; bf16 output rounding is ~4e-3


def linear_shapes(arch) -> dict[str, tuple[int, int, int]]:
    """name -> (out features N, in features K, matrices read per decode token)."""
    qkv = (arch.n_heads + 2 * arch.n_kv_heads) * arch.head_dim
    return {"wqkv": (qkv, arch.dim, arch.n_layers), "wo": (arch.dim, arch.dim, arch.n_layers),
            "w13": (2 * arch.intermediate_size, arch.dim, arch.n_layers),
            "w2": (arch.dim, arch.intermediate_size, arch.n_layers), "output": (arch.vocab_size, arch.dim, 1)}


def full_config(kind: str, config: tuple[int, ...], kernel: int | None = None, prefetch: int | None = None,
                split: int | None = None) -> tuple[int, ...]:
    """`config` with every field (gemv.gemv_config), as the sweep ranks and prints it: rowwise
    (BLOCK_N, BLOCK_K, num_warps, prefetch, kernel), int4 (BLOCK_N, BLOCK_K, num_warps, kernel,
    prefetch), then split-K only when on. kernel, prefetch and split replace the config's own; int4
    v1 has neither prefetch nor split, so both are 0 there."""
    overrides = {"kernel": kernel, "prefetch": prefetch, "split": split}
    c = gemv.gemv_config(kind, config)._replace(**{f: v for f, v in overrides.items() if v is not None})
    if kind == "int4" and c.kernel == 1:
        c = c._replace(prefetch=0, split=0)
    return gemv.config_entry(kind, c)[:5] + ((c.split,) if c.split else ())


def kernel_of(kind: str, config: tuple[int, ...]) -> int:
    return gemv.gemv_config(kind, config).kernel


def screen_grid(kind: str, kernel: int | None) -> list[tuple[int, ...]]:
    """Configs to screen: per rowwise kind (bf16, int8, float8) v1 27 (16 without prefetch, 11 with)
    and v2 59 (bf16 46), int4 v1 18, v2 33 (18 + 15); 296 for all kinds. Pruned to 16..64 elements
    (rowwise: each has an fp32 accumulator) or int32 words (int4) per thread: more spill registers, fewer leave little in flight
    and (int4 v2) spend more per byte on x and scales. Prefetch only at 16..32 per thread: it holds a
    second tile in registers to double the bytes in flight, which is what the small tiles lack (and
    at 64 int4 words a second tile spills). Left out, to keep the screen's time: the largest BLOCK_K
    (rowwise 2048, int4 4096), none of them in any kind's top five on the last H200 sweep
    (docs/perf/h200/gemv_sweep).
    v2 (int32 words: an accumulator per word, not per input) screens BLOCK_K up to 4096, pruned to
    8..64 words per thread: at BLOCK_K = K (4096: all matrices but w2) a program loads x and
    converts its layout once, where shorter tiles pass x through shared memory, behind barriers,
    every iteration (seen in the kernels' sm_90 code)."""
    if kind in WORD_KINDS and kernel == 2:
        grid = itertools.product((4, 8, 16, 32), (512, 1024, 2048, 4096), (2, 4, 8))
        per_thread = {c: c[0] * c[1] // WORD_KINDS[kind] // (32 * c[2]) for c in grid}  # int32 words per thread
        shapes = [c for c, e in per_thread.items() if 8 <= e <= 64]
        return ([full_config(kind, c, kernel, 0, 0) for c in shapes]
                + [full_config(kind, c, kernel, 1, 0) for c in shapes if per_thread[c] <= 32])
    if kind != "int4":
        grid = itertools.product((4, 8, 16, 32), (256, 512, 1024), (4, 8))
    else:
        grid = itertools.product((4, 8, 16, 32), (256, 512, 1024, 2048), (2, 4, 8))
    inputs_per_element = 8 if kind == "int4" else 1  # an int4 element is a word of 8 inputs
    per_thread = {c: c[0] * c[1] // inputs_per_element // (32 * c[2]) for c in grid}
    shapes = [c for c, e in per_thread.items() if 16 <= e <= 64]
    prefetched = [c for c in shapes if per_thread[c] <= 32] if (kind, kernel) != ("int4", 1) else []
    return ([full_config(kind, c, kernel, 0, 0) for c in shapes]
            + [full_config(kind, c, kernel, 1, 0) for c in prefetched])


# (BLOCK_N, BLOCK_K, num_warps, prefetch); prefetch on first, as ties rank in order (top 1 deploys it)
SMOKE_GRID = [(16, 128, 4, 1), (8, 512, 4, 0)]


def rel_err(a, b) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def first_line(e: Exception) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"


class Case:
    """One weight kind on one matrix: the stored tensors, copies of them past L2, a row of x, the reference."""

    def __init__(self, kind, group, n, k, device, copies: bool):
        w = torch.randn(n, k, device=device, dtype=torch.bfloat16) * 0.02
        self.x = torch.randn(1, k, device=device, dtype=torch.bfloat16)
        if kind == "int4":
            self.q = gemv.quantize_int4(w, group)
            deq = gemv.dequantize_int4(*self.q)
        else:
            self.q = (w, None) if ROWWISE_DTYPES[kind] is None else gemv.quantize_rowwise(w, ROWWISE_DTYPES[kind])
            deq = w if self.q[1] is None else gemv.dequantize_rowwise(*self.q, torch.bfloat16)
        self.kind, self.w = kind, w
        self.ref = self.x.float() @ deq.float().T
        self.nbytes = sum(t.numel() * t.element_size() for t in self.q if t is not None)
        n_copies = math.ceil(L2_OVERFLOW_BYTES / self.nbytes) if copies else 1
        self.copies = [self.q] + [tuple(None if t is None else t.clone() for t in self.q) for _ in range(n_copies - 1)]

    def __call__(self, q, config, x=None):
        x = self.x if x is None else x
        if self.kind == "int4":
            return gemv.int4_gemv(x, *q, config=config)
        return gemv.rowwise_gemv(x, q[0], q[1], config=config)


@contextlib.contextmanager
def deployed(kind: str, config):
    """Make `config` the GEMV_CONFIGS entry, as the model would read it."""
    old = gemv.GEMV_CONFIGS[kind]
    gemv.GEMV_CONFIGS[kind] = config
    try:
        yield
    finally:
        gemv.GEMV_CONFIGS[kind] = old


class Sweep:
    """Checks and times configs, logging each line as it comes; a failing config is recorded, not fatal."""

    def __init__(self, args, device, out_dir: Path):
        self.device, self.smoke = device, args.smoke
        self.raw = open(out_dir / "gemv_sweep.txt", "w")
        self.failures: list[str] = []
        if device.type == "cuda":
            from triton.testing import do_bench_cudagraph
            self.bench = lambda fn, rep=20: do_bench_cudagraph(fn, rep=rep, return_mode="median")
        else:  # smoke: nothing is timed; every call takes "1 ms", so ties rank in candidate order
            self.bench = lambda fn, rep=20: 1.0

    def log(self, line: str) -> None:
        self.raw.write(line + "\n")
        self.raw.flush()

    def measure(self, label: str, case: Case, config, deploy: bool, rep: int) -> float | None:
        """Check then time one config on one case: ms per call, or None (recorded) if it failed.
        deploy: set it as the GEMV_CONFIGS entry and call with config=None, as the model does."""
        cfg = None if deploy else list(config)
        try:
            with deployed(case.kind, config) if deploy else contextlib.nullcontext():
                err = rel_err(case(case.q, cfg), case.ref)
                if not err < TOLERANCE:
                    self.failures.append(f"MISMATCH {label} config {config}: relative error {err:.2e} vs dequantized reference")
                    self.log(f"{label} cfg={config} MISMATCH err={err:.2e}")
                    return None
                ms = self.bench(lambda: [case(q, cfg) for q in case.copies], rep=rep) / len(case.copies)
        except Exception as e:  # a config that doesn't compile or launch must not end a one-shot sweep
            self.failures.append(f"FAILED {label} config {config}: {first_line(e)}")
            self.log(f"{label} cfg={config} FAILED {type(e).__name__}")
            return None
        self.log(f"{label} cfg={config} err={err:.1e} {ms * 1e3:.1f}us {case.nbytes / ms / 1e6:.0f}GB/s")
        return ms


def families(kind):
    return [(kind, 1), (kind, 2)] if kind in ("int4", *WORD_KINDS) else [(kind, None)]


def family_name(family) -> str:
    kind, kernel = family
    return kind if kernel is None else f"{kind} v{kernel}"


def screen(sweep: Sweep, kind, shapes, grids, top) -> list[tuple]:
    """Phase 1: time each grid config on the screening shapes; the best `top` per kernel, by time
    weighted with the shapes' counts per token, plus today's entry (for int4, with each kernel)."""
    scores = {fam: dict.fromkeys(grids[fam], 0.0) for fam in families(kind)}
    for sname in SCREEN_SHAPES:
        n, k, count = shapes[sname]
        case = Case(kind, SCREEN_GROUP, n, k, sweep.device, copies=not sweep.smoke)
        for fam in families(kind):
            for config in grids[fam]:
                # Half the replays of the deploy phase: the screen only has to rank.
                ms = sweep.measure(f"screen {family_name(fam)} {sname} {n}x{k}", case, config, deploy=False, rep=10)
                scores[fam][config] += math.inf if ms is None else ms * count
        del case
    candidates = [full_config(kind, gemv.GEMV_CONFIGS[kind], kernel) for _, kernel in families(kind)]
    for fam in families(kind):
        ranked = sorted((c for c in scores[fam] if scores[fam][c] < math.inf), key=scores[fam].get)
        candidates += [c for c in ranked[:top] if c not in candidates]
    return candidates


class Deployed:
    """Phase 2 for one kind (and int4 group): per candidate, ms per decode token and GB/s per matrix.
    narrow=False runs the configs as given instead, to show what GEMV_CONFIGS' narrowing of BLOCK_N
    on matrices with few rows (MIN_PROGRAMS) gains or costs."""

    def __init__(self, sweep: Sweep, kind, group, shapes, candidates, narrow=True):
        self.kind, self.group, self.narrow = kind, group, narrow
        self.label = kind + (f"-g{group}" if group else "") + ("" if narrow else " as given")
        self.ms_per_token = dict.fromkeys(candidates, 0.0)
        self.gb_s = {c: {} for c in candidates}
        self.bytes_per_token, self.cublas_ms_per_token = 0, 0.0
        for sname, (n, k, count) in shapes.items():
            case = Case(kind, group, n, k, sweep.device, copies=not sweep.smoke)
            self.bytes_per_token += case.nbytes * count
            for config in candidates:
                ms = sweep.measure(f"deploy {self.label} {sname} {n}x{k}", case, config, deploy=narrow, rep=20)
                self.ms_per_token[config] += math.inf if ms is None else ms * count
                self.gb_s[config][sname] = 0.0 if ms is None else case.nbytes / ms / 1e6
            if kind == "bfloat16" and narrow and sweep.device.type == "cuda":  # cuBLAS, for reference
                ws = [case.w] + [q[0] for q in case.copies[1:]]
                self.cublas_ms_per_token += sweep.bench(lambda: [case.x @ w.T for w in ws]) / len(ws) * count

    def best(self, kernel: int | None = None):
        passed = [c for c, ms in self.ms_per_token.items()
                  if ms < math.inf and (kernel is None or kernel_of(self.kind, c) == kernel)]
        return min(passed, key=self.ms_per_token.get) if passed else None

    def report(self, copy_bw: float, today) -> list[str]:
        if self.best() is None:
            return [f"  {self.label:22s} no config passed"]
        lines = []
        for c in sorted(self.ms_per_token, key=self.ms_per_token.get):
            ms = self.ms_per_token[c]
            if ms == math.inf:
                continue
            gbs = self.bytes_per_token / ms / 1e6
            lines.append(f"  {self.label:22s} {str(c):20s} {ms:6.3f} ms/token {gbs:5.0f} GB/s {gbs / copy_bw:4.0%} of copy; "
                         + " ".join(f"{s} {v:.0f}" for s, v in self.gb_s[c].items())
                         + ("  <- best" if c == self.best() else "") + ("  (today's entry)" if c == today else ""))
        if self.cublas_ms_per_token:
            gbs = self.bytes_per_token / self.cublas_ms_per_token / 1e6
            lines.append(f"  {'cuBLAS bf16':22s} {'':20s} {self.cublas_ms_per_token:6.3f} ms/token {gbs:5.0f} GB/s "
                         f"{gbs / copy_bw:4.0%} of copy")
        return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="meta-llama/Llama-3.1-8B", choices=sorted(ARCHITECTURES))
    p.add_argument("--device", default="cuda")
    p.add_argument("--smoke", action="store_true",
                   help="the tiny model's shapes, two configs per kernel, one deployed candidate; numbers are not timings")
    p.add_argument("--top", type=int, default=2, help="configs per kernel taken from the screen to the deploy phase")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    p.add_argument("--out", default=os.environ.get("OUT", "results/gemv_sweep"))
    args = p.parse_args(argv)
    device = torch.device(args.device)
    kinds = args.kinds.split(",")
    if any(kind not in KINDS for kind in kinds):
        p.error(f"--kinds: each of {', '.join(KINDS)}, got {args.kinds!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("CUDA is not available here; use --device cpu --smoke")
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        p.error("--device cpu runs the kernels in Triton's interpreter: set TRITON_INTERPRET=1")
    if device.type == "cpu" and not args.smoke:
        p.error("--device cpu is for --smoke only: the interpreter takes minutes per full-size matrix")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    model = "tiny" if args.smoke else args.model
    shapes = linear_shapes(ARCHITECTURES[model])
    top = 1 if args.smoke else args.top
    grids = {fam: screen_grid(*fam) for kind in kinds for fam in families(kind)}
    if args.smoke:
        grids = {fam: list(dict.fromkeys(full_config(fam[0], c[:3], fam[1], c[3], 0) for c in SMOKE_GRID)) for fam in grids}
        gemv.MIN_PROGRAMS = 16  # tiny matrices: fewer narrowed blocks, fewer interpreted programs
    import triton
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (Triton interpreter)"
    copy_bw = copy_bandwidth_gb_s(device, 1 << 30 if device.type == "cuda" else 1 << 24, 10 if device.type == "cuda" else 2)
    header = (f"{name}, torch {torch.__version__}, triton {triton.__version__}; {model}; copy bandwidth "
              f"{copy_bw:.0f} GB/s (read + write); {sum(map(len, grids.values()))} configs screened"
              + ("; SMOKE: checks only, every ms below is a placeholder" if args.smoke else ""))
    print(header, flush=True)
    sweep = Sweep(args, device, out_dir)
    sweep.log("# " + header)

    t_start = time.perf_counter()
    candidates = {}
    for kind in kinds:
        t0 = time.perf_counter()
        candidates[kind] = screen(sweep, kind, shapes, grids, top)
        # Split-K only changes matrices with few blocks of rows, which the screen leaves out: every
        # candidate that can split (all but int4 v1) goes to the deploy phase with it off and on.
        candidates[kind] = list(dict.fromkeys(full_config(kind, c, split=split) for c in candidates[kind]
                                              for split in (0, 1)))
        print(f"screened {kind}: {len(candidates[kind])} candidates ({time.perf_counter() - t0:.0f} s)", flush=True)
    deployed_runs = []
    for kind in kinds:
        for group in (INT4_GROUPS if kind == "int4" else (None,)):
            for narrow in ((True, False) if kind == "int4" and group == SCREEN_GROUP else (True,)):
                t0 = time.perf_counter()
                deployed_runs.append(Deployed(sweep, kind, group, shapes, candidates[kind], narrow))
                print(f"deployed {deployed_runs[-1].label} ({time.perf_counter() - t0:.0f} s)", flush=True)

    lines = [header, f"sweep took {time.perf_counter() - t_start:.0f} s", "",
             "Each candidate as the GEMV_CONFIGS entry, all linears of one decode token (CUDA-graph replays, "
             "weights cycled past L2); then GB/s per matrix. 'as given': no narrowing of BLOCK_N:"]
    today = {kind: full_config(kind, config) for kind, config in gemv.GEMV_CONFIGS.items()}
    recommended = dict(today)
    for run in deployed_runs:
        lines += run.report(copy_bw, today[run.kind])
        if run.best() is not None and run.narrow and run.group in (None, SCREEN_GROUP):
            recommended[run.kind] = run.best()
    lines += ["", f"Recommended (int4: the best with groups of {SCREEN_GROUP}, its fourth field the kernel, fifth prefetch; "
                  "rowwise: fourth prefetch, fifth the kernel; a sixth, 1, is split-K):",
              "GEMV_CONFIGS = {" + ", ".join(f"{k!r}: {v!r}" for k, v in recommended.items()) + "}"]
    for kind in ("int4", *WORD_KINDS):  # the v2 kernels view their weights as int32: that must trace
        v2_best = next((run.best(kernel=2) for run in deployed_runs
                        if run.kind == kind and run.group in (None, SCREEN_GROUP) and run.narrow), None)
        if device.type == "cuda" and v2_best is not None:
            lines.append(compile_check(kind, v2_best, shapes["wo"], device, sweep))
    if sweep.failures:
        lines += ["", f"{len(sweep.failures)} failure(s):"] + [f"  {f}" for f in sweep.failures]
    text = "\n".join(lines)
    print("\n" + text)
    (out_dir / "summary.txt").write_text(text + "\n")
    # The same pick, for `decode_roofline.py --gemv_configs`: tune and measure in one device call.
    (out_dir / "gemv_configs.json").write_text(json.dumps(recommended) + "\n")
    sweep.raw.close()
    return 1 if sweep.failures else 0


def compile_check(kind, config, shape, device, sweep: Sweep) -> str:
    """The best v2 entry under torch.compile(fullgraph), captured in a CUDA graph as decode runs it,
    against eager: the wrapper's int32 view must trace."""
    n, k, _ = shape
    case = Case(kind, SCREEN_GROUP, n, k, device, copies=False)
    try:
        with deployed(kind, config):
            eager = case(case.q, None)
            compiled = torch.compile(lambda x: case(case.q, None, x), fullgraph=True)
            compiled(case.x)  # compile outside the capture
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                y = compiled(case.x)
            graph.replay()
            torch.cuda.synchronize()
        err = rel_err(y, eager)
    except Exception as e:
        sweep.failures.append(f"FAILED torch.compile + CUDA graph of {kind} {config}: {first_line(e)}")
        return f"torch.compile + CUDA graph, {kind} {config}: FAILED"
    if not err < 1e-3:
        sweep.failures.append(f"MISMATCH torch.compile + CUDA graph of {kind} {config}: relative error {err:.2e} vs eager")
    return f"torch.compile(fullgraph) + CUDA graph, {kind} {config}: relative error {err:.1e} vs eager"


if __name__ == "__main__":
    sys.exit(main())

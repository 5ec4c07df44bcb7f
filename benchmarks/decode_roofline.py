"""Batch-1 decode against the memory-bandwidth roofline: the plain torchao path vs ours (issue 6).

In ONE process, on one seeded random model (built on the device, no checkpoint), for each technique:
  plain  the technique's torchao config from llama/techniques.py, torch.compile(mode="reduce-overhead")
         (--compile block: each TransformerBlock compiled, the gpt-fast-style full decode step otherwise),
         with the model's own KV cache (SDPA over the static cache, with a mask)
  ours   our weight-only linears (llama/kernels/gemv.py, Triton GEMV; bf16: its weights as they are,
         on our word kernel; --ours_bf16 cublas keeps nn.Linear) decoded by llama.generate's --compile
         block path
         (GraphedDecode): each TransformerBlock compiled once (mode "default": one compiled block
         serves all layers, which cuts warm-up), the sampling compiled, and the whole decode step --
         all blocks, head, greedy argmax, position update -- captured in one CUDA graph and replayed
         per token, with no host work between tokens (--compile none: the same graph, nothing
         compiled); KV cache --ours_kv_cache, by default `prefix` (our Triton attention, which reads
         only the filled prefix and builds no mask). bf16's ours compiles the model's forward as one
         graph instead of block by block (WHOLE_FORWARD).
  ours-serial  ours with every kernel launched without programmatic dependent launch (PDL,
         llama/kernels/pdl.py): each kernel starts only when the one before has finished.
  ours-pdl-gemv, ours-pdl-step, ours-pdl-all  ours with PDL for the GEMV kernels only, the fused
         decode step only, or both (ours itself: pdl.KERNELS, by default pdl.DEFAULT: the bf16 GEMVs and
         the decode step).
  OURS+VARIANT[+VARIANT]  an ours path above changed by each VARIANT (OURS_VARIANTS): whole (the
         model's forward compiled as one graph, not block by block; bf16's ours does so already:
         WHOLE_FORWARD), blocks (block by block, also for bf16), norms (every RMSNorm in the GEMV
         after it, where gemv.FUSE_NORMS_BY_DEFAULT leaves the scheme's apart), apart (the norms
         apart), prefetch (every GEMV_CONFIGS entry with its prefetch on: each GEMV program issues
         its first weight tile before PDL's wait), ipdl or noipdl (inductor's kernels launched with
         PDL or not, triton.enable_pdl: with it a GEMV after one of them may start while it runs;
         ours by default: gemv.inductor_settings, on where every GEMV launches with PDL, so bf16),
         notune or tune (inductor's own kernels tuned by timing, coordinate_descent_tuning, off or
         on; ours by default: gemv.inductor_settings, off but for int4), kvpf and late (the fused
         decode step's KV_PREFETCH and RELEASE_LATE, llama/kernels/decode_attention.py), or
         KIND=F.F.F... (that GEMV_CONFIGS entry for the row, its fields dotted: bfloat16=8.1024.2.1.2.1)
Both compile under torchao's recommended inductor settings (llama.generate.INDUCTOR_CONFIG; ours
with gemv.inductor_settings' changes, as llama.generate does) and decode greedily from the same
6-token prompt; each measurement is repeated (--repeats) and the spread reported. Bytes per token = weights as stored (the embedding: one row) + KV bytes read.

    python benchmarks/decode_roofline.py --techniques bf16,int8wo,int4wo-128,float8wo,float8dq-row
    python benchmarks/gemv_sweep.py                       # GEMV launch shapes + kernel check only
    python benchmarks/decode_roofline.py --gemv_configs results/gemv_sweep/gemv_configs.json  # with its pick
    python benchmarks/decode_roofline.py --device cpu --model tiny --compile none --new-tokens 8   # smoke
"""
from __future__ import annotations

import argparse
import copy
import gc
import hashlib
import json
import os
import statistics
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llama import techniques  # noqa: E402
from llama.generate import INDUCTOR_CONFIG, GraphedDecode, copy_bandwidth_gb_s, eager_prefill, weight_bytes_per_step  # noqa: E402
from llama.kernels import decode_attention, gemv, pdl  # noqa: E402
import kernel_timeline  # noqa: E402
from llama.model import ARCHITECTURES, KV_CACHES, Transformer  # noqa: E402

NO_OURS = "no ours path"  # in place of a scheme: the technique has a plain path only
# technique -> (torchao registry spec, our GEMV scheme, our int4 group). Scheme None: ours keeps
# nn.Linear and only the decode path is ours.
TECHNIQUE_PATHS = {
    # bf16 ours: the bf16 weights on our word kernel (scheme "none"). nn.Linear (--ours_bf16 cublas)
    # decoded level with it on an H200 (223.1 vs 225.9 tok/s, other processes) but warmed up for
    # 153 s against 8: under torchao's inductor settings inductor writes the layers' GEMVs as Triton
    # reductions fused with the RMSNorm before them, and tunes each (the head stays cuBLAS).
    "bf16": ("none", "none", None),
    "int8wo": ("int8wo", "int8", None),
    "float8wo": ("float8wo", "float8", None),
    "float8dq-row": ("float8dq-row", NO_OURS, None),  # no weight-only twin: dynamic activations are its point
    **{f"int4wo-{g}": (f"int4wo-{g}", "int4", g) for g in (32, 64, 128, 256)},
}


# Techniques whose ours path compiles the model's forward as one graph rather than block by block
# (GraphedDecode's whole_step; 5.9-34.5 s of warm-up instead of 1.8-31.6 s). bf16, with its GEMVs' prefetch
# and PDL (gemv.GEMV_CONFIGS, pdl.DEFAULT), on an H200 in one process each (eleventh session, calls
# C-E, docs/performance.md): 246.1/248.7 against 244.2/244.5 tok/s for the blocks apart without
# them; 247.4/248.2/245.3 against 237.0/237.4/237.5; 245.7/246.1/246.8 against 236.9/237.5/243.0.
# Either change alone was level: the whole forward 243.0/245.0 against 243.4/243.9 (call B); the
# GEMVs' prefetch and PDL with the blocks apart 235.7/240.8/233.5 (call E). The quantized techniques
# keep their blocks apart: whole was level for int4wo-128 (474.6/476.6 against 463.8/463.6 in B,
# 473.4/471.3 against 475.4/475.3 in D) and mixed for int8wo and float8wo (B: 326.0 and 372.5
# against 373.8 and 372.8; 367.1 and 377.9 against 384.5 and 374.7).
WHOLE_FORWARD = {"bf16"}

# The PDL kernels (llama/kernels/pdl.py) each ours-* path launches with it; ours: pdl.KERNELS as set.
PDL_PATHS = {"ours-serial": (), "ours-pdl-gemv": pdl.GEMV_KINDS, "ours-pdl-step": ("decode_step",),
             "ours-pdl-all": pdl.ALL}
PATHS = ("plain", "ours", *PDL_PATHS)
OURS_VARIANTS = ("whole", "blocks", "norms", "apart", "prefetch", "ipdl", "noipdl", "notune", "tune", "kvpf", "late")
# Variants that switch on a flag of the fused decode step (decode_attention.STEP_FLAGS) for the row.
STEP_VARIANTS = {"kvpf": "KV_PREFETCH", "late": "RELEASE_LATE"}


def gemv_entry(variant: str) -> tuple[str, tuple[int, ...]] | None:
    """(kind, entry) of a KIND=F.F.F... variant (a GEMV_CONFIGS entry for one row); None for any other
    variant; ValueError for an unknown kind or fields that are not 3 to 6 integers."""
    if "=" not in variant:
        return None
    kind, _, fields = variant.partition("=")
    try:
        entry = tuple(int(f) for f in fields.split("."))
    except ValueError:
        entry = ()
    if kind not in gemv.GEMV_CONFIGS or not 3 <= len(entry) <= 6:
        raise ValueError(f"variant {variant!r}: give KIND=F.F.F[.F.F.F], KIND one of {', '.join(gemv.GEMV_CONFIGS)} "
                         f"and 3 to 6 integer fields in GEMV_CONFIGS' order")
    return kind, gemv.config_entry(kind, gemv.gemv_config(kind, entry))


def parse_path(path: str) -> tuple[str, set]:
    """(base path, its variants) of PATH[+VARIANT...]; ValueError for an unknown path."""
    base, *variants = path.split("+")
    named = {v for v in variants if gemv_entry(v) is None}
    if base not in PATHS or (variants and base == "plain") or named - set(OURS_VARIANTS):
        raise ValueError(f"unknown path {path!r}: one of {', '.join(PATHS)}, an ours one optionally "
                         f"+VARIANT[+VARIANT...] with VARIANT in {', '.join(OURS_VARIANTS)}")
    for pair in ({"whole", "blocks"}, {"norms", "apart"}, {"tune", "notune"}, {"ipdl", "noipdl"}):
        if pair <= set(variants):
            raise ValueError(f"path {path!r} asks for both {' and '.join(sorted(pair))}")
    return base, set(variants)


@contextmanager
def gemv_entries(entries: dict):
    """These GEMV_CONFIGS entries ({kind: entry}) inside this block."""
    before = dict(gemv.GEMV_CONFIGS)
    gemv.GEMV_CONFIGS.update(entries)
    try:
        yield
    finally:
        gemv.GEMV_CONFIGS.clear()
        gemv.GEMV_CONFIGS.update(before)


def path_context(path: str) -> ExitStack:
    """The PDL and GEMV-entry settings a path runs under."""
    base, variants = parse_path(path)
    stack = ExitStack()
    if base in PDL_PATHS:
        stack.enter_context(pdl.only(PDL_PATHS[base]))
    entries = {}
    if "prefetch" in variants:  # every entry with its prefetch field on
        entries = {kind: gemv.config_entry(kind, gemv.gemv_config(kind)._replace(prefetch=1)) for kind in gemv.GEMV_CONFIGS}
    entries.update(filter(None, map(gemv_entry, variants)))  # an entry given whole wins
    if entries:
        stack.enter_context(gemv_entries(entries))
    stack.enter_context(decode_attention.step_flags(*(STEP_VARIANTS[v] for v in variants & set(STEP_VARIANTS))))
    return stack


def technique_paths(args) -> dict:
    """TECHNIQUE_PATHS as this run takes them: --ours_bf16 cublas keeps nn.Linear on bf16's ours path
    (scheme None) instead of our GEMV kernel."""
    return dict(TECHNIQUE_PATHS, bf16=("none", None, None)) if args.ours_bf16 == "cublas" else TECHNIQUE_PATHS


# ----------------------------------------------------------------------------- measuring

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_model(name, device, seed) -> Transformer:
    """Seeded random bf16 weights created on the device (normal, std 0.02; norms at 1)."""
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("meta"):
        model = Transformer(ARCHITECTURES[name])
    torch.set_default_dtype(torch.float32)
    model = model.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for pname, p in sorted(model.named_parameters()):
            p.fill_(1.0) if p.ndim == 1 else p.normal_(0.0, 0.02, generator=gen)
    return model.eval().requires_grad_(False)


def rel_err(a, b) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


# ----------------------------------------------------------------------------- the two decode paths

class PlainDecode:
    """gpt-fast's loop: a compiled decode_one_token with mode="reduce-overhead"."""

    def __init__(self, model, scope):
        self.model = model
        if scope == "full":
            self.decode_one = torch.compile(self._decode_one, mode="reduce-overhead", fullgraph=True)
        else:
            self.decode_one = self._decode_one
            if scope == "block":
                for layer in model.layers:
                    layer.compile(mode="reduce-overhead")

    def _decode_one(self, tok, pos):
        return self.model(tok, pos)[:, -1].argmax(-1, keepdim=True)

    def decode(self, first, pos0, steps):
        tok, pos, out = first, torch.tensor([pos0], device=first.device), [first]
        for _ in range(steps):
            torch.compiler.cudagraph_mark_step_begin()
            tok = self.decode_one(tok, pos).clone()
            pos += 1
            out.append(tok)
        return torch.cat(out, dim=1)


def generate(model, decoder, prompt, new_tokens, device):
    """Prefill eagerly, then decode greedily; returns (tokens, decode seconds)."""
    first = eager_prefill(model, prompt, torch.arange(prompt.shape[1], device=device), 0, None)
    sync(device)
    t0 = time.perf_counter()
    tokens = decoder.decode(first, prompt.shape[1], new_tokens - 1)
    sync(device)
    return tokens, time.perf_counter() - t0


def run_path(base, technique, path, args, device, prompt, eval_tokens, base_logits, copy_bw):
    spec, scheme, group = technique_paths(args)[technique]
    variants = parse_path(path)[1]
    row = {"technique": technique, "path": path}
    if path != "plain" and scheme == NO_OURS:
        return None
    torch._dynamo.reset()
    # Free the previous row's graphs and pools first, or they are freed during this row and its
    # peak (measured relative to mem0) can come out negative.
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
    mem0 = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    model = copy.deepcopy(base)
    t0 = time.perf_counter()
    if path == "plain":
        try:
            techniques.apply(model, spec, device, torch.bfloat16)
        except techniques.Unsupported as e:
            return dict(row, status=f"unsupported: {e}")
    elif scheme is not None:
        tied = model.output.weight is model.tok_embeddings.weight
        fuse_norms = True if "norms" in variants else (False if "apart" in variants else None)
        gemv.quantize_linears(model, scheme, group or 128, filter_fn=lambda m, fqn: not (tied and fqn == "output"),
                              fuse_norms=fuse_norms)
    row["linears"] = f"torchao {spec}" if path == "plain" else (f"gemv {scheme}" if scheme else "nn.Linear")
    sync(device)
    row["quantize_s"] = time.perf_counter() - t0
    row["weight_bytes"] = weight_bytes_per_step(model, 1)
    with torch.no_grad():
        row["logits_rel_err"] = rel_err(model(eval_tokens), base_logits)
    cache_size = -(-(prompt.shape[1] + args.new_tokens) // 16) * 16
    row["kv_cache"] = "model" if path == "plain" else args.ours_kv_cache
    if path != "plain":
        row["gemv_configs"], row["pdl_kernels"] = dict(gemv.GEMV_CONFIGS), sorted(pdl.KERNELS)
        row["decode_step_flags"] = decode_attention.step_flags_on()
        whole = "whole" in variants or (technique in WHOLE_FORWARD and "blocks" not in variants)
        # How ours compiles: the forward as one graph, block by block, or not at all.
        row["forward"] = "none" if args.compile == "none" else ("whole" if whole else "blocks")
    model.setup_caches(1, cache_size, kv_cache=row["kv_cache"])
    kv_bytes = sum(layer.attention.kv_cache.bytes_read_per_step(cache_size) for layer in model.layers)
    row["bytes_per_token"] = row["weight_bytes"] + kv_bytes
    decoder = (PlainDecode(model, args.compile) if path == "plain"
               else GraphedDecode(model, 0, None, compiled=args.compile != "none",  # temperature 0: argmax
                                  whole_step=row["forward"] == "whole"))
    # Inside INDUCTOR_CONFIG's patch (main): what our linears change of it (gemv.inductor_settings),
    # or what the path's variant says.
    inductor = {} if path == "plain" else gemv.inductor_settings(model)
    if {"tune", "notune"} & variants:
        inductor["coordinate_descent_tuning"] = "tune" in variants
    if {"ipdl", "noipdl"} & variants:
        inductor["triton.enable_pdl"] = "ipdl" in variants
    if path != "plain":
        row["inductor"] = inductor
    with torch.no_grad(), torch._inductor.config.patch(inductor):
        t0 = time.perf_counter()
        ref_tokens, _ = generate(model, decoder, prompt, args.new_tokens, device)
        row["warmup_s"] = time.perf_counter() - t0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        rates = []
        for _ in range(args.repeats):
            tokens, secs = generate(model, decoder, prompt, args.new_tokens, device)
            rates.append((args.new_tokens - 1) / secs)
    row["tokens_repeat"] = bool(torch.equal(tokens, ref_tokens))
    row["decode_tok_s"] = statistics.median(rates)
    row["spread"] = (max(rates) - min(rates)) / row["decode_tok_s"]
    row["rates"] = rates
    row["bandwidth_gb_s"] = row["bytes_per_token"] * row["decode_tok_s"] / 1e9
    row["copy_fraction"] = row["bandwidth_gb_s"] * 1e9 / copy_bw
    if device.type == "cuda":
        row["peak_gb"] = (torch.cuda.max_memory_allocated(device) - mem0) / 1e9
    if args.timeline and device.type == "cuda" and path != "plain":
        # Replays of ours' graph from the middle of the decode (the same tokens, so the same cache
        # contents); decode(..., 0) only sets the token and position, so the profile holds nothing
        # but the replays. A diagnostic: if the profiler fails, the row says so and keeps its timing.
        i = args.new_tokens // 2
        try:
            decoder.decode(tokens[:, i:i + 1], prompt.shape[1] + i, 0)
            kernels = kernel_timeline.profile_replays(
                lambda: [decoder.graph.replay() for _ in range(args.timeline)])
            row["timeline"] = kernel_timeline.summarize(kernels, args.timeline, len(model.layers))
            per_step = len(kernels) // args.timeline
            print(f"{technique} {path}: step {args.timeline // 2 + 1} of {args.timeline} replays, its first kernels\n"
                  + kernel_timeline.sequence(kernels, per_step * (args.timeline // 2), 24), flush=True)
        except Exception as e:  # noqa: BLE001
            row["timeline_error"] = f"{type(e).__name__}: {e}"
    row["first_tokens"] = tokens[0, :8].tolist()
    # All the tokens, hashed, to compare rows at a glance. Two compiles of the same path can differ:
    # inductor's tuning picks kernels by timing and random weights give flat logits (docs/performance.md).
    row["tokens_sha1"] = hashlib.sha1(tokens.cpu().numpy().tobytes()).hexdigest()[:12]
    row["status"] = "ok"
    del model, decoder
    torch.cuda.empty_cache() if device.type == "cuda" else None
    return row


def print_table(rows):
    from tabulate import tabulate
    plain = {r["technique"]: r for r in rows if r["path"] == "plain" and r.get("status") == "ok"}
    table = []
    for r in rows:
        if r.get("status") != "ok":
            table.append([r["technique"], r["path"], r.get("status")] + [""] * 9)
            continue
        ratio = r["decode_tok_s"] / plain[r["technique"]]["decode_tok_s"] if r["path"] != "plain" and r["technique"] in plain else None
        table.append([r["technique"], r["path"], f"{r['decode_tok_s']:.1f}", f"{100 * r['spread']:.1f}%",
                      f"{ratio:.2f}x" if ratio else "", f"{r['bytes_per_token'] / 1e9:.3f}",
                      f"{r['bandwidth_gb_s']:.0f}", f"{100 * r['copy_fraction']:.0f}%",
                      f"{r.get('peak_gb', float('nan')):.2f}", f"{r['warmup_s']:.1f}", f"{r['logits_rel_err']:.4f}",
                      "yes" if r["tokens_repeat"] else "NO"])
    print(tabulate(table, tablefmt="github", headers=[
        "technique", "path", "decode tok/s", "spread", "ours/plain", "GB/token", "GB/s", "of copy bw",
        "peak GB", "warm-up s", "logits rel err", "same tokens"]))
    timed = [r for r in rows if r.get("timeline")]
    if timed:  # --timeline: where each step's time went, µs per layer (head and sampling averaged in)
        print("\nµs per layer in a replayed step (kernel_timeline.py)\n" + tabulate(
            [[r["technique"], r["path"], r["timeline"]["step_us"]]
             + [r["timeline"][f"{span}_us_per_layer"] for span in kernel_timeline.SPANS] for r in timed],
            tablefmt="github", headers=["technique", "path", "step µs", *kernel_timeline.SPANS]))


# ----------------------------------------------------------------------------- main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="meta-llama/Llama-3.1-8B", choices=sorted(ARCHITECTURES))
    p.add_argument("--techniques", default="bf16,int8wo,int4wo-128,float8wo,float8dq-row")
    p.add_argument("--paths", default="plain,ours")
    p.add_argument("--runs", help="explicit TECHNIQUE:PATH list, in this order (overrides --techniques/--paths)")
    p.add_argument("--table-from", help="print the table of a decode_roofline.jsonl written earlier, and exit")
    p.add_argument("--prompt-tokens", type=int, default=6)
    p.add_argument("--new-tokens", type=int, default=200)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--ours_kv_cache", default="prefix", choices=sorted(KV_CACHES),
                   help="KV cache of the ours path (default prefix: bf16 K/V read by our Triton attention, the "
                        "filled prefix only, no mask; on an H200 int8wo ours ran at 274.2 tok/s with it, 265.1 "
                        "with model, the plain path's cache)")
    p.add_argument("--compile", choices=("block", "full", "none"), default="block",
                   help="plain path: compile each block (default), the whole decode step, or nothing")
    p.add_argument("--device", default="cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.environ.get("OUT", "results/decode_roofline"))
    p.add_argument("--ours_bf16", choices=("cublas", "gemv"), default="gemv",
                   help="linears of bf16's ours path: our GEMV kernel, or nn.Linear (cuBLAS, or inductor's "
                        "reductions under its settings)")
    p.add_argument("--timeline", type=int, default=0, metavar="STEPS",
                   help="CUDA, ours paths only: after timing, profile STEPS replays of the decode step's graph "
                        "from the middle of the decode and add "
                        "where the step's time goes (kernel_timeline.py: GEMVs alone, GEMVs started early "
                        "under PDL, attention, other kernels, idle) to the row; 0 (default) skips it")
    p.add_argument("--gemv_configs", help="JSON of GEMV_CONFIGS entries to use instead of llama/kernels/gemv.py's "
                                          "(gemv_sweep.py writes OUT/gemv_configs.json)")
    args = p.parse_args(argv)
    if args.table_from:
        return print_table([json.loads(line) for line in open(args.table_from)])
    if args.gemv_configs:
        try:
            print(f"GEMV_CONFIGS from {args.gemv_configs}: {gemv.apply_configs(args.gemv_configs)}", flush=True)
        except ValueError as e:
            p.error(f"--gemv_configs {e}")
    runs = ([tuple(r.split(":")) for r in args.runs.split(",")] if args.runs else
            [(t, path) for t in args.techniques.split(",") for path in args.paths.split(",")])
    for r in runs:
        try:
            if len(r) != 2:
                raise ValueError("want TECHNIQUE:PATH")
            parse_path(r[1])
        except ValueError as e:
            p.error(f"--runs item {':'.join(r)!r}: {e}")
    unknown = [t for t, _ in runs if t not in TECHNIQUE_PATHS]
    if unknown:
        p.error(f"unknown technique(s) {unknown}; known: {', '.join(TECHNIQUE_PATHS)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("CUDA is not available here; use --device cpu --model tiny for a smoke run")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch._dynamo.config.recompile_limit = 64  # one compiled block per layer shape, never fall back to eager

    copy_bw = copy_bandwidth_gb_s(device, 1 << 30 if device.type == "cuda" else 1 << 27, 10) * 1e9
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}, "
          f"copy bandwidth {copy_bw / 1e9:.0f} GB/s (read + write)", flush=True)
    base = build_model(args.model, device, args.seed)
    gen = torch.Generator(device=device).manual_seed(args.seed + 1)
    vocab = ARCHITECTURES[args.model].vocab_size
    prompt = torch.randint(0, vocab, (1, args.prompt_tokens), device=device, generator=gen)
    eval_tokens = torch.randint(0, vocab, (1, 128), device=device, generator=gen)
    with torch.no_grad():
        base_logits = base(eval_tokens)
    rows = []
    for technique, path in runs:
        t0 = time.perf_counter()
        # Both paths compile under torchao's recommended inductor settings, as llama.generate does.
        # Without them torchao's int8wo decoded at 15.7 tok/s on an H200 (its dequantized weight
        # is materialized every step), a baseline no one would choose.
        with torch._inductor.config.patch(INDUCTOR_CONFIG), path_context(path):
            row = run_path(base, technique, path, args, device, prompt, eval_tokens, base_logits, copy_bw)
        if row is None:
            continue
        row["copy_bandwidth_gb_s"] = copy_bw / 1e9
        rows.append(row)
        print(json.dumps(row, default=str), f"({time.perf_counter() - t0:.0f} s)", flush=True)
        # One line per run as it finishes, so a run cut short still leaves its table (--table-from).
        with open(out_dir / "decode_roofline.jsonl", "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
    print(f"\n{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}: batch 1, {args.prompt_tokens}-token prompt, {args.new_tokens} new tokens, greedy; "
          f"{args.model} random bf16 weights; plain compile scope: {args.compile}; "
          f"copy bandwidth {copy_bw / 1e9:.0f} GB/s; tok/s median of {args.repeats}")
    print_table(rows)


if __name__ == "__main__":
    main()

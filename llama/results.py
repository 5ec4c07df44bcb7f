"""The results schema: the one place that says what a result JSON holds.

generate and eval each write ONE JSON per run with `write_result` (atomic: a temp file in
the same directory, then os.replace, so a killed job never leaves a half-written result).
The workflow's aggregation reads them back with `load_results` into one tidy DataFrame.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1

# Every result has a status. ok: measured. oom: the device ran out of memory (a result, not a
# crash, so sweeps go on). unsupported: the technique cannot run on this device/dtype (reason says why).
STATUSES = ("ok", "oom", "unsupported")

# Fields common to every result.
COMMON_FIELDS = {
    "schema_version": "version of this schema",
    "kind": "'generate' or 'eval'",
    "status": "one of STATUSES",
    "reason": "why status is not ok (empty when ok)",
    "model": "model name (HF repo id or synthetic shape name)",
    "synthetic": "True when the checkpoint has seeded random weights",
    "checkpoint": "checkpoint directory",
    "technique": "technique spec, e.g. 'int4wo-64+kv-int8+linear-mask'",
    "device": "torch device the job ran on, e.g. 'cuda:0' or 'cpu'",
    "precision": "model dtype, e.g. 'bfloat16'",
    "env": "environment dict from environment()",
    "command": "shell command that reproduces this result",
    "finished_at": "UTC ISO time the result was written",
}

# generate: speed and memory. Rates are over the samples after warm-up.
GENERATE_FIELDS = {
    "compile": "decode mode (llama.generate COMPILE_MODES): 'none' (eager), 'full' (the whole step, "
               "reduce-overhead), 'block' (each block compiled, the step in one CUDA graph) or 'graph' "
               "(that CUDA graph around eager blocks); older results hold true/false",
    "compile_prefill": "torch.compile on prefill",
    "batch_size": "sequences decoded together",
    "prompt_tokens": "prompt length in tokens (prefill size)",
    "max_new_tokens": "tokens generated per sample",
    "num_samples": "timed samples after warm-up",
    "cache_size": "KV cache slots",
    "temperature": "sampling temperature",
    "top_k": "sampling top-k",
    "tok_s_median": "end-to-end tokens/s (new tokens x batch over prefill + decode time)",
    "tok_s_min": "", "tok_s_max": "", "tok_s_cv": "coefficient of variation of tok/s",
    "decode_tok_s_median": "decode-only tokens/s (batch x (new tokens - 1) over decode time)",
    "decode_tok_s_min": "", "decode_tok_s_max": "", "decode_tok_s_cv": "",
    "ttft_s_median": "time to first token (prefill + first sample), seconds",
    "warmup_s": "wall time of the warm-up sample(s), including compilation",
    "peak_alloc_bytes": "peak memory allocated by tensors during the timed samples",
    "peak_reserved_bytes": "peak memory reserved by the caching allocator",
    "peak_memory_source": "what the peak_* numbers measure (CUDA allocator, or process RSS on CPU)",
    "model_size_bytes": "bytes of parameters and buffers of the weights (quantized as stored)",
    "kv_cache_bytes": "bytes of the KV caches (and their scales)",
    "bytes_per_token": "bytes read per decode step: weights + KV bytes actually read",
    "bandwidth_gb_s": "bytes_per_token x decode steps/s, GB/s",
    "copy_bandwidth_gb_s": "device-to-device copy bandwidth measured in the same run (read+write)",
    "bandwidth_fraction": "bandwidth_gb_s / copy_bandwidth_gb_s",
    "samples": "per timed sample: {ttft_s, decode_s} seconds (the rates above are computed from these)",
    "kernel_settings": "our Triton kernels' settings in this run (llama/kernels), which decode rates move "
                       "with: {gemv_configs: GEMV_CONFIGS entry by weight kind, pdl_kernels: the kernels "
                       "launched with programmatic dependent launch where the GPU has it (sm_90+), "
                       "decode_step_flags: the fused decode step's options that are on, "
                       "inductor: the inductor settings changed from llama.generate.INDUCTOR_CONFIG for this "
                       "model (gemv.inductor_settings)}",
}

# Eval defaults the workflow needs without importing lm-eval (slow to import): the offline task
# shipped in llama/data, and the eval window when --max_seq_len is not given (the model's own
# limit, capped: a 131k-token window of Llama 3.1 needs 67 GB for its fp32 logits alone; 2048 is
# lm-eval's HFLM default).
LOCAL_TASK = "llama_local_ppl"
DEFAULT_EVAL_WINDOW = 2048

EVAL_FIELDS = {
    "task": "lm-eval task name",
    "limit": "documents evaluated (None: all)",
    "num_fewshot": "few-shot examples",
    "max_seq_len": "eval window in tokens: rolling-perplexity window length and context truncation",
    "metrics": "dict metric -> value",
    "stderr": "dict metric -> standard error",
}


def environment(device: str | None = None) -> dict[str, Any]:
    """Provenance: versions, device, driver, git commit and clocks where readable."""
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        # the GPU(s) SLURM gave this job step (CUDA_VISIBLE_DEVICES there is relative to them)
        "slurm_step_gpus": os.environ.get("SLURM_STEP_GPUS"),
    }
    try:
        import torchao

        env["torchao"] = torchao.__version__
    except Exception:  # torchao is optional for plain bf16 runs
        env["torchao"] = None
    env["git_commit"] = _run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"])
    dev = torch.device(device) if device else None
    if dev is not None and dev.type == "cuda" and torch.cuda.is_available():
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        env["device_name"] = torch.cuda.get_device_name(idx)
        env["cuda"] = torch.version.cuda
        query = "driver_version,clocks.sm,clocks.mem,clocks.max.sm,power.draw,temperature.gpu,pci.bus_id"
        smi = _run(["nvidia-smi", f"--id={_physical_index(idx)}", f"--query-gpu={query}", "--format=csv,noheader"])
        if smi:
            vals = [v.strip() for v in smi.split(",")]
            env.update(zip(["driver", "clock_sm", "clock_mem", "clock_sm_max", "power_draw", "temperature", "pci_bus_id"], vals))
    else:
        env["device_name"] = platform.processor() or platform.machine()
    # The host CPUs this job may use (llama.gpus gives each GPU job its own slice) and torch's threads.
    env["cpu_affinity"] = len(os.sched_getaffinity(0))
    env["cpu_threads"] = torch.get_num_threads()
    return env


def _physical_index(idx: int) -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        if idx < len(ids):
            return ids[idx]
    return str(idx)


def _run(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def reproduce_command(argv: list[str] | None = None) -> str:
    """The command line that made this process, as `python -m module args`."""
    argv = sys.argv if argv is None else argv
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    head = ["python", "-m", spec.name] if spec is not None and spec.name else ["python", argv[0]]
    return shlex.join(head + list(argv[1:]))


def is_oom(error: BaseException) -> bool:
    """Out of memory: CUDA's, a failed CPU allocation, or either wrapped (e.g. by torch.compile)."""
    import torch

    while error is not None:
        if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
            return True
        if isinstance(error, RuntimeError) and ("can't allocate memory" in str(error) or "out of memory" in str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


def oom_reason(error: BaseException) -> str:
    """The error's first line (the allocator says there what it tried to allocate)."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:500]


def make_result(kind: str, **fields: Any) -> dict[str, Any]:
    """A result dict with every schema field present (missing ones None), in schema order."""
    extra = GENERATE_FIELDS if kind == "generate" else EVAL_FIELDS
    known = list(COMMON_FIELDS) + list(extra)
    unknown = set(fields) - set(known)
    if unknown:
        raise KeyError(f"fields not in the {kind} results schema: {sorted(unknown)} (add them in llama/results.py)")
    result = {k: None for k in known}
    result.update(schema_version=SCHEMA_VERSION, kind=kind, reason="")
    result.update(fields)
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if result["status"] not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {result['status']!r}")
    return result


def write_result(path: str | os.PathLike, result: dict[str, Any]) -> None:
    """Write JSON atomically: readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=2, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_result(path: str | os.PathLike) -> dict[str, Any]:
    with open(path) as f:
        result = json.load(f)
    if result.get("schema_version") != SCHEMA_VERSION or result.get("status") not in STATUSES:
        raise ValueError(f"{path}: not a schema-{SCHEMA_VERSION} result")
    return result


def load_results(paths: Iterable[str | os.PathLike]):
    """One row per result; eval metrics are flattened to metric/<name> and stderr/<name> columns."""
    import pandas as pd

    rows = []
    for p in paths:
        r = read_result(p)
        row = {k: v for k, v in r.items() if k not in ("env", "metrics", "stderr", "kernel_settings")}
        row["device_name"] = (r.get("env") or {}).get("device_name")
        for name, value in (r.get("metrics") or {}).items():
            row[f"metric/{name}"] = value
        for name, value in (r.get("stderr") or {}).items():
            row[f"stderr/{name}"] = value
        row["path"] = str(p)
        rows.append(row)
    return pd.DataFrame(rows)

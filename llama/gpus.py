"""One GPU per job when several benchmark jobs share one multi-GPU host.

Snakemake counts GPUs (`--resources gpu=K`) but does not say which device a job gets, so
every GPU rule's command starts with `python -m llama.gpus run -- CMD...`. That launcher
takes the first free GPU slot, sets CUDA_VISIBLE_DEVICES to that GPU alone and execs CMD.

A slot is an exclusive `fcntl.flock` on `<lock dir>/gpu-<id>.lock`. exec keeps the locked
file open in CMD, and the kernel drops the lock when CMD's process dies, however it dies
(exit, crash, OOM kill), so a failed job frees its GPU for the next one.

The job also gets its own share of the host's CPUs: with n GPUs, slot i's job is bound
(sched_setaffinity) to the i-th of n equal slices of the CPUs this process may use, and
OMP_NUM_THREADS / MKL_NUM_THREADS are set to the slice size unless the caller set them. Without
that, each of K jobs starts one torch thread per core, and K busy jobs oversubscribe the host.

Nothing is pinned, and CMD runs unchanged, when
- SLURM_JOB_ID is set: the scheduler already gave the job its own GPU;
- no GPU is visible: a CPU-only host runs the GPU rules on CPU.

Visible GPUs come from LLAMA_BENCH_GPUS (a fake comma-separated list, for tests), else
CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import re
import subprocess
import sys
import time
from pathlib import Path

FAKE_GPUS_ENV = "LLAMA_BENCH_GPUS"
LOCK_DIR_ENV = "LLAMA_BENCH_GPU_LOCKS"
# Relative to the job's working directory, which Snakemake sets to the workflow's workdir,
# so all jobs of one run share it.
DEFAULT_LOCK_DIR = ".snakemake/gpu-locks"
POLL_S = 0.5


def resolve_device(name: str):
    """--device value -> torch.device: auto (CUDA when present, else CPU), cpu, cuda or cuda:N.

    A bare "cuda" gets the current device's index, so torch.cuda.set_device and memory stats
    name one device. Raises ValueError with a one-line reason for a device this host lacks."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return device


class GpuSlotError(ValueError):
    """More GPU slots asked for than GPUs visible."""


def _split(ids: str) -> list[str]:
    return [i.strip() for i in ids.split(",") if i.strip()]


def visible_gpus() -> list[str]:
    """Ids of the GPUs this host lets us use, as CUDA_VISIBLE_DEVICES spells them."""
    for var in (FAKE_GPUS_ENV, "CUDA_VISIBLE_DEVICES"):
        if var in os.environ:
            return _split(os.environ[var])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    # "GPU 0: NVIDIA H200 (UUID: GPU-...)"; MIG lines are indented and not counted.
    return re.findall(r"^GPU (\d+):", out.stdout, flags=re.MULTILINE)


def under_slurm() -> bool:
    return "SLURM_JOB_ID" in os.environ


def check_gpu_slots(slots: int | None) -> None:
    """Fail at workflow start when `--resources gpu=K` asks for more GPUs than are visible.

    Call it from the Snakefile at parse time with K (None when --resources has no gpu).
    A CPU-only host and a SLURM job are never an error: there, nothing is pinned.
    """
    if slots is None or under_slurm():
        return
    gpus = visible_gpus()
    if gpus and slots > len(gpus):
        raise GpuSlotError(
            f"--resources gpu={slots} but only {len(gpus)} GPU(s) are visible ({','.join(gpus)}); "
            f"use --resources gpu={len(gpus)} or fewer"
        )


def lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV, DEFAULT_LOCK_DIR))


def acquire_gpu(gpus: list[str], locks: Path) -> tuple[str, int]:
    """Lock the first free GPU; wait while all are taken. Returns (gpu id, locked fd)."""
    locks.mkdir(parents=True, exist_ok=True)
    waiting = False
    while True:
        for gpu in gpus:
            path = locks / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', gpu)}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            # Who holds it, for a human looking at the lock dir.
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}\n".encode())
            return gpu, fd
        if not waiting:
            # Only when a job outside this Snakemake run holds a GPU, or K > GPUs slipped past
            # check_gpu_slots: wait rather than share a device.
            print(f"llama.gpus: all GPUs {','.join(gpus)} are locked in {locks}; waiting", file=sys.stderr)
            waiting = True
        time.sleep(POLL_S)


def cpu_share(gpu: str, gpus: list[str], cpus: list[int]) -> list[int]:
    """The slice of `cpus` that the job on `gpu` gets: slot i of n takes the i-th of n equal,
    disjoint slices (the last one takes the remainder). Fewer CPUs than GPUs: all of them."""
    n, i = len(gpus), gpus.index(gpu)
    size = len(cpus) // n
    if size == 0:
        return cpus
    return cpus[i * size:] if i == n - 1 else cpus[i * size:(i + 1) * size]


def run(cmd: list[str]) -> None:
    """Exec cmd pinned to one free GPU (or unchanged under SLURM / without GPUs). Never returns."""
    if not cmd:
        _fail(2, "no command given; usage: python -m llama.gpus run -- CMD [ARGS...]")
    gpus = [] if under_slurm() else visible_gpus()
    if gpus:
        gpu, fd = acquire_gpu(gpus, lock_dir())
        os.set_inheritable(fd, True)  # the lock must live exactly as long as cmd
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        cpus = cpu_share(gpu, gpus, sorted(os.sched_getaffinity(0)))
        os.sched_setaffinity(0, cpus)  # inherited through exec
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(len(cpus)))
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        _fail(127, f"cannot run {cmd[0]!r}: {e.strerror}")


def _fail(code: int, message: str) -> None:
    print(f"llama.gpus run: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llama.gpus", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    p_run = sub.add_parser("run", help="run CMD on one free GPU: python -m llama.gpus run -- CMD [ARGS...]")
    p_run.add_argument("cmd", nargs=argparse.REMAINDER)
    sub.add_parser("list", help="print the visible GPU ids, one per line")
    args = parser.parse_args(argv)
    if args.verb == "list":
        print("\n".join(visible_gpus()))
        return
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    run(cmd)


if __name__ == "__main__":
    main()

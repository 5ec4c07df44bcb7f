"""GPU pinning on one host (llama/gpus.py), on CPU with a fake GPU list."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llama import gpus

REPO = Path(__file__).resolve().parents[1]

# A fake job: records the GPU it was given, then holds it until the test releases it.
HOLD = """
import os, sys, time
from pathlib import Path
out, release = Path(sys.argv[1]), Path(sys.argv[2])
out.write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
while not release.exists():
    time.sleep(0.05)
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Environment of a job on a host with fake GPUs 0..2 and its own lock dir."""
    for var in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(gpus.FAKE_GPUS_ENV, "0,1,2")
    monkeypatch.setenv(gpus.LOCK_DIR_ENV, str(tmp_path / "locks"))
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO)
    return e


def start_job(env, out, release):
    cmd = [sys.executable, "-m", "llama.gpus", "run", "--", sys.executable, "-c", HOLD, str(out), str(release)]
    return subprocess.Popen(cmd, env=env)


def wait_for(paths, timeout=60):
    deadline = time.monotonic() + timeout
    while not all(p.exists() and p.read_text() for p in paths):
        assert time.monotonic() < deadline, f"jobs did not start: {[str(p) for p in paths if not p.exists()]}"
        time.sleep(0.05)
    return [p.read_text() for p in paths]


def finish(jobs, release):
    release.touch()
    for job in jobs:
        assert job.wait(timeout=60) in (0, -signal.SIGKILL)


def test_concurrent_jobs_get_distinct_gpus(env, tmp_path):
    release = tmp_path / "release"
    outs = [tmp_path / f"job{i}" for i in range(3)]
    jobs = [start_job(env, out, release) for out in outs]
    try:
        # All three hold their GPU at once, so a shared device would show up as a repeat.
        assert sorted(wait_for(outs)) == ["0", "1", "2"]
    finally:
        finish(jobs, release)


def test_killed_job_frees_its_gpu(env, tmp_path):
    env[gpus.FAKE_GPUS_ENV] = "0,1"
    release = tmp_path / "release"
    first, second, third = (tmp_path / f"job{i}" for i in range(3))
    jobs = [start_job(env, first, release), start_job(env, second, release)]
    try:
        held = dict(zip(wait_for([first, second]), jobs))
        assert sorted(held) == ["0", "1"]
        jobs.append(start_job(env, third, release))
        time.sleep(1.5)
        assert not third.exists(), "a third job ran while both GPUs were taken"
        held["1"].kill()  # as the OOM killer would: no cleanup code runs
        held["1"].wait()
        assert wait_for([third]) == ["1"]
    finally:
        finish(jobs, release)


def test_more_slots_than_gpus_is_an_error(env, monkeypatch):
    monkeypatch.setenv(gpus.FAKE_GPUS_ENV, "0,1")
    gpus.check_gpu_slots(2)
    gpus.check_gpu_slots(None)
    with pytest.raises(gpus.GpuSlotError, match=r"gpu=3 but only 2 GPU\(s\) are visible \(0,1\); use --resources gpu=2"):
        gpus.check_gpu_slots(3)


def test_no_error_without_gpus_or_under_slurm(env, monkeypatch):
    monkeypatch.setenv(gpus.FAKE_GPUS_ENV, "")
    gpus.check_gpu_slots(4)  # CPU-only host: GPU rules run on CPU, any K is fine
    monkeypatch.setenv(gpus.FAKE_GPUS_ENV, "0")
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    gpus.check_gpu_slots(4)  # inside a SLURM job the scheduler decides


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv(gpus.FAKE_GPUS_ENV, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert gpus.visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpus.visible_gpus() == []


def run_env(env, *extra):
    """CUDA_VISIBLE_DEVICES as a job launched through llama.gpus sees it, and the lock files."""
    out = subprocess.run(
        [sys.executable, "-m", "llama.gpus", "run", "--", sys.executable, "-c",
         "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>'))", *extra],
        env=env, capture_output=True, text=True, check=True,
    )
    locks = Path(env[gpus.LOCK_DIR_ENV])
    return out.stdout.strip(), sorted(p.name for p in locks.glob("*")) if locks.exists() else []


def test_pins_one_gpu(env):
    assert run_env(env) == ("0", ["gpu-0.lock"])


def test_passthrough_without_gpus(env):
    env[gpus.FAKE_GPUS_ENV] = ""
    assert run_env(env) == ("<unset>", [])


def test_passthrough_under_slurm(env):
    env["SLURM_JOB_ID"] = "42"
    env["CUDA_VISIBLE_DEVICES"] = "5"  # what SLURM set for this job's GPU
    assert run_env(env) == ("5", [])


def test_exit_status_and_bad_input(env):
    fail = [sys.executable, "-m", "llama.gpus", "run", "--", sys.executable, "-c", "raise SystemExit(3)"]
    assert subprocess.run(fail, env=env).returncode == 3
    usage = subprocess.run([sys.executable, "-m", "llama.gpus", "run"], env=env, capture_output=True, text=True)
    assert usage.returncode == 2 and "no command given" in usage.stderr

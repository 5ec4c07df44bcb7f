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
Path(str(out) + ".cpus").write_text(",".join(map(str, sorted(os.sched_getaffinity(0)))))  # before `out`: tests wait on it
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


def test_cpu_share_slices_are_disjoint_and_cover_the_host():
    cpus = list(range(7))
    shares = [gpus.cpu_share(g, ["a", "b", "c"], cpus) for g in ("a", "b", "c")]
    assert shares == [[0, 1], [2, 3], [4, 5, 6]]
    assert gpus.cpu_share("b", ["a", "b", "c"], [0]) == [0]  # fewer CPUs than GPUs: share, never none
    assert gpus.cpu_share("0", ["0"], cpus) == cpus


def test_concurrent_jobs_get_disjoint_cpus(env, tmp_path):
    host = sorted(os.sched_getaffinity(0))
    if len(host) < 2:
        pytest.skip("needs 2 CPUs")
    env[gpus.FAKE_GPUS_ENV] = "0,1"
    release = tmp_path / "release"
    outs = [tmp_path / f"job{i}" for i in range(2)]
    jobs = [start_job(env, out, release) for out in outs]
    try:
        got = dict(zip(wait_for(outs), [Path(f"{o}.cpus").read_text() for o in outs]))
    finally:
        finish(jobs, release)
    shares = {gpu: set(map(int, cpus.split(","))) for gpu, cpus in got.items()}
    assert sorted(shares) == ["0", "1"]
    assert not shares["0"] & shares["1"] and shares["0"] | shares["1"] == set(host)


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


# Four GPU jobs under `--resources gpu=2` on a host with fake GPUs 0 and 1: Snakemake runs two at
# once, and each records the GPU it got and when it held it.
SNAKEFILE = """
rule all:
    input: expand("job{i}.txt", i=range(4))

rule job:
    output: "job{i}.txt"
    resources: gpu=1
    shell:
        "python -m llama.gpus run -- python -c 'import os, time; t = time.time(); time.sleep(1.5);"
        " print(os.environ[\\"CUDA_VISIBLE_DEVICES\\"], t, time.time())' > {output}"
"""


def test_snakemake_jobs_get_distinct_gpus(env, tmp_path):
    env[gpus.FAKE_GPUS_ENV] = "0,1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--resources", "gpu=2"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = [(gpu, float(t0), float(t1)) for gpu, t0, t1 in
            (p.read_text().split() for p in sorted(tmp_path.glob("job*.txt")))]
    overlapping = [(a, b) for i, a in enumerate(jobs) for b in jobs[i + 1:] if a[1] < b[2] and b[1] < a[2]]
    assert overlapping, f"no two jobs ran at once: {jobs}"
    assert all(a[0] != b[0] for a, b in overlapping), f"two jobs at once shared a GPU: {jobs}"

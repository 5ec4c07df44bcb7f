"""`snakemake --profile slurm` against a real one-node SLURM on localhost (.ci/slurm.sh).

Needs root (the daemons run as root) and Debian's SLURM packages (installed with apt-get when
missing); skipped with the reason otherwise. The node declares one fake A100 (gres
File=/dev/null), so GPU jobs are really scheduled against a GPU gres.

The default workflow runs a reduced sweep (one model, two techniques, one cache size: 10 SLURM
jobs, the 4 GPU ones one at a time on the one fake GPU; about 6 minutes on 2 busy cores, then
the same sweep locally); LLAMA_BENCH_SLURM_FULL=1 runs config/config.yaml whole (55 jobs).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SLURM_SH = REPO / ".ci" / "slurm.sh"
GPU_RULES = {"generate", "eval"}
# Merged over config/config.yaml (later --configfile entries win, key by key).
SMALL_SWEEP = "models: [tiny]\ntechniques: [none, int8wo]\ngenerate: {cache_sizes: [256]}\n"
# Status checks start after 2 s, not the plugin's 40 (they then back off by 10 s up to 180 s).
FAST_POLL = ["--slurm-init-seconds-before-status-checks", "2"]
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running one-node SLURM; every daemon it started is stopped by PID afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test needs root: it installs SLURM and runs its daemons")
    state = tmp_path_factory.mktemp("slurm")
    start = subprocess.run([SLURM_SH, "start", state], capture_output=True, text=True, timeout=600)
    if start.returncode == 77:
        pytest.skip(start.stderr.strip())
    try:
        assert start.returncode == 0, f"starting SLURM failed:\n{start.stdout}{start.stderr}"
        yield state
    finally:
        stop = subprocess.run([SLURM_SH, "stop", state], capture_output=True, text=True, timeout=120)
        assert stop.returncode == 0, f"stopping SLURM failed:\n{stop.stderr}"


def sweep(workdir: Path) -> list[str]:
    if os.environ.get("LLAMA_BENCH_SLURM_FULL"):
        return []
    (workdir / "small_sweep.yaml").write_text(SMALL_SWEEP)
    return ["--configfile", "config/config.yaml", "small_sweep.yaml"]


def checkout(dest: Path) -> Path:
    """The files the workflow needs, as a clean clone has them (tracked or not ignored)."""
    files = subprocess.run(
        ["git", "-C", REPO, "ls-files", "-z", "-co", "--exclude-standard", "--", "workflow", "config", "llama", "slurm"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # Jobs (also inside SLURM, which exports this environment) find this venv's python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
    try:
        return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
        pytest.fail(f"snakemake {' '.join(args)} did not finish in {timeout} s; last output:\n{out[-3000:]}")


def tres_per_job(job_id: str) -> str | None:
    """The gres a job asked for (e.g. 'gres:gpu:a100:1'), from slurmctld; None once purged."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    match = re.search(r"TresPerJob=(\S+)", out.stdout)
    return match.group(1) if match else ""


def deterministic(csv: Path) -> pd.DataFrame:
    """benchmarks.csv less what is measured (speed, memory, times, paths): what must match."""
    df = pd.read_csv(csv)
    keep = [c for c in df.columns if c in (
        "kind", "status", "model", "synthetic", "technique", "device", "precision", "batch_size",
        "prompt_tokens", "max_new_tokens", "num_samples", "cache_size", "model_size_bytes",
        "kv_cache_bytes", "task", "limit") or c.startswith("metric/")]
    keys = [c for c in ("kind", "model", "technique", "cache_size", "task") if c in df.columns]
    return df[keep].sort_values(keys).reset_index(drop=True)


def table_layout(markdown: Path) -> list[str]:
    """Each Markdown table's column names, then the first cell of each row (padding ignored)."""
    layout, header = [], True
    for line in markdown.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|"):
            header = True  # the next table starts with its header
        elif set(line) <= set("|:- "):
            continue
        elif header:
            layout.append(cells)
            header = False
        else:
            layout.append(cells[0])
    return layout


def test_default_workflow_on_slurm_matches_local_run(cluster, tmp_path):
    on_slurm = checkout(tmp_path / "slurm")
    local = checkout(tmp_path / "local")

    run = snakemake(on_slurm, "--profile", "slurm", *FAST_POLL, *sweep(on_slurm), timeout=2400)
    log = run.stdout + run.stderr
    assert run.returncode == 0, f"the workflow failed on SLURM:\n{log[-5000:]}"

    # Every job but the localrules went through sbatch; GPU rules asked for the A100 gres.
    submitted = SUBMITTED.findall(log)
    assert submitted, f"no job was submitted to SLURM:\n{log[-3000:]}"
    checked_gpu = 0
    for job_id, slurm_log in submitted:
        rule = re.search(r"/rule_([^/]+)/", slurm_log).group(1)
        tres = tres_per_job(job_id)
        if tres is None:
            continue  # finished longer than MinJobAge ago
        assert ("gpu:a100:1" in tres) == (rule in GPU_RULES), f"SLURM job {job_id} (rule {rule}) has gres {tres!r}"
        print(f"sbatch job {job_id}: rule {rule}, gres {tres or '-'}")  # the record: pytest -rP shows it
        checked_gpu += rule in GPU_RULES
    assert checked_gpu, "no GPU job left in slurmctld to check its gres"

    # Inside each GPU job SLURM assigned the fake GPU, and the result JSON recorded it.
    results = sorted((on_slurm / "results").glob("*/*/*/*/*.json"))
    assert results, "no result JSON written"
    for path in results:
        env = json.loads(path.read_text())["env"]
        assert env["slurm_job_id"], f"{path}: not run inside a SLURM job"
        assert env["slurm_step_gpus"] == "0" and env["cuda_visible_devices"] == "0", \
            f"{path}: no GPU gres in the job: {env['slurm_step_gpus']=} {env['cuda_visible_devices']=}"

    run_local = snakemake(local, "--cores", "1", "--resources", "gpu=1", *sweep(local), timeout=2400)
    assert run_local.returncode == 0, f"the local run failed:\n{(run_local.stdout + run_local.stderr)[-5000:]}"
    assert sorted(p.name for p in (on_slurm / "results").iterdir()) == sorted(p.name for p in (local / "results").iterdir())
    pd.testing.assert_frame_equal(deterministic(on_slurm / "results/benchmarks.csv"),
                                  deterministic(local / "results/benchmarks.csv"), rtol=1e-3)
    # Accuracy does not depend on where a job ran; speeds do.
    assert (on_slurm / "results/eval_table.md").read_text() == (local / "results/eval_table.md").read_text()
    for table in ("readme_table.md", "kv_cache_table.md"):
        # Same rows and columns; cells hold measured speeds that differ run to run.
        assert table_layout(on_slurm / "results" / table) == table_layout(local / "results" / table), \
            f"{table} has other rows or columns on SLURM than locally"


def test_failing_job_fails_the_run_promptly(cluster, tmp_path):
    (tmp_path / "Snakefile").write_text('rule fail:\n    output: "never.txt"\n    shell: "echo failing on purpose; exit 3"\n')
    began = time.monotonic()
    run = snakemake(tmp_path, "--profile", str(REPO / "slurm"), *FAST_POLL, timeout=300)
    took = time.monotonic() - began
    log = run.stdout + run.stderr
    assert run.returncode != 0, f"a failing job did not fail the run:\n{log[-3000:]}"
    assert took < 150, f"the failure took {took:.0f} s to report"
    (job_id, slurm_log), = SUBMITTED.findall(log)
    assert f"SLURM-job '{job_id}' failed" in log
    assert f"log: {slurm_log}" in log.split("Error in rule fail")[1], "the error does not name the SLURM log"
    assert "failing on purpose" in Path(slurm_log).read_text()

"""Snakemake through a real SLURM cluster (snakemake-executor-plugin-slurm).

Needs a working cluster on this machine: `sudo .ci/slurm/start.sh` starts a single-node one
(slurmctld + slurmd + slurmdbd). Skipped unless TYR_TEST_SLURM=1; with TYR_TEST_SLURM=1 (as CI
sets it) a missing cluster or plugin FAILS every test instead, so CI cannot pass without them:

    sudo .ci/slurm/start.sh && TYR_TEST_SLURM=1 .venv/bin/python -m pytest -m slurm tests/workflow/test_slurm.py

Partition and account: TYR_SLURM_PARTITION / TYR_SLURM_ACCOUNT if set, else the cluster's
default partition and the account `tyr` when the user has it (the one start.sh creates).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "profiles" / "slurm"


REQUESTED = os.environ.get("TYR_TEST_SLURM") == "1"


def _missing() -> str | None:
    """What the SLURM tests lack (a cluster answering `sinfo`, the executor plugin), or None."""
    if shutil.which("sinfo") is None:
        return "no `sinfo` on PATH: start a cluster with .ci/slurm/start.sh"
    try:
        if subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode != 0:
            return "`sinfo -h` fails: the SLURM cluster is not answering"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`sinfo -h` fails: {e}"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError as e:
        return f"snakemake-executor-plugin-slurm is not importable ({e}); pip install -e '.[slurm]'"
    return None


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not REQUESTED, reason="needs TYR_TEST_SLURM=1 and a SLURM cluster (.ci/slurm/start.sh)"),
]


@pytest.fixture(autouse=True, scope="module")
def _cluster_present():
    """TYR_TEST_SLURM=1 promises a cluster: its absence is a failure, never a skip."""
    reason = _missing()
    if reason:
        pytest.fail(f"TYR_TEST_SLURM=1 but {reason}")


def _out(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout


@pytest.fixture(scope="module")
def cluster() -> dict:
    """Partition and account to submit to, and the time the tests started (for sacct)."""
    partition = os.environ.get("TYR_SLURM_PARTITION")
    if not partition:
        names = [p.strip() for p in _out("sinfo", "-h", "-o", "%P").split()]
        default = [p[:-1] for p in names if p.endswith("*")]
        partition = (default or names)[0]
    account = os.environ.get("TYR_SLURM_ACCOUNT")
    if account is None:
        user = os.environ.get("USER") or _out("id", "-un").strip()
        try:
            accounts = _out("sacctmgr", "-n", "-P", "list", "assoc", f"user={user}", "format=account").split()
        except (OSError, subprocess.CalledProcessError):
            accounts = []
        account = "tyr" if "tyr" in accounts else ""
    # sacct's --starttime has minute resolution: start a minute early, filter by job name after.
    start = (datetime.now() - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    return {"partition": partition, "account": account, "start": start}


def _env(cluster: dict, **extra: str) -> dict:
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TYR_SLURM_PARTITION=cluster["partition"],
        TYR_SLURM_ACCOUNT=cluster["account"],
    )
    # The jobs run `python -m snakemake` from this interpreter: keep its bin/ first on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _snakemake(args: list[str], env: dict, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    (cwd / "snakemake.stdout").write_text(out.stdout)
    (cwd / "snakemake.stderr").write_text(out.stderr)
    return out


def _fail(out: subprocess.CompletedProcess, what: str) -> str:
    return f"{what} (exit {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-8000:]}"


def _sacct(cluster: dict, *fields: str) -> list[dict]:
    """This machine's jobs since the tests started, one dict per job (no job steps)."""
    text = _out(
        "sacct",
        "-X",
        "-P",
        "-n",
        "--allusers",
        "--starttime",
        cluster["start"],
        "--endtime",
        "now",
        "--format",
        ",".join(fields),
    )
    return [dict(zip(fields, line.split("|"))) for line in text.splitlines() if line]


# ------------------------------------------------------------------ a self-contained workflow

MINI = textwrap.dedent(
    r"""
    import os

    from snakemake.exceptions import WorkflowError

    from tyr.workflow import hooks


    # The tyr workflow's own hooks (rules/common.smk), on this workflow's folder `out`.
    onstart:
        try:
            hooks.on_start("mini", "out")
        except hooks.HookError as e:
            raise WorkflowError(str(e))


    onerror:
        hooks.on_error(log)


    rule all:
        input:
            "out/summary.txt",

    # Three independent jobs: three SLURM jobs (two run at once on a 2-CPU node).
    rule part:
        output:
            "out/part{i}.txt",
        threads: 1
        resources:
            mem_mb=300,
            runtime=5,
        shell:
            "echo part {wildcards.i} job=$SLURM_JOB_ID cpus=$SLURM_CPUS_PER_TASK host=$(hostname) > {output}"

    # A chain of four dependent jobs, like supernet_layer (layer l reads layer l-1):
    # with --groups chain=chain they are one SLURM job.
    rule chain:
        input:
            lambda w: [f"out/step{int(w.i) - 1}.txt"] if int(w.i) > 0 else [],
        output:
            "out/step{i}.txt",
        resources:
            mem_mb=300,
            runtime=5,
        shell:
            "(cat {input} /dev/null; echo step {wildcards.i} job=$SLURM_JOB_ID) > {output}"

    rule summary:
        input:
            parts=expand("out/part{i}.txt", i=range(3)),
            chain="out/step3.txt",
        output:
            "out/summary.txt",
        threads: 2
        resources:
            mem_mb=500,
            runtime=5,
        run:
            with open(output[0], "w") as f:
                for path in [*input.parts, input.chain]:
                    f.write(open(path).read())
                f.write(f"summary job={os.environ.get('SLURM_JOB_ID')} cpus={os.environ.get('SLURM_CPUS_PER_TASK')}\n")

    # For the kill / Ctrl-C / resume test: a quick job, then two slow ones that outlive a stop.
    rule slow:
        input:
            "out/part0.txt",
        output:
            "out/slow{i}.txt",
        resources:
            mem_mb=300,
            runtime=5,
        shell:
            "sleep 30; echo slow {wildcards.i} job=$SLURM_JOB_ID > {output}"

    rule slow_all:
        input:
            expand("out/slow{i}.txt", i=range(2)),
        output:
            "out/slow.txt",
        localrule: True
        shell:
            "cat {input} > {output}"

    rule broken:
        output:
            "out/broken.txt",
        resources:
            mem_mb=300,
            runtime=5,
        shell:
            "echo partial > {output}; exit 3"
    """
)


def _mini_args(cluster: dict, *extra: str) -> list[str]:
    resources = [f"slurm_partition={cluster['partition']}"]
    if cluster["account"]:
        resources.append(f"slurm_account={cluster['account']}")
    return [
        "--executor",
        "slurm",
        "--jobs",
        "4",
        "--latency-wait",
        "10",
        "--default-resources",
        *resources,
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--slurm-keep-successful-logs",
        "--seconds-between-status-checks",
        "1",
        *extra,
    ]


def _log_job_ids(workdir: Path, rule: str) -> list[str]:
    """SLURM job ids of a rule's submissions, from the plugin's log files (<jobid>.log)."""
    logs = (workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}").rglob("*.log")
    return sorted(p.stem for p in logs)


def _job_id(line: str) -> str:
    m = re.search(r"job=(\d+)", line)
    assert m, f"not run inside a SLURM job: {line!r}"
    return m.group(1)


def test_mini_workflow_runs_on_slurm(tmp_path, cluster):
    (tmp_path / "Snakefile").write_text(MINI)
    t0 = time.perf_counter()
    out = _snakemake(_mini_args(cluster, "--groups", "chain=chain"), _env(cluster), tmp_path)
    seconds = time.perf_counter() - t0
    assert out.returncode == 0, _fail(out, "mini workflow on SLURM failed")
    print(f"mini workflow on SLURM: {seconds:.1f} s")

    lines = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    parts, chain, summary = lines[:3], lines[3:7], lines[7]
    assert [ln.split()[:2] for ln in parts] == [["part", "0"], ["part", "1"], ["part", "2"]]
    assert [ln.split()[:2] for ln in chain] == [["step", str(i)] for i in range(4)]
    part_jobs = {_job_id(ln) for ln in parts}
    chain_jobs = {_job_id(ln) for ln in chain}
    summary_job = _job_id(summary)
    assert len(part_jobs) == 3, "each independent job is its own SLURM job"
    assert len(chain_jobs) == 1, "the grouped chain is one SLURM job"
    assert len(part_jobs | chain_jobs | {summary_job}) == 5
    assert all("cpus=1" in ln for ln in parts) and "cpus=2" in summary, "threads -> --cpus-per-task"

    # The accounting database saw every job, completed, with the requested resources.
    jobs = {
        j["JobIDRaw"]: j
        for j in _sacct(cluster, "JobIDRaw", "JobName", "State", "ReqMem", "ReqCPUS", "Partition", "Account", "Comment")
    }
    for jid in part_jobs | chain_jobs | {summary_job}:
        assert jid in jobs, f"SLURM job {jid} missing from sacct"
        job = jobs[jid]
        assert job["State"] == "COMPLETED", job
        assert job["Partition"] == cluster["partition"], job
        if cluster["account"]:
            assert job["Account"] == cluster["account"], job
    for jid in part_jobs:
        assert jobs[jid]["ReqMem"].startswith("300M") and jobs[jid]["ReqCPUS"] == "1", jobs[jid]
    assert jobs[summary_job]["ReqCPUS"] == "2", jobs[summary_job]
    assert jobs[summary_job]["Comment"] == "rule_summary", jobs[summary_job]  # the plugin's --comment
    # One SLURM log per submission: 3 parts + 1 group + 1 summary.
    logs = list((tmp_path / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(logs) == 5, logs

    # Nothing left to do: a second run submits nothing.
    again = _snakemake(_mini_args(cluster), _env(cluster), tmp_path)
    assert again.returncode == 0, _fail(again, "no-op rerun failed")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_failed_job_is_reported(tmp_path, cluster):
    """A job that exits non-zero on the cluster fails the run and leaves no output behind."""
    (tmp_path / "Snakefile").write_text(MINI)
    out = _snakemake(_mini_args(cluster, "out/broken.txt"), _env(cluster), tmp_path)
    assert out.returncode != 0, _fail(out, "a failing SLURM job was reported as success")
    text = out.stdout + out.stderr
    assert "Error in rule broken" in text, text[-4000:]
    assert not (tmp_path / "out" / "broken.txt").exists(), "the failed job's output was kept"
    ids = _log_job_ids(tmp_path, "broken")
    assert len(ids) == 1, ids  # --retries 0 here: one submission
    states = {j["JobIDRaw"]: j["State"] for j in _sacct(cluster, "JobIDRaw", "State", "ExitCode")}
    assert states.get(ids[0]) == "FAILED", (ids, states)


# ------------------------------------------------------------------ stops and resumes (the hooks)


def _alive(workdir: Path) -> list[str]:
    """Ids of this machine's queued or running SLURM jobs started from `workdir`."""
    rows = [line.split("|") for line in _out("squeue", "-h", "-o", "%i|%Z").splitlines()]
    return [jid for jid, wd in rows if wd == str(workdir)]


def _start(args: list[str], env: dict, workdir: Path, name: str) -> subprocess.Popen:
    # SIGINT back to its default in the run: a suite started in the background of a
    # non-interactive shell inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt, so the run would ignore its Ctrl-C.
    with open(workdir / name, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "snakemake", *args],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def _stop_when(proc: subprocess.Popen, ready, sig: int, timeout: float = 300) -> None:
    """Send `sig` to the run's process group once `ready()` holds (SIGINT is a user's Ctrl-C)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before it could be stopped"
        assert time.monotonic() < deadline, f"not ready to stop within {timeout} s"
        time.sleep(0.2)
    os.killpg(proc.pid, sig)
    proc.wait(timeout=120)


def _gone(workdir: Path, timeout: float = 30) -> list[str]:
    """Jobs of `workdir` still alive after `timeout` s (scancel takes a moment)."""
    deadline = time.monotonic() + timeout
    while _alive(workdir) and time.monotonic() < deadline:
        time.sleep(0.5)
    return _alive(workdir)


def test_a_stopped_run_resumes_without_resubmitting_finished_jobs(tmp_path, cluster):
    """The workflow's hooks on 30-second jobs: after a kill -9 of Snakemake its jobs go on and the
    next run refuses to start beside them, naming them and the scancel command; a Ctrl-C cancels
    the jobs it leaves; the resumed run submits no finished job again."""
    (tmp_path / "Snakefile").write_text(MINI)
    args, env = _mini_args(cluster, "--nolock", "out/slow.txt"), _env(cluster)
    killed = _start(args, env, tmp_path, "killed.log")
    _stop_when(killed, lambda: (tmp_path / "out" / "part0.txt").exists() and len(_alive(tmp_path)) == 2, signal.SIGKILL)
    orphans = _alive(tmp_path)
    assert len(orphans) == 2, "a kill -9 of Snakemake leaves its jobs running"
    refused = _snakemake(args, env, tmp_path)
    text = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "still queued or running" in text, _fail(refused, "ran beside the orphans")
    named = re.search(r"scancel ([\d ]+)\)", text).group(1).split()
    assert sorted(named) == sorted(orphans)
    subprocess.run(["scancel", *named], check=True, timeout=60)  # what the message says to do
    assert not _gone(tmp_path)

    interrupted = _start(args, env, tmp_path, "interrupted.log")
    _stop_when(interrupted, lambda: len(_alive(tmp_path)) == 2, signal.SIGINT)
    log = (tmp_path / "interrupted.log").read_text()
    assert interrupted.returncode != 0, f"the interrupted run claims success:\n{log[-3000:]}"
    assert not _gone(tmp_path), f"Ctrl-C left jobs running:\n{log[-3000:]}"

    done = (tmp_path / "out" / "part0.txt").stat().st_mtime_ns
    resumed = _snakemake(args, env, tmp_path)
    assert resumed.returncode == 0, _fail(resumed, "the resumed run failed")
    assert (tmp_path / "out" / "part0.txt").stat().st_mtime_ns == done, "a finished output was rewritten"
    assert len(_log_job_ids(tmp_path, "part")) == 1, "the finished job was submitted again"
    assert len((tmp_path / "out" / "slow.txt").read_text().splitlines()) == 2


# ------------------------------------------------------------------ the tyr workflow on the cluster

GROUPS = "supernet_layer=layers_s{target}_i{iter}"  # docs/slurm.md, "Grouping": one SLURM job per chain
# Small requests that fit the local node; no GPU there.
CPU_ONLY = {"TYR_SLURM_GPUS": "0", "TYR_SLURM_CPUS": "1", "TYR_SLURM_MEM_MB": "3000"}


def _tyr_args(workdir: Path, *extra: str) -> list[str]:
    tiny = ROOT / "config" / "presets" / "tiny.yaml"
    return [
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(workdir),
        "--profile",
        str(PROFILE),
        "--configfile",
        str(tiny),
        str(workdir / "test.yaml"),
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--seconds-between-status-checks",
        "1",
        "--latency-wait",
        "10",
        *extra,
    ]


@pytest.fixture(scope="module")
def tyr_workdir(tmp_path_factory):
    """One workdir for the module's tyr runs, so prepare_model is submitted once."""
    from tyr.testing import save_tiny_model

    workdir = tmp_path_factory.mktemp("tyr-slurm")
    model_dir = save_tiny_model(workdir / "tiny-llama")
    cfg = {
        "run": "tiny",
        "model": {"source": str(model_dir)},
        "data": {
            "source": "pydoc",
            "seq_len": 32,
            "prune_sequences": 4,
            "fitness_sequences": 8,
            "heldout_sequences": 2,
        },
    }
    (workdir / "test.yaml").write_text(yaml.safe_dump(cfg))
    return workdir


def test_tyr_first_stages_on_slurm(tyr_workdir, cluster):
    """Model, calibration and iteration 1's supernet through profiles/slurm, the per-layer jobs
    grouped as docs/slurm.md recommends: every job a SLURM job of the profile's size, the three
    layer jobs one SLURM job, `run:` steps working under slurm-jobstep."""
    run = tyr_workdir / "results" / "tiny"
    target = "results/tiny/s50/iter1/supernet/supernet.json"
    args = _tyr_args(tyr_workdir, target, "--groups", GROUPS, "--slurm-keep-successful-logs")
    out = _snakemake(args, _env(cluster, **CPU_ONLY), tyr_workdir)
    assert out.returncode == 0, _fail(out, "the tyr workflow's first stages on SLURM failed")
    import zarr

    root = zarr.open_group(str(run / "calib" / "tokens.zarr"), mode="r")
    sizes = {name: tuple(arr.shape) for name, arr in root.arrays()}
    assert sizes == {"prune": (4, 32), "fitness": (8, 32), "selection": (4, 32), "heldout": (2, 32)}, sizes
    assert (run / "s50" / "iter1" / "supernet" / "supernet.json").is_file()
    ids = {rule: _log_job_ids(tyr_workdir, rule) for rule in ("prepare_model", "calibrate", "embed")}
    assert all(len(v) == 1 for v in ids.values()), ids
    layers = list((tyr_workdir / ".snakemake" / "slurm_logs").glob("group_layers_s50_i1*/**/*.log"))
    assert len(layers) == 1, "the three layer jobs are one SLURM job"
    jobs = {j["JobIDRaw"]: j for j in _sacct(cluster, "JobIDRaw", "State", "ReqMem", "ReqCPUS", "Comment")}
    for rule, (jid,) in ids.items():
        job = jobs.get(jid)
        assert job and job["State"] == "COMPLETED" and job["Comment"] == f"rule_{rule}", (rule, job)
        assert job["ReqMem"].startswith("3000M") and job["ReqCPUS"] == "1", job


def test_profile_requests_gpus_for_heavy_rules(tyr_workdir, cluster):
    """With TYR_SLURM_GPUS unset, dense_topk asks for --gpus=1: the local cluster has no GPU, so its
    submission is rejected by sbatch, which proves the request."""
    env = _env(cluster, **CPU_ONLY)
    env.pop("TYR_SLURM_GPUS")
    out = _snakemake(
        _tyr_args(tyr_workdir, "results/tiny/dense/topk.zarr", "--retries", "0", "--verbose"),
        env,
        tyr_workdir,
        timeout=300,
    )
    text = out.stdout + out.stderr
    if out.returncode == 0:  # a cluster with GPUs: the job must have run on one
        assert "--gpus=1" in text, text[-4000:]
        return
    assert "SLURM sbatch failed" in text and "generic resource" in text, text[-4000:]
    assert re.search(r"sbatch .*--comment rule_dense_topk .*--gpus=1", text), text[-4000:]
    assert not (tyr_workdir / "results" / "tiny" / "dense" / "topk.zarr").exists()

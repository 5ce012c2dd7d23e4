"""Random-point kill trials: kill -9 the tiny workflow at a random moment, rerun, check.

    python bench/kill_trials.py [--trials 20] [--seed 0] [--cores 2] [--search-share 0.5]
    python bench/kill_trials.py --signal TERM --trials 10
    python bench/kill_trials.py --smoke

`--signal TERM` sends SIGTERM instead, as SLURM does at a time limit or on preemption, to the
process that runs the jobs (locally the Snakemake process: its jobs are threads of it), and
waits for it to exit: Snakemake finishes the running jobs and a running search stops at its
next checkpoint (tyr.core.signals). Then the same checks, plus: the run exited within
TERM_GRACE_S (SLURM's default KillWait is 30 s), and every search it interrupted says in its log
that it stopped at a checkpoint. Writes ...-sigterm-trials.{md,json}.

An uninterrupted run of the tiny preset on a tiny random model is the reference. Each trial
starts the same run in a fresh folder, kills its whole process group at a random moment, records
every finished artifact, and reruns the same command to completion. Half the moments (by
default) are uniform over the reference's wall time; the other half are aimed inside a search
(a random iteration and generation), since a uniform time rarely lands in one. A draw that comes
after the run has ended kills nothing and is drawn again, so every trial is a real kill.
A trial passes when
  1. the final genomes, pruned weights and evaluation figures equal the reference's;
  2. no finished job's output of any kind (safetensors, zarr, JSON, state.json, TSV) was
     rewritten (its mtime is unchanged);
  3. a search killed mid-way continued from its checkpoint: its rerun ran only the generations
     the checkpoint lacked, and the checkpoint's earlier history is unchanged.
Writes bench/results/<date>-<host>-kill-trials.{md,json}. The runs see no evaluation data
(TYR_DATA_DIR is dropped), so they depend on nothing outside the temp folder.
--smoke: the command dry-run, and the checks' bookkeeping (finished artifacts, an interrupted
search, the final figures) on a tiny finished run.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lib import args as cli
from lib import results, snakemake
from lib.config import TINY
from lib.env import child_env, setup
from lib.tinyrun import tiny_run

from tyr.testing import incomplete_outputs

RUN = "tiny"
GENERATIONS = 12  # longer searches than the tiny preset's, so that kills land inside them too
SKIP = ("logs", "benchmarks", "acts")  # logs are rewritten by design; acts are temporary
TERM_GRACE_S = 30  # SLURM's default KillWait between SIGTERM and SIGKILL


def command(workdir: Path, cores: int, dry_run: bool = False) -> list[str]:
    return snakemake.command(workdir, cores=cores, configfiles=[TINY, workdir / "run.yaml"], dry_run=dry_run)


def prepare(workdir: Path, model: Path) -> None:
    workdir.mkdir(parents=True)
    (workdir / "run.yaml").write_text(
        json.dumps(
            {
                "run": RUN,
                "model": {"source": str(model)},
                "search": {"generations": GENERATIONS},
                "evaluate": {"speed": False},
            }
        )
    )


def env() -> dict:
    return child_env(keep_data_dir=False)


def owner(path: Path, run: Path) -> Path:
    """The declared output a file belongs to: its folder output, its layer's manifest, its
    search's best.json, or itself."""
    rel = path.relative_to(run).parts
    for i, part in enumerate(rel):
        if part.endswith(".zarr") or part in ("model", "pruned"):
            return run.joinpath(*rel[: i + 1])
        if part.startswith("layer") and i > 0 and rel[i - 1] == "supernet":
            return run.joinpath(*rel[: i + 1], "manifest.json")
        if part == "search":
            return run.joinpath(*rel[: i + 1], "best.json")
    return path


def finished(workdir: Path) -> dict[str, int]:
    """mtime of every file whose producing job Snakemake recorded as finished."""
    run, unfinished = workdir / "results" / RUN, incomplete_outputs(workdir)
    out = {}
    for p in run.rglob("*") if run.exists() else ():
        rel = p.relative_to(run)
        if not p.is_file() or rel.parts[0] in SKIP or any(part in SKIP for part in rel.parts) or p.name.startswith("."):
            continue
        o = owner(p, run)
        # A file inside a folder output of a job Snakemake marked incomplete (report/plots/) is
        # unfinished too: the rerun deletes and rewrites that folder, as it should.
        if o.exists() and o.resolve() not in unfinished and not unfinished & set(p.resolve().parents):
            out[str(rel)] = p.stat().st_mtime_ns
    return out


def searches(workdir: Path) -> dict[str, dict]:
    """Unfinished searches: generations in their checkpoint (and its history) at the kill."""
    run = workdir / "results" / RUN
    return {
        str(s.parent.relative_to(run)): json.loads(s.read_text())
        for s in run.glob("s*/iter*/search/state.json")
        if not (s.parent / "best.json").exists()
    }


def final(workdir: Path) -> dict:
    """What a run ends with: genomes, pruned tensors (hashed), evaluation figures."""
    import hashlib

    from safetensors import safe_open

    run, out = workdir / "results" / RUN, {}
    for method in ("tyr", "uniform"):
        base = run / "s50" / method
        out[f"{method}/genome"] = json.loads((base / "genome.json").read_text())["layers"]
        with safe_open(str(base / "pruned" / "model.safetensors"), framework="pt") as f:
            out[f"{method}/weights"] = {
                k: hashlib.sha256(f.get_tensor(k).numpy().tobytes()).hexdigest() for k in f.keys()
            }
        summary = json.loads((base / "eval" / "summary.json").read_text())
        out[f"{method}/perplexity"] = {k: v["pruned"] for k, v in summary["perplexity"].items()}
    return out


def wait_for(proc: subprocess.Popen, trigger: dict, workdir: Path) -> None:
    """Sleep until the trigger: a time after the start, or a search's checkpoint reaching a
    generation. A tiny search runs a generation in tens of milliseconds, so the checkpoint is
    polled every 10 ms and the kill follows at once (a half-second delay let most searches end)."""
    if trigger["kind"] == "time":
        time.sleep(trigger["delay"])
        return
    state = workdir / "results" / RUN / "s50" / f"iter{trigger['iter']}" / "search" / "state.json"
    while proc.poll() is None:
        try:
            if json.loads(state.read_text())["generation"] >= trigger["generation"]:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)


def stop(proc: subprocess.Popen, how: str) -> dict:
    """KILL: the whole process group at once. TERM: the Snakemake process, then wait for it to
    exit (SIGKILL after TERM_GRACE_S, as SLURM would: the trial then fails)."""
    if how == "KILL":
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return {}
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=TERM_GRACE_S)
        return {"exit_seconds": round(time.perf_counter() - t0, 2), "exited": True}
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return {"exit_seconds": None, "exited": False}


def search_log(workdir: Path, rel: str) -> Path:
    """The log of the search whose folder is `rel` (s50/iter1/search -> logs/s50/iter1/search.log)."""
    return workdir / "results" / RUN / "logs" / rel.replace("/search", "") / "search.log"


def stopped_at_checkpoint(workdir: Path, rel: str) -> bool:
    """The search's log says it stopped on SIGTERM at a checkpoint (tyr.core.signals)."""
    log = search_log(workdir, rel)
    return log.exists() and "stopped by SIGTERM" in log.read_text()


def trial(model: Path, workdir: Path, trigger: dict, cores: int, reference: dict, how: str = "KILL") -> dict | None:
    """One kill and rerun; None when the run ended before the trigger (nothing was killed)."""
    prepare(workdir, model)
    proc = subprocess.Popen(
        command(workdir, cores), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), start_new_session=True
    )
    wait_for(proc, trigger, workdir)
    if proc.poll() is not None:
        return None
    stopped = stop(proc, how)
    before, mid_search = finished(workdir), searches(workdir)
    if how == "TERM":
        stopped["searches_stopped_at_checkpoint"] = {rel: stopped_at_checkpoint(workdir, rel) for rel in mid_search}
    subprocess.run(command(workdir, cores), check=True, capture_output=True, env=env())
    after = finished(workdir)
    rewritten = sorted(k for k, m in before.items() if after.get(k) != m)
    resumed = {}
    for rel, state in mid_search.items():
        total = json.loads((workdir / "results" / RUN / rel / "state.json").read_text())
        log = search_log(workdir, rel)
        gens = [int(g) for g in re.findall(r"gen (\d+)/", log.read_text())] if log.exists() else []
        resumed[rel] = {
            "at_kill": state["generation"],
            "total": total["generation"],
            "rerun_generations": gens,
            "history_kept": total["history"][: state["generation"]] == state["history"],
        }
    continued = all(
        r["history_kept"] and (not r["rerun_generations"] or min(r["rerun_generations"]) == r["at_kill"] + 1)
        for r in resumed.values()
    )
    same = final(workdir) == reference
    graceful = how == "KILL" or (stopped["exited"] and all(stopped["searches_stopped_at_checkpoint"].values()))
    return {
        "trigger": trigger,
        "signal": how,
        **stopped,
        "finished_before": len(before),
        "rewritten": rewritten,
        "searches_resumed": resumed,
        "identical": same,
        "continued": continued,
        "passed": same and not rewritten and continued and graceful,
    }


def draw(rng: random.Random, wall: float, in_search: bool) -> dict:
    """A kill at a uniform time over the reference run, or inside a search: iteration 1 or 2 of
    the 50% target, once its checkpoint holds a uniform generation of the 12."""
    if not in_search:
        return {"kind": "time", "delay": round(rng.uniform(0, wall), 2)}
    return {"kind": "search", "iter": rng.choice([1, 2]), "generation": rng.randint(0, GENERATIONS - 1)}


def main(argv=None):
    ap = cli.parser(__doc__)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument(
        "--search-share",
        type=float,
        default=0.5,
        help="share of the kills aimed inside a search (at a random generation)",
    )
    ap.add_argument("--signal", choices=("KILL", "TERM"), default="KILL", help="SIGKILL the group, or SIGTERM")
    args = ap.parse_args(argv)
    setup()
    with cli.workspace(args) as scratch:
        if args.smoke:
            return smoke(scratch, args)
        with tempfile.TemporaryDirectory() as tmp:
            wall, rows = run_trials(Path(tmp), args)
        report(wall, rows, args.out, args.signal)


def run_trials(tmp: Path, args) -> tuple[float, list[dict]]:
    """The reference run, then kills until `args.trials` of them landed in a running workflow."""
    from tyr.testing import save_tiny_model

    rng = random.Random(args.seed)
    model = save_tiny_model(tmp / "model")
    prepare(tmp / "ref", model)
    t0 = time.perf_counter()
    subprocess.run(command(tmp / "ref", args.cores), check=True, capture_output=True, env=env())
    wall = time.perf_counter() - t0
    reference = final(tmp / "ref")
    rows, drawn = [], 0
    while len(rows) < args.trials:
        trigger = draw(rng, wall, len(rows) < args.trials * args.search_share)
        row = trial(model, tmp / f"t{drawn}", trigger, args.cores, reference, args.signal)
        drawn += 1
        if row is None:  # the run finished before the kill: not a trial
            print(f"[kill] draw {drawn}: {trigger} came after the run ended; drawn again", file=sys.stderr)
            continue
        rows.append(row)
        print(f"[kill] trial {len(rows)}: {json.dumps(row)[:300]}", file=sys.stderr, flush=True)
    return wall, rows


def report(wall: float, rows: list[dict], out, how: str = "KILL") -> None:
    passed = sum(r["passed"] for r in rows)
    title = "SIGTERM trials (as SLURM at a time limit or preemption)" if how == "TERM" else "Random-point kill trials"
    lines = [
        f"# {title}",
        "",
        f"`{' '.join(sys.argv)}`",
        "",
        f"Reference run {wall:.0f} s; {passed} of {len(rows)} trials passed every check.",
        "",
        "| trial | kill at | finished artifacts at kill | rewritten | searches resumed | identical | passed |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, r in enumerate(rows, 1):
        res = "; ".join(f"{rel}: gen {v['at_kill']}→{v['total']}" for rel, v in r["searches_resumed"].items()) or "–"
        t = r["trigger"]
        at = f"{t['delay']} s" if t["kind"] == "time" else f"iter{t['iter']} search, gen ≥ {t['generation']}"
        lines.append(
            f"| {k} | {at} | {r['finished_before']} | {len(r['rewritten'])} | {res} | {r['identical']} | "
            f"{r['passed']} |"
        )
    resumed = sum(bool(r["searches_resumed"]) for r in rows)
    lines += [
        "",
        f"{resumed} of {len(rows)} kills landed in a running search; each such search continued from its",
        "checkpoint (only the missing generations ran after the kill, and its history was kept).",
    ]
    if how == "TERM":
        exits = sorted(r["exit_seconds"] for r in rows if r["exit_seconds"] is not None)
        stopped = sum(len(r["searches_stopped_at_checkpoint"]) for r in rows)
        lines += [
            "",
            f"After SIGTERM the run exited in {exits[0] if exits else '–'}–{exits[-1] if exits else '–'} s "
            f"(limit {TERM_GRACE_S} s, SLURM's default KillWait); {stopped} searches stopped at a checkpoint "
            "and said so in their log.",
        ]
    name = "sigterm-trials" if how == "TERM" else "kill-trials"
    results.write(name, lines, {"wall_reference": wall, "passed": passed, "trials": rows}, out=out)


def smoke(tmp: Path, args) -> None:
    """The command (dry-run) and the bookkeeping every trial rests on, on a tiny finished run: its
    artifacts count as finished, the final figures of two copies agree, and a search without its
    best.json is seen as interrupted at its checkpoint's generation."""
    from tyr.testing import save_tiny_model

    prepare(tmp / "wf", save_tiny_model(tmp / "model"))
    subprocess.run(command(tmp / "wf", 1, dry_run=True), check=True, capture_output=True, env=env())
    ref, kill = tmp / "ref", tmp / "kill"
    for w in (ref, kill):
        tiny_run(w / "results" / RUN)
    if final(ref) != final(kill) or not finished(ref):
        raise RuntimeError("two copies of one run differ, or nothing of a finished run counts as finished")
    (kill / "results" / RUN / "s50" / "iter1" / "search" / "best.json").unlink()
    mid = searches(kill)
    if list(mid) != ["s50/iter1/search"] or "s50/iter1/search/best.json" in finished(kill):
        raise RuntimeError(f"an interrupted search was not seen as one: {list(mid)}")
    draws = [draw(random.Random(0), 10.0, in_search) for in_search in (True, False)]
    report(
        10.0,
        [
            {
                "trigger": t,
                "finished_before": len(finished(kill)),
                "rewritten": [],
                "identical": True,
                "searches_resumed": {},
                "continued": True,
                "passed": True,
            }
            for t in draws
        ],
        args.out,
    )


if __name__ == "__main__":
    main()

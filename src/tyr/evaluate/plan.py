"""Where every evaluation input comes from, decided once, when the configuration is parsed.

A run must never fail after hours of work because an evaluation file is missing, and a
reported number must never change meaning silently. So the workflow resolves the
`evaluate:` section to a *plan* before any job runs, logs it in one line, passes it to the
evaluation jobs as params (a changed plan reruns exactly the evaluations), and every
figure is stored under the name of the data set it was measured on.

Perplexity data sets (each one a key of `perplexity` in eval.json and summary.json):
  heldout    the run's own calibration `heldout` split: token sequences that neither the
             pruning Hessians nor the search ever saw; always available, offline or not
             (`evaluate.heldout: false` or `data.heldout_sequences: 0` turns it off)
  wikitext2  WikiText-2 test. `evaluate.wikitext`: a local file; `auto` takes
             $TYR_DATA_DIR/wikitext-2/test.txt when present, else the hub's raw test split
             when the hub is reachable, else nothing (said in the plan); `none` skips it
Zero-shot tasks: `evaluate.zeroshot_dir` a folder of AI2 jsonl files (scored offline); `auto`
takes $TYR_DATA_DIR/zeroshot when present, else lm-eval's own hub tasks when the hub is
reachable, else every task is skipped, with the reason recorded next to the results.

Light imports only: the Snakefile imports this module at parse time.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "TYR_DATA_DIR"
HUB_WIKITEXT = "wikitext2"  # tyr.calib.sources's name of the hub's wikitext-2-raw-v1


class PlanError(ValueError):
    pass


def data_dir() -> Path | None:
    """$TYR_DATA_DIR: the one place a user (or CI) puts offline copies of evaluation data."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else None


def hub_reason() -> str | None:
    """Why the hub cannot be used (None when it can); a HEAD request of a few seconds at most."""
    from tyr.core.hub import hub_unreachable

    return hub_unreachable(datasets=True)


def resolve(evaluate: dict, data: dict, *, hub=hub_reason) -> dict:
    """The evaluation plan of an `evaluate:` config section (see the module docstring).

    `hub` is called at most once, and only when a choice depends on the hub.
    """
    hub_state = {}

    def offline():
        if "reason" not in hub_state:
            hub_state["reason"] = hub()
        return hub_state["reason"]

    plan = {"perplexity": {}, "skipped": {}}
    if evaluate.get("heldout", True) and data.get("heldout_sequences", 0) > 0:
        plan["perplexity"]["heldout"] = {
            "source": "heldout",
            "label": f"calibration held-out split ({_source_label(data['source'])}, "
            f"{data['heldout_sequences']} × {data['seq_len']} tokens never used for pruning or search)",
        }
    wikitext = _wikitext(evaluate["wikitext"], offline)
    if isinstance(wikitext, dict):
        plan["perplexity"]["wikitext2"] = wikitext
    elif wikitext:
        plan["skipped"]["wikitext2"] = wikitext
    plan["zeroshot"] = _zeroshot(evaluate, offline)
    plan["skipped"].update(plan["zeroshot"].pop("skipped"))
    return plan


def _wikitext(value: str, offline):
    """The WikiText-2 entry, or a string saying why there is none (None: not asked for)."""
    if value == "none":
        return None
    if value not in ("auto", HUB_WIKITEXT):
        return {"source": value, "label": f"WikiText-2 test ({value})"}
    local = data_dir() / "wikitext-2" / "test.txt" if data_dir() else None
    if value == "auto" and local and local.is_file():
        return {"source": str(local), "label": f"WikiText-2 test (${DATA_DIR_ENV}: {local})"}
    reason = offline()
    if reason is None:
        return {"source": HUB_WIKITEXT, "label": "WikiText-2 test (hub: wikitext-2-raw-v1)"}
    if value == HUB_WIKITEXT:  # asked for by name: stop now, before any work, not after it
        raise PlanError(
            f"evaluate.wikitext: 'wikitext2' needs the hub ({reason}); set it to a local file, 'auto' or 'none'"
        )
    return (
        f"no local copy (${DATA_DIR_ENV}/wikitext-2/test.txt) and the hub is unavailable ({reason}); "
        f"set evaluate.wikitext to a local file or ${DATA_DIR_ENV}"
    )


def _zeroshot(evaluate: dict, offline) -> dict:
    tasks, value = list(evaluate.get("zeroshot_tasks") or []), evaluate["zeroshot_dir"]
    out = {"tasks": [], "dir": None, "skipped": {}}
    if not tasks or value == "none":
        return out
    if value != "auto":
        return {**out, "tasks": tasks, "dir": value}
    local = data_dir() / "zeroshot" if data_dir() else None
    if local and local.is_dir():
        have = [t for t in tasks if _task_files_present(local, t)]
        rest = [t for t in tasks if t not in have]
        out.update(tasks=have, dir=str(local))
        if rest and offline() is None:  # the others from lm-eval's hub tasks
            out["tasks"] += rest
            rest = []
        out["skipped"] = {f"zeroshot:{t}": f"no file for it in {local} and the hub is unavailable" for t in rest}
        return out
    reason = offline()
    if reason is None:
        return {**out, "tasks": tasks}
    out["skipped"] = {
        f"zeroshot:{t}": f"no local data (${DATA_DIR_ENV}/zeroshot) and the hub is unavailable ({reason})"
        for t in tasks
    }
    return out


def _task_files_present(folder: Path, task: str) -> bool:
    from tyr.evaluate.tasks import LOCAL, task_files

    return task in LOCAL and all((folder / f).is_file() for f in task_files(task))


def _source_label(source) -> str:
    return ", ".join(source) if isinstance(source, list) else str(source)


def describe(plan: dict) -> str:
    """The plan in one line, for the log of every run."""
    parts = [f"perplexity on {', '.join(v['label'] for v in plan['perplexity'].values()) or 'nothing'}"]
    zs = plan["zeroshot"]
    if zs["tasks"]:
        parts.append(f"zero-shot {', '.join(zs['tasks'])} from {zs['dir'] or 'the hub (lm-eval tasks)'}")
    by_reason = {}
    for name, reason in plan["skipped"].items():
        by_reason.setdefault(reason, []).append(name)
    parts += [f"{', '.join(names)} skipped: {reason}" for reason, names in by_reason.items()]
    return "evaluation: " + "; ".join(parts)

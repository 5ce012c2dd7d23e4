"""The run plan: what a run's configuration resolves to, decided once per run and frozen.

A SLURM job parses the Snakefile again on its compute node, which may have no internet or
another $TYR_DATA_DIR than the login node: resolved there, the configuration checks (a hub
probe for a hub data set) and the evaluation plan (`tyr.evaluate.plan`) could come out
differently from what the main process planned. So the main Snakemake process resolves

  model       the configured source and its depth (the DAG is unrolled per layer)
  data        the text sources the configuration names (checked by `tyr.workflow.config`)
  evaluation  where every evaluation input comes from

and its `onstart` hook freezes that in `results/<run>/plan.json`; jobs only read it. A later
run re-resolves, says before any job what differs from the frozen plan (the rules' params
carry the parts they use, so exactly the jobs the difference touches rerun), and refuses a
folder whose model came from another source or depth: its files belong to another model.

Light imports only: the Snakefile imports this module at parse time.
"""

from __future__ import annotations

import json
from pathlib import Path

from tyr.core.io import write_json
from tyr.evaluate import plan as evalplan
from tyr.workflow import config as tyrconf

FILE = "plan.json"


class StaleFolder(ValueError):
    """A results folder whose files were made from another model than the configured one."""


def path(run_dir) -> Path:
    return Path(run_dir) / FILE


def read(run_dir) -> dict | None:
    p = path(run_dir)
    return json.loads(p.read_text()) if p.is_file() else None


def resolve(config, run_dir) -> dict:
    """The plan of `config` for the folder `run_dir` (main process only: it may probe the hub).
    Raises ConfigError, PlanError or StaleFolder, each naming the key or the folder."""
    tyrconf.check(config)
    return {
        "model": _model(config["model"]["source"], Path(run_dir)),
        "data": {"source": config["data"]["source"], "share_text": config["search"]["share_text"]},
        "evaluation": evalplan.resolve(config["evaluate"], config["data"]),
    }


def _model(source: str, run_dir: Path) -> dict:
    frozen = read(run_dir)
    if frozen and frozen["model"]["source"] != source:
        raise StaleFolder(
            f"{run_dir} holds a run of model {frozen['model']['source']!r}, but model.source is {source!r} "
            f"(recorded in {path(run_dir)}): its files belong to the other model. Give this run another "
            f"name (run: ...) or remove {run_dir} to start it over"
        )
    hub_id = source != "embedded" and not tyrconf.looks_local(source)
    layers = frozen["model"]["num_layers"] if frozen and hub_id else tyrconf.num_layers(source)
    spec = run_dir / "model" / "spec.json"
    if spec.is_file() and (prepared := json.loads(spec.read_text())["num_layers"]) != layers:
        raise StaleFolder(
            f"{run_dir}: its prepared model ({spec}) has {prepared} layers, but model.source {source!r} has "
            f"{layers}: the folder was made from another model. Give this run another name (run: ...) "
            f"or remove {run_dir} to start it over"
        )
    return {"source": source, "num_layers": layers}


def differences(old: dict | None, new: dict) -> list[str]:
    """`key: old -> new` for every leaf of the plan that changed (nothing when `old` is None)."""
    if old is None:
        return []
    a, b = _leaves(old), _leaves(new)
    return [
        f"{k}: {a.get(k, '(none)')} -> {b.get(k, '(none)')}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k)
    ]


def _leaves(d, prefix="") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):  # an empty section has no leaves (no "skipped: (none) -> {}" line)
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def freeze(run_dir, plan: dict) -> None:
    """Write the plan for the jobs of this run (the onstart hook, before any job)."""
    if read(run_dir) != plan:
        write_json(path(run_dir), plan)


def load(run_dir) -> dict:
    """The frozen plan, in a job: never resolved again on a compute node."""
    plan = read(run_dir)
    if plan is None:
        raise FileNotFoundError(
            f"{path(run_dir)} is missing: a job reads the plan its run froze at the start; start the "
            f"run with snakemake from the main process (it writes {FILE}), not a job on its own"
        )
    return plan

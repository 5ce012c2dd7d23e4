"""Zero-shot accuracy of one model through lm-eval's `simple_evaluate`: offline from the AI2
jsonl files of a folder (tyr.evaluate.tasks), or lm-eval's own hub tasks."""

from __future__ import annotations

import statistics
from pathlib import Path

METRICS = ("acc", "acc_norm")


def zeroshot(model, tasks, *, data_dir=None, limit=None, batch_size=8, tokenizer=None, device="cpu") -> dict:
    """acc / acc_norm per task through lm-eval's `simple_evaluate`.

    `model` is a model folder (loaded by HFLM with trust_remote_code) or a loaded model
    (then `tokenizer` is required). With `data_dir`, the tasks tyr has local versions of are scored
    offline from the AI2 jsonl files there (`tyr.evaluate.tasks.LOCAL`); other names (and all names when `data_dir` is
    None) are lm-eval registry tasks that need the hub.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from tyr.evaluate import tasks as local_tasks

    specs, names = _task_specs(tasks, data_dir)
    if isinstance(model, (str, Path)):
        lm = HFLM(pretrained=str(model), trust_remote_code=True, batch_size=batch_size, device=device, dtype="auto")
    else:
        if tokenizer is None:
            raise ValueError("zeroshot: a loaded model needs its tokenizer")
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    # Indexing lm-eval's thousands of built-in YAMLs takes seconds: only when a hub task needs it.
    needs_registry = any(isinstance(s, str) for s in specs)
    manager = TaskManager(include_path=str(local_tasks.FOLDER), include_defaults=needs_registry)
    out = lm_eval.simple_evaluate(
        model=lm, tasks=specs, limit=limit, task_manager=manager, log_samples=False, verbosity="WARNING"
    )
    return {name: _task_result(out, task, limit) for name, task in names.items()}


def _task_specs(tasks, data_dir):
    """lm-eval task specs and {reported name: lm-eval task name}."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from tyr.evaluate import tasks as local_tasks

    specs, names = [], {}
    for name in tasks:
        local = local_tasks.LOCAL.get(name)
        if data_dir is not None and local:
            cfg = load_yaml(local_tasks.FOLDER / f"{local}.yaml", resolve_func=True)
            files = cfg["dataset_kwargs"]["data_files"]
            cfg["dataset_kwargs"] = {"data_files": {s: str(Path(data_dir) / f) for s, f in files.items()}}
            for f in cfg["dataset_kwargs"]["data_files"].values():
                if not Path(f).is_file():
                    raise FileNotFoundError(f"zero-shot task {name}: {f} not found")
            specs.append(cfg)
            names[name] = local
        else:
            specs.append(name)
            names[name] = name
    return specs, names


def _task_result(out, task, limit) -> dict:
    res = out["results"][task]
    n = out.get("n-samples", {}).get(task, {}).get("effective")
    row = {"n": n, "limit": limit}
    for m in METRICS:
        row[m] = float(res[f"{m},none"])
        row[f"{m}_stderr"] = _float_or_none(res.get(f"{m}_stderr,none"))
    return row


def _float_or_none(x):
    try:
        return float(x)
    except (TypeError, ValueError):  # lm-eval writes "N/A" when it has no stderr
        return None


def average(zs: dict) -> dict:
    """Unweighted mean over tasks of acc and acc_norm (the usual zero-shot "average")."""
    return {m: statistics.fmean(r[m] for r in zs.values()) for m in METRICS} if zs else {}

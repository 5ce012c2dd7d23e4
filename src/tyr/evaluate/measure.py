"""Evaluation of one model, dense or pruned: perplexity, zero-shot accuracy, speed, continuations.

Loading: a dense source checkpoint (llama, qwen2, ...) is loaded into tyr's
`TyrForCausalLM` (`tyr.model.adapter.load_model`), and an export (a `TyrConfig` in config.json) through
`AutoModelForCausalLM(..., trust_remote_code=True)`, i.e. its copied `modeling_tyr.py`. Both
therefore run the same forward code, so speed-ups measure pruning, not implementations.

Perplexity protocol (WikiText-2 test, as in GPTQ/SparseGPT/Wanda, documented exactly):
  1. documents are joined with "\\n\\n" (tyr.calib.sources reads WikiText-2, local file or hub split,
     as ONE document: the split's text verbatim), and tokenized once with the tokenizer's
     defaults (a BOS is prepended only if the tokenizer does so by default);
  2. the ids are cut into non-overlapping windows of `seq_len` tokens (capped at the
     model's max_position_embeddings); the trailing partial window is dropped;
  3. every window is scored independently (no context carried over): the mean token NLL
     over all `seq_len - 1` predictions of all windows; perplexity = exp(mean NLL).
  `max_windows` evaluates only the first windows (a documented subset, for CPU budgets).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

from tyr.calib.stores import HELDOUT
from tyr.core.io import read_json, write_json

log = logging.getLogger("tyr.evaluate.measure")

METRICS = ("acc", "acc_norm")


# ---- loading ---------------------------------------------------------------------------------


def load(model_dir, *, device="cpu", dtype=None):
    """(model, tokenizer) in eval mode, dense or exported (see the module docstring)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tyr.model import adapter

    if adapter.is_export(model_dir):  # through its own copy of modeling_tyr.py, as a user loads it
        model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True, dtype=dtype or "auto")
    else:
        model = adapter.load_model(model_dir, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)  # needs no custom code, also for exports
    return model.to(torch.device(device)).eval(), tokenizer


def param_counts(model) -> dict:
    """Parameters actually held by `model` (tied tensors once), split as in tyr.model.sparsity."""
    seen, counts = set(), {"total": 0, "backbone": 0, "backbone_prunable": 0}
    for name, p in model.named_parameters(remove_duplicate=True):
        if id(p) in seen:
            continue
        seen.add(id(p))
        counts["total"] += p.numel()
        if ".layers." in name:
            counts["backbone"] += p.numel()
            counts["backbone_prunable"] += p.numel() if "_proj." in name else 0
    return counts


def max_positions(model) -> int:
    return int(getattr(model.config, "max_position_embeddings", None) or 2048)


# ---- perplexity ------------------------------------------------------------------------------


def perplexity(model, tokenizer, texts, *, seq_len=2048, batch_size=1, max_windows=None) -> dict:
    """WikiText-style perplexity of `texts` (protocol in the module docstring)."""
    ids = tokenizer("\n\n".join(texts), return_tensors="pt").input_ids[0]
    seq_len = min(int(seq_len), max_positions(model))
    n = ids.numel() // seq_len
    if max_windows is not None:
        n = min(n, int(max_windows))
    if n < 1:
        raise ValueError(f"{ids.numel()} tokens do not fill one window of {seq_len}")
    return {**window_perplexity(model, ids[: n * seq_len].view(n, seq_len), batch_size=batch_size),
            "total_tokens": int(ids.numel())}


def window_perplexity(model, windows, *, batch_size=1) -> dict:
    """exp(mean NLL) of every next-token prediction inside each row of `windows` [n, T]."""
    import torch

    n, seq_len = windows.shape
    device = next(model.parameters()).device
    nll = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for batch in windows.split(batch_size):
            nll += _window_nll(model, batch.to(device)).cpu()
    count = n * (seq_len - 1)
    mean = float(nll) / count
    return {"perplexity": math.exp(mean), "nll": mean, "seq_len": seq_len, "windows": n, "scored_tokens": count}


def _window_nll(model, batch):
    """Summed NLL of every next-token prediction inside the windows of `batch`."""
    import torch.nn.functional as F

    logits = model(batch, use_cache=False).logits[:, :-1]
    return F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten(), reduction="sum").double()


def heldout_perplexity(model, tokens_zarr, *, batch_size=4) -> dict:
    """Perplexity on the calibration `heldout` split: each sequence is one window."""
    import torch

    from tyr.calib import stores

    windows = torch.from_numpy(stores.read_tokens(tokens_zarr, stores.HELDOUT)).long()
    if windows.shape[0] == 0:
        raise ValueError(f"{tokens_zarr}: the heldout split is empty (data.heldout_sequences: 0)")
    return window_perplexity(model, windows, batch_size=batch_size)


def read_texts(source) -> list[str]:
    """The test split of a WikiText-style source (a local file is one document, read verbatim)."""
    from tyr.calib.sources import read_texts

    return read_texts(source, hub_split="test")


# ---- zero-shot (lm-evaluation-harness) -------------------------------------------------------


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
    out = lm_eval.simple_evaluate(model=lm, tasks=specs, limit=limit, task_manager=manager,
                                  log_samples=False, verbosity="WARNING")
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




# ---- what a user sees: greedy continuations ---------------------------------------------------


def continuations(model, tokenizer, prompts, *, new_tokens=24) -> list[dict]:
    """Greedy continuation of each prompt (no sampling: dense and pruned are comparable)."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
            gen = model.generate(ids, max_new_tokens=new_tokens, do_sample=False, pad_token_id=_pad_id(tokenizer))
            out.append({"prompt": prompt, "continuation": tokenizer.decode(gen[0, ids.shape[1]:],
                                                                           skip_special_tokens=True)})
    return out


def _pad_id(tokenizer):
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


# ---- one model ---------------------------------------------------------------------------------


def evaluate_model(model_dir, out_json, *, plan, tokens_zarr=None, seq_len=2048, max_windows=None, limit=None,
                   speed=True, prompts=(), new_tokens=24, batch_size=8, device="cpu", dtype=None) -> dict:
    """All numbers of one model (dense or pruned) in one JSON, on the data of `plan`.

    `plan` is a `tyr.evaluate.plan.resolve` result: perplexity data sets by name (the calibration
    `heldout` split is read from `tokens_zarr`), zero-shot tasks and folder, and what was
    skipped and why (recorded as is). `speed`: False, True, or a dict of `measure_speed` keywords.
    """
    from tyr.evaluate.speed import measure_speed

    clock = _Clock()
    with clock("load"):
        model, tokenizer = load(model_dir, device=device, dtype=dtype)
    model_type = read_json(Path(model_dir) / "config.json")["model_type"]  # dense sources run as tyr_llama
    result = {"model": str(model_dir), "model_type": model_type, "params": param_counts(model)}
    export_record = Path(model_dir) / "tyr_pruning.json"  # written by tyr.export.hf: the exact accounting
    if export_record.is_file():
        result["pruning"] = read_json(export_record)
    # Speed first: resident memory then holds weights and the inference working set, not heap
    # left over from scoring 2k-token windows over a large vocabulary.
    if speed:
        with clock("speed"):
            result["speed"] = measure_speed(model, tokenizer, **(speed if isinstance(speed, dict) else {}))
    result["perplexity"] = {}
    for name, entry in plan["perplexity"].items():
        with clock(f"perplexity:{name}"):
            if entry["source"] == HELDOUT:
                ppl = heldout_perplexity(model, tokens_zarr)
            else:
                ppl = perplexity(model, tokenizer, read_texts(entry["source"]), seq_len=seq_len,
                                 max_windows=max_windows)
        result["perplexity"][name] = {**entry, **ppl}
    if plan["zeroshot"]["tasks"]:
        with clock("zeroshot"):
            zs = zeroshot(model, plan["zeroshot"]["tasks"], data_dir=plan["zeroshot"]["dir"], limit=limit,
                          batch_size=batch_size, tokenizer=tokenizer)
        result["zeroshot"], result["average"] = zs, average(zs)
    if prompts:
        with clock("continuations"):
            result["continuations"] = continuations(model, tokenizer, prompts, new_tokens=new_tokens)
    result["skipped"] = dict(plan.get("skipped", {}))
    result["seconds"] = clock.seconds
    write_json(out_json, result)
    return result


class _Clock:
    """Wall time per named stage, logged as each one ends."""

    def __init__(self):
        self.seconds = {}

    @contextmanager
    def __call__(self, stage):
        start = time.perf_counter()
        yield
        self.seconds[stage] = round(time.perf_counter() - start, 3)
        log.info("%s: %.1f s", stage, self.seconds[stage])

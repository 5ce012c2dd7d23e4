"""Evaluation of one model, dense or pruned: perplexity (`tyr.evaluate.perplexity`), zero-shot
accuracy (`tyr.evaluate.zeroshot`), speed (`tyr.evaluate.speed`) and greedy continuations, on
the data of the run's evaluation plan (`tyr.evaluate.plan`), in one JSON.

Loading: a dense source checkpoint (llama, qwen2, ...) is loaded into tyr's
`TyrForCausalLM` (`tyr.model.adapter.load_model`), and an export (a `TyrConfig` in config.json) through
`AutoModelForCausalLM(..., trust_remote_code=True)`, i.e. its copied `modeling_tyr.py`. Both
therefore run the same forward code, so speed-ups measure pruning, not implementations.

"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path

from tyr.calib.stores import HELDOUT
from tyr.core.io import read_json, write_json
from tyr.evaluate.perplexity import heldout_perplexity, perplexity, read_texts
from tyr.evaluate.zeroshot import average, zeroshot

log = logging.getLogger("tyr.evaluate.measure")


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
            out.append(
                {"prompt": prompt, "continuation": tokenizer.decode(gen[0, ids.shape[1] :], skip_special_tokens=True)}
            )
    return out


def _pad_id(tokenizer):
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


# ---- one model ---------------------------------------------------------------------------------


def evaluate_model(
    model_dir,
    out_json,
    *,
    plan,
    tokens_zarr=None,
    seq_len=2048,
    max_windows=None,
    limit=None,
    speed=True,
    prompts=(),
    new_tokens=24,
    batch_size=8,
    device="cpu",
    dtype=None,
) -> dict:
    """All numbers of one model (dense or pruned) in one JSON, on the data of `plan`.

    `plan` is a `tyr.evaluate.plan.resolve` result: perplexity data sets by name (the calibration
    `heldout` split is read from `tokens_zarr`), zero-shot tasks and folder, and what was
    skipped and why (recorded as is). `speed`: False, True, or a dict of `measure_speed` keywords.
    `device`: config `devices.evaluate` (auto: the job's GPU when there is one); speed is measured there.
    """
    from tyr.core.device import resolve_device
    from tyr.evaluate.speed import measure_speed

    clock = _Clock()
    with clock("load"):
        model, tokenizer = load(model_dir, device=resolve_device(device, "devices.evaluate"), dtype=dtype)
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
                ppl = perplexity(
                    model, tokenizer, read_texts(entry["source"]), seq_len=seq_len, max_windows=max_windows
                )
        result["perplexity"][name] = {**entry, **ppl}
    if plan["zeroshot"]["tasks"]:
        with clock("zeroshot"):
            zs = zeroshot(
                model,
                plan["zeroshot"]["tasks"],
                data_dir=plan["zeroshot"]["dir"],
                limit=limit,
                batch_size=batch_size,
                tokenizer=tokenizer,
            )
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

"""Evaluation of dense and pruned models: perplexity, zero-shot accuracy, speed, summary.

Loading: a dense source checkpoint (llama, qwen2, ...) is loaded into tyr's
`TyrForCausalLM` (`tyr.model.load_model`), and an export (`model_type` "tyr_llama") through
`AutoModelForCausalLM(..., trust_remote_code=True)`, i.e. its copied `modeling_tyr.py`. Both
therefore run the same forward code, so speed-ups measure pruning, not implementations.

Perplexity protocol (WikiText-2 test, as in GPTQ/SparseGPT/Wanda, documented exactly):
  1. documents are joined with "\\n\\n" (tyr.data reads WikiText-2, local file or hub split,
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
import re
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

from tyr.io import read_json, write_json

log = logging.getLogger("tyr.evaluate")

TASKS_DIR = Path(__file__).with_name("tasks")
# Standard task name -> the local task in tyr/tasks/ that scores the same prompt from AI2 jsonl.
LOCAL_TASKS = {"arc_easy": "tyr_arc_easy", "arc_challenge": "tyr_arc_challenge", "openbookqa": "tyr_openbookqa"}
METRICS = ("acc", "acc_norm")


# ---- loading ---------------------------------------------------------------------------------


def load(model_dir, *, device="cpu", dtype=None):
    """(model, tokenizer) in eval mode, dense or exported (see the module docstring)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from tyr import model as adapter

    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
    if config.model_type in adapter.SUPPORTED and config.model_type != "tyr_llama":
        model = adapter.load_model(model_dir, dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True, dtype=dtype or "auto")
    # trust_remote_code: AutoTokenizer reads config.json too, and an export's auto_map would prompt.
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
    return model.to(torch.device(device)).eval(), tokenizer


def param_counts(model) -> dict:
    """Parameters actually held by `model` (tied tensors once), split as in tyr.sparsity."""
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
    import torch

    ids = tokenizer("\n\n".join(texts), return_tensors="pt").input_ids[0]
    seq_len = min(int(seq_len), max_positions(model))
    n = ids.numel() // seq_len
    if max_windows is not None:
        n = min(n, int(max_windows))
    if n < 1:
        raise ValueError(f"{ids.numel()} tokens do not fill one window of {seq_len}")
    windows = ids[: n * seq_len].view(n, seq_len)
    device = next(model.parameters()).device
    nll = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for batch in windows.split(batch_size):
            nll += _window_nll(model, batch.to(device)).cpu()
    count = n * (seq_len - 1)
    mean = float(nll) / count
    return {"perplexity": math.exp(mean), "nll": mean, "seq_len": seq_len, "windows": n,
            "scored_tokens": count, "total_tokens": int(ids.numel())}


def _window_nll(model, batch):
    """Summed NLL of every next-token prediction inside the windows of `batch`."""
    import torch.nn.functional as F

    logits = model(batch, use_cache=False).logits[:, :-1]
    return F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten(), reduction="sum").double()


def read_texts(source) -> list[str]:
    """Texts of a WikiText-style source: tyr.data when present, else a local .txt verbatim."""
    try:
        from tyr.data import read_texts as data_read_texts
    except ImportError:  # tyr.data not installed yet: local text files only
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{source}: not a local text file (hub sources need tyr.data)") from None
        return [path.read_text(encoding="utf-8")]
    return data_read_texts(source, hub_split="test")


# ---- zero-shot (lm-evaluation-harness) -------------------------------------------------------


def zeroshot(model, tasks, *, data_dir=None, limit=None, batch_size=8, tokenizer=None, device="cpu") -> dict:
    """acc / acc_norm per task through lm-eval's `simple_evaluate`.

    `model` is a model folder (loaded by HFLM with trust_remote_code) or a loaded model
    (then `tokenizer` is required). With `data_dir`, the tasks of LOCAL_TASKS are scored
    offline from the AI2 jsonl files there; other names (and all names when `data_dir` is
    None) are lm-eval registry tasks that need the hub.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    specs, names = _task_specs(tasks, data_dir)
    if isinstance(model, (str, Path)):
        lm = HFLM(pretrained=str(model), trust_remote_code=True, batch_size=batch_size, device=device, dtype="auto")
    else:
        if tokenizer is None:
            raise ValueError("zeroshot: a loaded model needs its tokenizer")
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    # Indexing lm-eval's thousands of built-in YAMLs takes seconds: only when a hub task needs it.
    needs_registry = any(isinstance(s, str) for s in specs)
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=needs_registry)
    out = lm_eval.simple_evaluate(model=lm, tasks=specs, limit=limit, task_manager=manager,
                                  log_samples=False, verbosity="WARNING")
    return {name: _task_result(out, task, limit) for name, task in names.items()}


def _task_specs(tasks, data_dir):
    """lm-eval task specs and {reported name: lm-eval task name}."""
    from lm_eval.tasks._yaml_loader import load_yaml

    specs, names = [], {}
    for name in tasks:
        local = LOCAL_TASKS.get(name)
        if data_dir is not None and local:
            cfg = load_yaml(TASKS_DIR / f"{local}.yaml", resolve_func=True)
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


# ---- speed -----------------------------------------------------------------------------------


def speed(model, tokenizer=None, *, prompt_tokens=256, new_tokens=64, batch_size=1, repeats=3, seed=0) -> dict:
    """Prefill and greedy-decode throughput (KV cache), and peak memory, median of `repeats`.

    The prompt is `seed`-fixed random token ids (special tokens excluded when `tokenizer`
    is given), so a dense model and its pruned export are timed on identical inputs. One
    untimed warm-up run comes first. Peak memory: resident set (VmHWM, reset before the
    timed runs) on CPU, `max_memory_allocated` on CUDA.
    """
    import torch

    device = next(model.parameters()).device
    prompt = _prompt(model.config.vocab_size, tokenizer, batch_size, prompt_tokens, seed).to(device)
    _generate(model, prompt, 2)  # warm-up: allocator, kernels, lazy inits
    memory = _PeakMemory(device)
    runs = [_generate(model, prompt, new_tokens) for _ in range(repeats)]
    prefill = statistics.median(r[0] for r in runs)
    decode = statistics.median(r[1] for r in runs)
    return {
        "prefill_tokens_per_s": batch_size * prompt_tokens / prefill,
        "decode_tokens_per_s": batch_size * (new_tokens - 1) / decode,
        "prefill_seconds": prefill, "decode_seconds": decode,
        "prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "batch_size": batch_size,
        "repeats": repeats, "device": str(device), "threads": torch.get_num_threads(),
        "weights_mib": sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20,
        **memory.read(),
    }


_speed = speed  # evaluate_model's keyword `speed` shadows the function


def _prompt(vocab, tokenizer, batch, length, seed):
    import torch

    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    allowed = torch.tensor([i for i in range(vocab) if i not in special])
    g = torch.Generator().manual_seed(seed)
    return allowed[torch.randint(len(allowed), (batch, length), generator=g)]


def _generate(model, prompt, new_tokens):
    """(prefill seconds, decode seconds): one forward over the prompt (its first new token),
    then `new_tokens - 1` single-token steps on the KV cache, greedily."""
    import torch

    sync = torch.cuda.synchronize if prompt.is_cuda else (lambda: None)
    with torch.no_grad():
        sync()
        t0 = time.perf_counter()
        out = model(prompt, use_cache=True)
        token = out.logits[:, -1:].argmax(-1)
        sync()
        t1 = time.perf_counter()
        cache = out.past_key_values
        for _ in range(new_tokens - 1):
            out = model(token, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        sync()
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1


class _PeakMemory:
    """Peak memory from now on: Linux VmHWM after resetting it, or CUDA peak allocation."""

    def __init__(self, device):
        import torch

        self.cuda = device.type == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
            self.device, self.base = device, torch.cuda.memory_allocated(device)
            return
        self.base = _proc_status("VmRSS")
        try:  # "5" resets the peak RSS (Linux >= 4.0); without it VmHWM is the process lifetime peak
            Path("/proc/self/clear_refs").write_text("5")
            self.source = "VmHWM"
        except OSError:
            self.source = "VmHWM (lifetime: clear_refs not writable)"

    def read(self) -> dict:
        import torch

        if self.cuda:
            peak = torch.cuda.max_memory_allocated(self.device)
            return {"peak_memory_mib": peak / 2**20, "peak_increase_mib": (peak - self.base) / 2**20,
                    "memory_source": "cuda max_memory_allocated"}
        peak = _proc_status("VmHWM")
        return {"peak_memory_mib": peak / 2**20, "peak_increase_mib": (peak - self.base) / 2**20,
                "memory_source": self.source}


def _proc_status(field: str) -> int:
    """A byte count from /proc/self/status (Linux); ru_maxrss where there is none."""
    try:
        text = Path("/proc/self/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024
    except (OSError, AttributeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---- one model, and dense vs pruned ----------------------------------------------------------


def evaluate_model(model_dir, out_json, *, wikitext=None, seq_len=2048, max_windows=None, zeroshot_tasks=(),
                   zeroshot_dir=None, limit=None, speed=True, batch_size=8, device="cpu", dtype=None) -> dict:
    """All numbers of one model (dense or pruned) in one JSON.

    `wikitext`: a local file or a tyr.data source name, or None to skip; `speed`: False,
    True, or a dict of `speed()` keywords.
    """
    clock = _Clock()
    with clock("load"):
        model, tokenizer = load(model_dir, device=device, dtype=dtype)
    model_type = read_json(Path(model_dir) / "config.json")["model_type"]  # dense sources run as tyr_llama
    result = {"model": str(model_dir), "model_type": model_type, "params": param_counts(model)}
    export_record = Path(model_dir) / "tyr_pruning.json"  # written by tyr.export: the exact accounting
    if export_record.is_file():
        result["pruning"] = read_json(export_record)
    # Speed first: resident memory then holds weights and the inference working set, not heap
    # left over from scoring 2k-token windows over a large vocabulary.
    if speed:
        with clock("speed"):
            result["speed"] = _speed(model, tokenizer, **(speed if isinstance(speed, dict) else {}))
    if wikitext:
        with clock("perplexity"):
            ppl = perplexity(model, tokenizer, read_texts(wikitext), seq_len=seq_len, max_windows=max_windows)
        result["perplexity"] = {"source": str(wikitext), **ppl}
    if zeroshot_tasks:
        with clock("zeroshot"):
            zs = zeroshot(model, zeroshot_tasks, data_dir=zeroshot_dir, limit=limit, batch_size=batch_size,
                          tokenizer=tokenizer)
        result["zeroshot"], result["average"] = zs, average(zs)
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


def summarize(dense_json, pruned_json, spec_json, genome_json, out_json, *, method=None) -> dict:
    """`eval/summary.json`: dense and pruned side by side, with retention and speed-ups.

    It also records the genome's per-layer distribution, so a report needs only summaries.
    `method` defaults to the name of the folder above `eval/` (results/.../{method}/eval/).
    """
    from tyr import sparsity
    from tyr.model import ModelSpec

    dense, pruned = read_json(dense_json), read_json(pruned_json)
    spec, genome = ModelSpec.from_json(spec_json), read_json(genome_json)
    if dense["params"]["backbone_prunable"] != sparsity.backbone_prunable_params(spec):
        raise ValueError(f"{dense_json} does not describe the dense model of {spec_json}")
    summary = {
        "method": method or Path(out_json).resolve().parent.parent.name,
        "dense": str(dense["model"]), "pruned": str(pruned["model"]),
        "target_sparsity": genome.get("target_sparsity"),
        "genome_sparsity": genome.get("sparsity"),
        "sparsity": sparsity.backbone_sparsity(spec, _kept_prunable(pruned)),
        "params": {"dense": dense["params"], "pruned": pruned["params"],
                   "total_ratio": pruned["params"]["total"] / dense["params"]["total"]},
    }
    summary["distribution"] = distribution(spec, genome)
    if "perplexity" in dense and "perplexity" in pruned:
        summary["perplexity"] = _perplexity_pair(dense["perplexity"], pruned["perplexity"])
    if "zeroshot" in dense and "zeroshot" in pruned:
        summary.update(_zeroshot_pair(dense["zeroshot"], pruned["zeroshot"]))
    if "speed" in dense and "speed" in pruned:
        summary["speed"] = _speed_pair(dense["speed"], pruned["speed"])
    write_json(out_json, summary)
    return summary


def _kept_prunable(pruned: dict) -> int:
    """Kept prunable parameters in tyr.sparsity's accounting.

    An export records it (compensation biases excluded); the loaded model's count must then
    agree on the total, or the evaluated folder is not the exported one.
    """
    record = pruned.get("pruning")
    if record is None:
        return pruned["params"]["backbone_prunable"]
    if record["params"]["total"] != pruned["params"]["total"]:
        raise ValueError(f"{pruned['model']}: holds {pruned['params']['total']} parameters, its export "
                         f"record {record['params']['total']}")
    return record["params"]["backbone_prunable"]


def distribution(spec, genome) -> list[dict]:
    """Per layer: kept units and unit sparsity of attention (query heads) and MLP (channels)."""
    rows = []
    for layer, g in enumerate(genome["layers"]):
        row = {"layer": layer}
        for sub in ("attn", "mlp"):
            units = spec.units(sub, layer)
            row.update({f"{sub}_kept": g[sub], f"{sub}_units": units, f"{sub}_sparsity": 1 - g[sub] / units})
        rows.append(row)
    return rows


def _perplexity_pair(d, p) -> dict:
    if (d["seq_len"], d["windows"]) != (p["seq_len"], p["windows"]):
        raise ValueError(f"perplexities were measured differently: {d['seq_len']}x{d['windows']} vs {p['seq_len']}x{p['windows']}")
    return {"dense": d["perplexity"], "pruned": p["perplexity"], "ratio": p["perplexity"] / d["perplexity"],
            "seq_len": d["seq_len"], "windows": d["windows"], "source": d.get("source")}


def _zeroshot_pair(d, p) -> dict:
    if set(d) != set(p) or any((d[t]["n"], d[t]["limit"]) != (p[t]["n"], p[t]["limit"]) for t in d):
        raise ValueError("dense and pruned zero-shot results cover different tasks or sample counts")
    tasks = {t: {"dense": {m: d[t][m] for m in METRICS}, "pruned": {m: p[t][m] for m in METRICS}, "n": d[t]["n"]}
             for t in sorted(d)}
    avg_d, avg_p = average(d), average(p)
    retention = {m: avg_p[m] / avg_d[m] if avg_d[m] else None for m in METRICS}
    return {"zeroshot": tasks, "average": {"dense": avg_d, "pruned": avg_p}, "retention": retention}


def _speed_pair(d, p) -> dict:
    keys = ("prompt_tokens", "new_tokens", "batch_size", "device", "threads")
    if any(d.get(k) != p.get(k) for k in keys):
        raise ValueError(f"speeds were measured under different settings: {[(k, d.get(k), p.get(k)) for k in keys]}")
    out = {"settings": {k: d[k] for k in keys}}
    for k in ("prefill_tokens_per_s", "decode_tokens_per_s", "peak_memory_mib", "weights_mib"):
        out[k] = {"dense": d[k], "pruned": p[k]}
    out["prefill_speedup"] = p["prefill_tokens_per_s"] / d["prefill_tokens_per_s"]
    out["decode_speedup"] = p["decode_tokens_per_s"] / d["decode_tokens_per_s"]
    out["memory_ratio"] = p["peak_memory_mib"] / d["peak_memory_mib"]
    return out

"""Inference speed of a model: prefill and greedy-decode throughput on the KV cache, peak memory.

A dense model and its pruned export are timed on identical, seed-fixed prompts, with the same
forward code (see tyr.evaluate.measure), so a speed-up measures pruning, not implementations.
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path


def measure_speed(model, tokenizer=None, *, prompt_tokens=256, new_tokens=64, batch_size=1, repeats=3, seed=0) -> dict:
    """Prefill and greedy-decode throughput (KV cache), and peak memory, median of `repeats`.

    The prompt is `seed`-fixed random token ids (special tokens excluded when `tokenizer`
    is given), so a dense model and its pruned export are timed on identical inputs. One
    untimed warm-up run comes first. Peak memory: resident set (VmHWM, reset before the
    timed runs) on CPU, `max_memory_allocated` on CUDA.
    """
    import torch

    device = next(model.parameters()).device
    prompt = prompt_ids(model.config.vocab_size, tokenizer, batch_size, prompt_tokens, seed).to(device)
    _generate(model, prompt, 2)  # warm-up: allocator, kernels, lazy inits
    memory = _PeakMemory(device)
    runs = [_generate(model, prompt, new_tokens) for _ in range(repeats)]
    prefill = statistics.median(r[0] for r in runs)
    decode = statistics.median(r[1] for r in runs)
    return {
        "prefill_tokens_per_s": batch_size * prompt_tokens / prefill,
        "decode_tokens_per_s": batch_size * (new_tokens - 1) / decode,
        "prefill_seconds": prefill,
        "decode_seconds": decode,
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "batch_size": batch_size,
        "repeats": repeats,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "weights_mib": sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20,
        **memory.read(),
    }


def prompt_ids(vocab, tokenizer, batch, length, seed):
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
            return {
                "peak_memory_mib": peak / 2**20,
                "peak_increase_mib": (peak - self.base) / 2**20,
                "memory_source": "cuda max_memory_allocated",
            }
        peak = _proc_status("VmHWM")
        return {
            "peak_memory_mib": peak / 2**20,
            "peak_increase_mib": (peak - self.base) / 2**20,
            "memory_source": self.source,
        }


def _proc_status(field: str) -> int:
    """A byte count from /proc/self/status (Linux); ru_maxrss where there is none."""
    try:
        text = Path("/proc/self/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024
    except (OSError, AttributeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

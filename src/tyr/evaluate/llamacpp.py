"""llama.cpp checks its own output: perplexity and prefill/decode speed of a GGUF file, computed by
llama.cpp (through `llama-cpp-python`) on the same token ids PyTorch is scored on.

- Perplexity: the protocol of `tyr.evaluate.perplexity` (each window scored independently, mean
  NLL over its `seq_len - 1` next-token predictions); llama.cpp computes every position's logits
  (`logits_all`), the NLL is taken from them here in float64. Its default KV cache (f16) is used,
  as a user runs it; `kv_f32=True` keeps the cache in f32 (the CI logits test).
- Speed: the seed-fixed prompt of `tyr.evaluate.speed` (identical ids for every model), one
  untimed warm-up, then `repeats` runs of a prefill and `new_tokens - 1` greedy single-token steps,
  wall clock around llama.cpp's evaluation; the median run is reported.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

from tyr.calib.stores import HELDOUT


def load(path, *, n_ctx: int, threads: int, logits_all: bool, kv_f32: bool = False):
    """A `llama_cpp.Llama` of the GGUF `path` on CPU with `threads` threads."""
    import llama_cpp

    kv = {"type_k": 0, "type_v": 0} if kv_f32 else {}  # 0 = GGML_TYPE_F32
    return llama_cpp.Llama(
        str(path),
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=logits_all,
        n_gpu_layers=0,
        verbose=False,
        **kv,
    )


def logits(llm, ids):
    """llama.cpp's logits [len(ids), vocab] of one sequence (a fresh context each time)."""
    import numpy as np

    llm.reset()
    llm.eval([int(i) for i in ids])
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def window_perplexity(llm, windows) -> dict:
    """exp(mean NLL) of every next-token prediction inside each row of `windows` [n, T]."""
    import numpy as np

    n, seq_len = windows.shape
    total = 0.0
    for row in windows:
        row = np.asarray(row, dtype=np.int64)
        z = logits(llm, row)[:-1].astype(np.float64)
        top = z.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
        total += float((log_norm - z[np.arange(seq_len - 1), row[1:]]).sum())
    mean = total / (n * (seq_len - 1))
    return {
        "perplexity": math.exp(mean),
        "nll": mean,
        "seq_len": seq_len,
        "windows": n,
        "scored_tokens": n * (seq_len - 1),
    }


def generate_times(llm, prompt, new_tokens: int) -> tuple[float, float]:
    """(prefill seconds, decode seconds): the prompt (its first new token), then `new_tokens - 1`
    greedy single-token steps on llama.cpp's KV cache."""
    import numpy as np

    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    t1 = time.perf_counter()
    for _ in range(new_tokens - 1):
        llm.eval([token])
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    return t1 - t0, time.perf_counter() - t1


def speed(path, prompt, *, new_tokens=64, repeats=5, threads=2) -> dict:
    """Median prefill and decode tokens/s of GGUF `path` over `repeats` runs after one warm-up."""
    llm = load(path, n_ctx=len(prompt) + new_tokens, threads=threads, logits_all=False)
    try:
        generate_times(llm, prompt, 2)
        runs = [generate_times(llm, prompt, new_tokens) for _ in range(repeats)]
    finally:
        llm.close()
    prefill, decode = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    return {
        "prefill_tokens_per_s": len(prompt) / prefill,
        "decode_tokens_per_s": (new_tokens - 1) / decode,
        "prefill_seconds": prefill,
        "decode_seconds": decode,
        "prompt_tokens": len(prompt),
        "new_tokens": new_tokens,
        "repeats": repeats,
        "threads": threads,
        "runs": [[round(a, 5), round(b, 5)] for a, b in runs],
    }


def check(
    gguf_path, *, model_dir, plan, tokens_zarr, seq_len=2048, max_windows=None, speed_options=None, threads=2
) -> dict:
    """Perplexity on every data set of `plan` and speed of `gguf_path`, computed by llama.cpp.

    `model_dir`: the HF folder the GGUF was written from (its tokenizer gives WikiText's token ids,
    the same as PyTorch's evaluation). `speed_options`: None (no speed) or `speed` keywords plus
    `prompt_tokens` and `seed`.
    """
    import llama_cpp

    result = {
        "file": str(gguf_path),
        "bytes": Path(gguf_path).stat().st_size,
        "llama_cpp_python": llama_cpp.__version__,
        "perplexity": {},
    }
    for name, entry in plan["perplexity"].items():
        windows = _windows(entry, model_dir, tokens_zarr, seq_len, max_windows)
        llm = load(gguf_path, n_ctx=int(windows.shape[1]), threads=threads, logits_all=True)
        try:
            result["perplexity"][name] = {**entry, **window_perplexity(llm, windows)}
        finally:
            llm.close()
    if speed_options is not None:
        options = dict(speed_options)
        ids = prompt(model_dir, options.pop("prompt_tokens", 256), options.pop("seed", 0))
        result["speed"] = speed(gguf_path, ids, threads=threads, **options)
    return result


def _windows(entry, model_dir, tokens_zarr, seq_len, max_windows):
    """The token windows PyTorch's evaluation scores for this data set (`tyr.evaluate.measure`)."""
    from transformers import AutoConfig, AutoTokenizer

    from tyr.calib import stores
    from tyr.evaluate.perplexity import read_texts, text_windows

    if entry["source"] == HELDOUT:
        return stores.read_tokens(tokens_zarr, stores.HELDOUT)
    positions = int(getattr(AutoConfig.from_pretrained(model_dir), "max_position_embeddings", None) or 2048)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    windows, _ = text_windows(tokenizer, read_texts(entry["source"]), min(int(seq_len), positions), max_windows)
    return windows.numpy()


def prompt(model_dir, prompt_tokens: int, seed: int) -> list:
    """`tyr.evaluate.speed`'s seed-fixed prompt of the model in `model_dir` (no special tokens)."""
    from transformers import AutoConfig, AutoTokenizer

    from tyr.evaluate.speed import prompt_ids

    vocab = AutoConfig.from_pretrained(model_dir).vocab_size
    return prompt_ids(vocab, AutoTokenizer.from_pretrained(model_dir), 1, prompt_tokens, seed)[0].tolist()

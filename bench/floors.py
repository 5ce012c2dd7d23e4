"""The compute floor of each pipeline stage: its matmul work at this machine's matmul speed.

A stage's floor is the time its unavoidable multiply-adds would take at the GEMM throughput
measured here (`matmul_gflops`, the model's own MLP shape, at the job's thread count):

    calibrate       sampled tokens × dense FLOPs/token          (bf16 where native: it samples in bf16)
    dense_topk      fitness + selection tokens × dense FLOPs/token (float32)
    supernet_layer  per job: one forward of the dense layer over the pruning tokens, the two
                    input statistics H = XᵀX (o_proj, down_proj) and one refit solve per level
    attention_share candidates × share tokens × pruned FLOPs/token   (search.dtype)
    search          tokens scored (every stage of every generation, and the tracked parent)
                    × pruned FLOPs/token                            (search.dtype)
    select_tyr      candidates × selection tokens × pruned FLOPs/token
    evaluate*       perplexity tokens × FLOPs/token (float32); the zero-shot questions, the speed
                    timing and the continuations are not in the floor, so its ratio is an upper bound

FLOPs/token counts every projection, the LM head and the attention scores at the mean causal
context (T/2). A stage at 1× its floor does nothing but multiply at full speed; the ratio
says how much there is left to win, and where.
"""

from __future__ import annotations

import time


def matmul_gflops(d: int, m: int, dtype: str, threads: int, rows: int = 2048) -> float:
    """Sustained GEMM GFLOP/s of [rows, d] x [d, m] in `dtype` on `threads` threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn(rows, d, dtype=getattr(torch, dtype))
        w = torch.randn(m, d, dtype=x.dtype)
        for _ in range(3):
            torch.nn.functional.linear(x, w)
        n, t0 = 10, time.perf_counter()
        for _ in range(n):
            torch.nn.functional.linear(x, w)
        return 2 * rows * d * m * n / (time.perf_counter() - t0) / 1e9
    finally:
        torch.set_num_threads(before)


def layer_flops(cfg: dict, heads: float, channels: float, context: float, kv_heads: float | None = None) -> float:
    """FLOPs per token of one decoder layer keeping `heads` query heads, `channels` MLP channels
    and `kv_heads` KV heads (None: the fewest that serve `heads` query heads)."""
    d, hd = cfg["hidden_size"], cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    kv_kept = kv_heads if kv_heads is not None else min(kv, -(-heads * kv // q)) if heads else 0
    attn = d * hd * (2 * heads + 2 * kv_kept) + 2 * heads * hd * context
    return 2 * (attn + 3 * d * channels)


def model_flops(cfg: dict, layers: list[dict] | None, seq_len: int) -> float:
    """FLOPs per token of the whole model (dense when `layers` is None) with its LM head, at
    a causal context of `seq_len`."""
    dense = {"attn": cfg["num_attention_heads"], "mlp": cfg["intermediate_size"]}
    layers = layers or [dense] * cfg["num_hidden_layers"]
    body = sum(layer_flops(cfg, l["attn"], l["mlp"], seq_len / 2) for l in layers)
    return body + 2 * cfg["hidden_size"] * cfg["vocab_size"]


def supernet_layer_flops(cfg: dict, tokens: int, levels: int, seq_len: int) -> float:
    """One job: the dense layer's forward, H for o_proj and down_proj, a refit solve per level
    of each (n³/3 Cholesky + 2n²·d_out, at the mean kept width n ≈ half)."""
    d, m = cfg["hidden_size"], cfg["intermediate_size"]
    attn_in = cfg["num_attention_heads"] * (cfg.get("head_dim") or d // cfg["num_attention_heads"])
    forward = tokens * layer_flops(cfg, cfg["num_attention_heads"], m, seq_len / 2)
    stats = 2 * tokens * (attn_in ** 2 + m ** 2)
    solves = sum(levels * ((n / 2) ** 3 / 3 + 2 * (n / 2) ** 2 * d) for n in (attn_in, m))
    return forward + stats + solves


def search_tokens(search: dict, generations: int, seq_len: int) -> int:
    """Tokens one search job scores: every stage of every generation plus the tracked parent.
    (Stage i scores the survivors of stage i-1; stage 1 scores every offspring.)"""
    stages = search["stages"]
    per_gen = search["offspring"] * stages[0][0]
    per_gen += sum(kept * tokens for (_, kept), (tokens, _) in zip(stages[:-1], stages[1:]))
    per_gen += search.get("track_sequences", 0) * seq_len
    return generations * per_gen


def stage_floors(cfg: dict, conf: dict, genome_layers: list[dict] | None, gflops: dict, n_iter: int,
                 share_candidates: int, eval_windows: list[tuple[int, int]]) -> dict:
    """Floor seconds per stage (summed over its jobs) for one target of the default pipeline.
    `eval_windows`: (tokens, context length) of each perplexity set an evaluation scores."""
    data, search, supernet = conf["data"], conf["search"], conf["supernet"]
    seq_len = data["seq_len"]
    dense = model_flops(cfg, None, seq_len)
    pruned = model_flops(cfg, genome_layers, seq_len)
    fast = gflops[search.get("dtype", "float32")]
    sampled = seq_len * sum(data[f"{s}_sequences"] for s in ("prune", "fitness", "selection", "heldout"))
    gens = search["generations"]
    gens = gens if isinstance(gens, list) else [gens] * n_iter
    floors = {
        "calibrate": sampled * dense / gflops["bfloat16"] if data["source"] == "self" else 0.0,
        "dense_topk": seq_len * (data["fitness_sequences"] + data["selection_sequences"]) * dense / gflops["float32"],
        "supernet_layer": n_iter * cfg["num_hidden_layers"] * supernet_layer_flops(
            cfg, seq_len * data["prune_sequences"], supernet["levels"], seq_len) / gflops["float32"],
        "attention_share": share_candidates * search["share_sequences"] * seq_len * pruned / fast,
        "search": sum(search_tokens(search, g, seq_len) for g in gens[:n_iter]) * pruned / fast,
        "select_tyr": (n_iter + 1) * data["selection_sequences"] * seq_len * pruned / fast,
        "evaluate_dense": sum(n * model_flops(cfg, None, t) for n, t in eval_windows) / gflops["float32"],
        # the two pruned models of the default run (Týr and uniform), both at the target
        "evaluate": 2 * sum(n * model_flops(cfg, genome_layers, t) for n, t in eval_windows) / gflops["float32"],
    }
    return {k: v / 1e9 for k, v in floors.items()}

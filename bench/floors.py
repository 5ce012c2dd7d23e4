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

FLOPs/token counts every projection (2 × its parameters, `tyr.model.sparsity`), the LM head and
the attention scores at the mean causal context (T/2). A stage at 1× its floor does nothing but
multiply at full speed; the ratio says how much there is left to win, and where. This module is
the one home of the benchmarks' FLOP counts (bench/costmodel uses them too).

    python bench/floors.py [--model results/<run>/model] [--threads 2] [--smoke]

prints this machine's GEMM speeds for the model's MLP shape and the floor of each stage of the
default pipeline (config/config.yaml) for it, dense genome.
"""

from __future__ import annotations

import time

from lib import args as cli
from lib import results
from lib.env import setup


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


# ---- FLOPs per token (spec: a tyr.model.spec.ModelSpec; unit counts may be fractional) ---------


def kv_for(spec, heads: float) -> float:
    """The fewest KV heads that serve `heads` query heads."""
    return min(spec.num_kv_heads, -(-heads * spec.num_kv_heads // spec.num_heads)) if heads else 0


def attention_input_flops(spec, heads: float, context: float, kv_heads: float | None = None) -> float:
    """What precedes o_proj: the q/k/v projections and the scores and weighted values (QKᵀ, AV)
    over `context` keys."""
    from tyr.model.sparsity import attention_params

    kv = kv_for(spec, heads) if kv_heads is None else kv_heads
    qkv = attention_params(spec, heads, kv) - spec.hidden_size * spec.head_dim * heads  # all but o_proj
    return 2 * qkv + 4 * heads * spec.head_dim * context


def o_proj_flops(spec, heads: float) -> float:
    return 2 * spec.hidden_size * spec.head_dim * heads


def mlp_input_flops(spec, channels: float) -> float:
    """gate_proj and up_proj (what precedes down_proj)."""
    return mlp_flops(spec, channels) - down_proj_flops(spec, channels)


def down_proj_flops(spec, channels: float) -> float:
    return 2 * spec.hidden_size * channels


def attention_flops(spec, heads: float, context: float, kv_heads: float | None = None) -> float:
    return attention_input_flops(spec, heads, context, kv_heads) + o_proj_flops(spec, heads)


def mlp_flops(spec, channels: float) -> float:
    from tyr.model.sparsity import mlp_params

    return 2 * mlp_params(spec, channels)


def layer_flops(spec, heads: float, channels: float, context: float, kv_heads: float | None = None) -> float:
    """FLOPs per token of one decoder layer keeping `heads` query heads, `channels` MLP channels
    and `kv_heads` KV heads (None: the fewest that serve `heads` query heads)."""
    return attention_flops(spec, heads, context, kv_heads) + mlp_flops(spec, channels)


def head_flops(spec) -> float:
    return 2 * spec.hidden_size * spec.vocab_size


def model_flops(spec, layers: list[dict] | None, seq_len: int) -> float:
    """FLOPs per token of the whole model (dense when `layers` is None) with its LM head, at
    a causal context of `seq_len`."""
    layers = layers or [{"attn": spec.num_heads, "mlp": m} for m in spec.intermediate_size]
    return sum(layer_flops(spec, l["attn"], l["mlp"], seq_len / 2) for l in layers) + head_flops(spec)


def supernet_layer_flops(spec, tokens: int, levels: int, seq_len: int, layer: int = 0) -> float:
    """One job: the dense layer's forward, H for o_proj and down_proj, a refit solve per level
    of each (n³/3 Cholesky + 2n²·d_out, at the mean kept width n ≈ half)."""
    d, m = spec.hidden_size, spec.intermediate_size[layer]
    attn_in = spec.num_heads * spec.head_dim
    forward = tokens * layer_flops(spec, spec.num_heads, m, seq_len / 2)
    stats = 2 * tokens * (attn_in**2 + m**2)
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


def stage_floors(
    spec,
    conf: dict,
    genome_layers: list[dict] | None,
    gflops: dict,
    n_iter: int,
    share_candidates: int,
    eval_windows: list[tuple[int, int]],
) -> dict:
    """Floor seconds per stage (summed over its jobs) for one target of the default pipeline.
    `eval_windows`: (tokens, context length) of each perplexity set an evaluation scores."""
    data, search, supernet = conf["data"], conf["search"], conf["supernet"]
    seq_len = data["seq_len"]
    dense = model_flops(spec, None, seq_len)
    pruned = model_flops(spec, genome_layers, seq_len)
    fast = gflops[search.get("dtype", "float32")]
    sampled = seq_len * sum(data[f"{s}_sequences"] for s in ("prune", "fitness", "selection", "heldout"))
    gens = search["generations"]
    gens = gens if isinstance(gens, list) else [gens] * n_iter
    floors = {
        "calibrate": sampled * dense / gflops["bfloat16"] if data["source"] == "self" else 0.0,
        "dense_topk": seq_len * (data["fitness_sequences"] + data["selection_sequences"]) * dense / gflops["float32"],
        "supernet_layer": n_iter
        * sum(
            supernet_layer_flops(spec, seq_len * data["prune_sequences"], supernet["levels"], seq_len, l)
            for l in range(spec.num_layers)
        )
        / gflops["float32"],
        "attention_share": share_candidates * search["share_sequences"] * seq_len * pruned / fast,
        "search": sum(search_tokens(search, g, seq_len) for g in gens[:n_iter]) * pruned / fast,
        "select_tyr": (n_iter + 1) * data["selection_sequences"] * seq_len * pruned / fast,
        "evaluate_dense": sum(n * model_flops(spec, None, t) for n, t in eval_windows) / gflops["float32"],
        # the two pruned models of the default run (Týr and uniform), both at the target
        "evaluate": 2 * sum(n * model_flops(spec, genome_layers, t) for n, t in eval_windows) / gflops["float32"],
    }
    return {k: v / 1e9 for k, v in floors.items()}


def gemm_speeds(spec, threads: int, rows: int = 2048) -> dict:
    """GFLOP/s in float32 and bfloat16 at the model's MLP shape, and `auto`: what search.dtype
    auto resolves to here."""
    from tyr.core.device import resolve_dtype

    out = {
        dt: matmul_gflops(spec.hidden_size, max(spec.intermediate_size), dt, threads, rows)
        for dt in ("float32", "bfloat16")
    }
    out["auto"] = out[resolve_dtype("auto", "cpu")]
    return out


def main(argv=None):
    ap = cli.parser(__doc__)
    ap.add_argument("--model", help="a prepared model folder (with spec.json); not with --smoke (a tiny random one)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not (args.smoke or args.model):
        ap.error("--model is required without --smoke")
    setup(args.threads)
    from lib.config import default_config

    from tyr.model.families import spec_from_config
    from tyr.model.spec import ModelSpec
    from tyr.testing import tiny_hf_model

    with cli.workspace(args):
        spec = (
            spec_from_config(tiny_hf_model().config) if args.smoke else ModelSpec.from_json(f"{args.model}/spec.json")
        )
        conf = default_config(smoke=args.smoke)
        gflops = gemm_speeds(spec, args.threads, rows=256 if args.smoke else 2048)
        seq = conf["data"]["seq_len"]
        windows = [(conf["data"]["heldout_sequences"] * seq, seq)]
        floor = stage_floors(spec, conf, None, gflops, conf["supernet"]["iterations"], 0, windows)
        lines = [
            f"# Compute floors, {spec.num_layers} layers × d={spec.hidden_size}, {args.threads} threads",
            "",
            "GEMM GFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in gflops.items()),
            "",
            "| stage | floor (s) |",
            "|---|---|",
            *(f"| {k} | {v:.4g} |" for k, v in floor.items()),
        ]
        results.write("floors", lines, {"gemm_gflops": gflops, "floors_s": floor}, out=args.out)


if __name__ == "__main__":
    main()

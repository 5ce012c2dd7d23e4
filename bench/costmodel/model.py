"""The paper preset predicted for Llama-3.1-8B and -70B (docs/cost-model.md): the work of each stage
(FLOPs from bench/floors.py, parameters from tyr.model.sparsity, the pruning path's features from
`costmodel.fit`), turned into seconds by the fitted laws (this CPU, one thread; 16 host threads
assumed CPU_THREADS_SPEEDUP x) or by the assumed GPU rates, and the bytes each stage holds."""

from __future__ import annotations

import math

import numpy as np
from lib.config import CONFIG, merged_config
from lib.env import ROOT

from costmodel.fit import PATH_TERMS, path_features
from costmodel.shapes import (
    CPU_THREADS_SPEEDUP,
    GPU,
    STREAM,
    TARGETS,
    GiB,
    dense_layer_flops,
    head_flops,
    layer_params,
    spec_of,
)


def preset() -> dict:
    """config/config.yaml with config/presets/paper.yaml merged over it, as Snakemake would."""
    return merged_config(CONFIG, ROOT / "config" / "presets" / "paper.yaml")


def supernet_work(s: dict, cfg: dict, iteration: int, cache_bytes: int = 32 << 20) -> dict:
    """One supernet_layer job: FLOPs per piece, the path's features, bytes written."""
    from floors import attention_input_flops, down_proj_flops, mlp_input_flops, o_proj_flops

    from tyr.supernet.levels import sublayer_levels

    seq, T = cfg["data"]["seq_len"], cfg["data"]["prune_sequences"] * cfg["data"]["seq_len"]
    sn, spec = cfg["supernet"], spec_of(s)
    d, m, w_attn = s["hidden"], s["intermediate"], s["heads"] * s["head_dim"]
    delta = sn["delta"] / 2 ** (iteration - 1)
    kept_attn, _ = sublayer_levels(s["heads"], 0.5, delta, sn["levels"], 1)
    kept_mlp, _ = sublayer_levels(m, 0.5, delta, sn["levels"], sn["channels_per_step"])
    # _Stream caches 1 GiB of a layer's intermediates; beyond it, it recomputes: an uncached batch
    # runs the attention input 4x, its residual 3x, the MLP input 2x, the MLP residual once.
    runs = stream_cache(s, cfg["data"]["prune_sequences"], seq, sn["batch_size"])["per_batch"]
    mult = (runs["attn"], runs["h"], runs["mlp"], 1)
    fwd = T * (
        mult[0] * attention_input_flops(spec, s["heads"], seq / 2)
        + mult[1] * o_proj_flops(spec, s["heads"])
        + mult[2] * mlp_input_flops(spec, m)
        + mult[3] * down_proj_flops(spec, m)
    )
    path = [
        path_features(w_attn, d, s["head_dim"], sn["heads_per_step"], kept_attn, cache_bytes),
        path_features(m, d, 1, sn["channels_per_step"], kept_mlp, cache_bytes),
    ]
    return {
        "forward_flops": fwd,
        "hessian_flops": 2 * T * (w_attn**2 + m**2),
        "recon_flops": 2 * d * (len(kept_attn) * w_attn**2 + len(kept_mlp) * m**2),
        "write_bytes": 4 * d * (sum(kept_attn) * s["head_dim"] + sum(kept_mlp)),
        # the layer's input read from its zarr store three times (both statistics, propagation),
        # its output written once: on a GPU each pass also crosses PCIe
        "stream_read_bytes": 3 * T * d * 4,
        "stream_write_bytes": T * d * 4,
        "path": path,
        "levels": {"attn": kept_attn, "mlp": kept_mlp},
    }


def recompute_fractions(s: dict, layers: int, cfg: dict, rng_seed: int = 0) -> list:
    """Per selection stage, the mean share of the 2L sublayers a child reruns: from the parent
    cache's boundary before its first change (tyr.search.fitness.ParentCache with the search's 2 GiB),
    changes drawn by tyr.search.evolve.mutate around an all-centre parent."""
    from tyr.search.caches import ParentCache
    from tyr.search.evolve import mutate

    class Space:  # the part of a SearchSpace that mutate reads: 9 levels, attention/MLP groups
        size = 2 * layers
        kept = [tuple(range(9))] * (2 * layers)
        groups = {"attn": tuple(range(0, 2 * layers, 2)), "mlp": tuple(range(1, 2 * layers, 2))}

        def group_of(self, i):
            return "attn" if i % 2 == 0 else "mlp"

    rng, parent = np.random.default_rng(rng_seed), (4,) * (2 * layers)
    out = []
    for tokens, _ in cfg["search"]["stages"]:
        cache = ParentCache()
        cache.plan(1, 2 * layers, tokens * s["hidden"] * 4, 2 * GiB)
        cache.kept = parent  # the cache compares genomes as given: level indices here
        children = (mutate(parent, Space(), rng, cfg["search"]["max_swaps"]) for _ in range(400))
        starts = [cache.start(c) for c in children]
        out.append(float(np.mean([(2 * layers - (st or 0)) / (2 * layers) for st in starts if st is not None])))
    return out


def search_work(s: dict, layers: int, cfg: dict, processes: int) -> dict:
    """One generation's work on the busiest process: FLOPs of sublayer forwards and of the head,
    kernel launches (GPU), and bytes of sublayer modules rebuilt: all that a child reruns with the
    search's 1 GiB module cache (far less than one pruned 8B model: an LRU over a longer cycle
    misses every time), or only its changed sublayers with a cache that holds the parent's."""
    seq, sc = cfg["data"]["seq_len"], cfg["search"]
    frac = recompute_fractions(s, layers, cfg)
    per_token_layers = layers * dense_layer_flops(s, seq, keep=0.5)
    head = head_flops(s)
    module_bytes = 2 * 0.5 * layer_params(s) * layers  # pruned model in the bf16 compute dtype
    changed = 2 * sum(n * p for n, p in zip(range(1, 5), (7 / 16, 5 / 16, 3 / 16, 1 / 16)))  # 2·E[min(U,U)] swaps
    w = {
        "layer_flops": 0.0,
        "head_flops": 0.0,
        "rebuilt_bytes": 0.0,
        "rebuilt_bytes_parent_cache": 0.0,
        "launches": 0.0,
    }
    candidates = sc["offspring"]
    for s_i, ((tokens, keep), f) in enumerate(zip(sc["stages"], frac)):
        mine = math.ceil(candidates / processes)
        last_fixed = s_i == len(sc["stages"]) - 1 and sc.get("fixed_last_stage")
        runs = (f if last_fixed else 1.0) + mine * f  # the parent's forward (its cache kept when fixed) + children
        w["layer_flops"] += tokens * per_token_layers * runs
        w["head_flops"] += tokens * head * (1 + mine)
        w["rebuilt_bytes"] += module_bytes * runs if module_bytes > GiB else 0.0
        # worst case: no child's new level was built before (a search near its parent revisits them)
        w["rebuilt_bytes_parent_cache"] += module_bytes * mine * changed / (2 * layers)
        batches = math.ceil(tokens / (cfg["search"].get("batch_size", 4) * seq))
        # ~30 kernels per sublayer forward and batch, ~10 per 128-row chunk of the head and KL
        w["launches"] += batches * 2 * layers * 30 * runs + (1 + mine) * tokens / 128 * 10
        candidates = keep
    track = sc.get("track_sequences", 0) * seq
    w["layer_flops"] += track * per_token_layers
    w["head_flops"] += track * head
    w["launches"] += math.ceil(track / (4 * seq)) * 2 * layers * 30 + track / 128 * 10
    w.update(recompute=frac, head_elementwise_bytes=(w["head_flops"] / head) * 24 * s["vocab"])
    return w


def other_stage_flops(s: dict, layers: int, cfg: dict) -> dict:
    """dense_topk (fitness + selection splits, dense), select_tyr (start + every iteration's best
    on the selection split), attention_share (even split + shares, on share text): full forwards."""
    seq, data = cfg["data"]["seq_len"], cfg["data"]
    head = head_flops(s)
    dense = layers * dense_layer_flops(s, seq) + head
    pruned = layers * dense_layer_flops(s, seq, keep=0.5) + head
    sel = data.get("selection_sequences", 32) * seq
    out = {
        "dense_topk": (data["fitness_sequences"] * seq + sel) * dense,
        "select_tyr": (cfg["supernet"]["iterations"] + 1) * sel * pruned,
    }
    if cfg["search"].get("attention_kept") == "auto":
        shares = 1 + len(cfg["search"].get("attention_shares", []))
        out["attention_share"] = shares * cfg["search"]["share_sequences"] * seq * pruned
    return out


# ---- the cost model: seconds and bytes --------------------------------------------------------


def _c(laws, name) -> float:
    return laws[name]["constant"] or 0.0


def supernet_seconds(work: dict, laws: dict, where: str) -> dict:
    """One supernet_layer job's seconds per piece: `cpu1` (this CPU, one thread: the fitted
    constants), `host16` (the paper preset's 16 threads, assumed CPU_THREADS_SPEEDUP x), `gpu`
    (the same work on one GPU at the assumed rates; this version runs it on the CPU)."""
    if where in ("cpu1", "host16"):
        c = dict(zip(PATH_TERMS, laws["path"]["constants"]))
        out = {
            "forward": _c(laws, "supernet_forward") * work["forward_flops"],
            "hessian": _c(laws, "hessian") * work["hessian_flops"],
            "path": sum(c[k] * p[k] for p in work["path"] for k in PATH_TERMS),
            "recon": _c(laws, "recon") * work["recon_flops"],
            "write": _c(laws, "write") * work["write_bytes"],
        }
        out = {k: v / (CPU_THREADS_SPEEDUP if where == "host16" else 1.0) for k, v in out.items()}
        return dict(out, stream=_stream_seconds(work, h2d=False))
    path = 0.0
    for p, k in zip(work["path"], work["path_step_channels"]):
        # per step: ~9 passes over the n×n fp64 H⁻¹ (down-date, subtract, row and column copies),
        # 2·k·n² + 2·k·n·d_out fp64 FLOPs, ~20 kernel launches; plus the start's factorisations.
        path += 72 * p["s2"] / GPU["hbm_bytes"] + (2 * k * (p["s2"] + p["sw"]) + p["init"]) / GPU["fp64_flops"]
        path += 20 * p["steps"] * GPU["launch_s"]
    return {
        "forward": work["forward_flops"] / GPU["fp32_flops"],
        "hessian": work["hessian_flops"] / GPU["fp32_flops"],
        "path": path,
        "recon": work["recon_flops"] / GPU["fp32_flops"],
        "write": _c(laws, "write") * work["write_bytes"],
        "stream": _stream_seconds(work, h2d=True),
    }


def _stream_seconds(work: dict, h2d: bool) -> float:
    """The layer's calibration stream through the host: zarr reads and the write at the rates
    bench/layer_scale.py measured (one thread), and on a GPU the copies over PCIe."""
    seconds = work["stream_read_bytes"] / STREAM["read_bytes"] + work["stream_write_bytes"] / STREAM["write_bytes"]
    if h2d:
        seconds += (work["stream_read_bytes"] + work["stream_write_bytes"]) / GPU["h2d_bytes"]
    return seconds


def search_seconds(work: dict, laws: dict, where: str, rebuilt: str = "rebuilt_bytes") -> float:
    """One generation on the busiest process, the fitness in bfloat16 (search.dtype auto on
    hardware with native bf16: this CPU and any GPU). `rebuilt`: which module-cache case."""
    if where in ("cpu1", "host16"):
        s = (
            _c(laws, "fitness_sublayer_bfloat16") * work["layer_flops"]
            + _c(laws, "fitness_head_bfloat16") * work["head_flops"]
            + _c(laws, "module_build_bfloat16") * work[rebuilt]
        )
        return s / (CPU_THREADS_SPEEDUP if where == "host16" else 1.0)
    # GPU: GEMMs at the bf16 rate, the softmax/KL passes over [tokens, vocab] at HBM speed, kernel
    # launches, and modules rebuilt on the host (measured per byte, GPU["host_threads_speedup"]
    # threads) and copied over.
    rebuild = work[rebuilt] * (_c(laws, "module_build_bfloat16") / GPU["host_threads_speedup"] + 1 / GPU["h2d_bytes"])
    return (
        (work["layer_flops"] + work["head_flops"]) / GPU["bf16_flops"]
        + work["head_elementwise_bytes"] / GPU["hbm_bytes"]
        + work["launches"] * GPU["launch_s"]
        + rebuild
    )


def forward_seconds(flops: float, laws: dict, where: str, head_share: float, dtype: str = "bfloat16") -> float:
    """A stage of full forwards (dense_topk in the model's float32; select_tyr and attention_share
    through the Evaluator, in bf16) at the fitness rates of that dtype."""
    if where == "gpu":
        return flops / GPU["bf16_flops" if dtype == "bfloat16" else "fp32_flops"]
    a = (1 - head_share) * _c(laws, f"fitness_sublayer_{dtype}") + head_share * _c(laws, f"fitness_head_{dtype}")
    return flops * a / (CPU_THREADS_SPEEDUP if where == "host16" else 1.0)


def predict(model: str, laws: dict, cfg: dict) -> dict:
    """Seconds per stage of one target sparsity, where each stage runs:
    cpu1            everything on one thread of this CPU (N search processes of one thread each);
    before_pinning  supernet and dense_topk on 16 host threads, the search (and select_tyr,
                    attention_share) on N GPUs with the 1 GiB module LRU alone (commit 2ec9f89);
    host_supernet   the same with the parent's modules pinned: `devices.supernet/dense_topk: cpu`;
    as_coded        `devices.*: auto`: the supernet and dense_topk on the job's GPU too; dense_topk
                    stays on the host where its fp32 model does not fit one GPU (`dense_topk_fits`)."""
    s, layers, sc = TARGETS[model], TARGETS[model]["layers"], cfg["search"]
    iters = cfg["supernet"]["iterations"]
    gens = sum(
        sc["generations"][min(i, len(sc["generations"])) - 1]
        if isinstance(sc["generations"], list)
        else sc["generations"]
        for i in range(1, iters + 1)
    )
    sn = [supernet_work(s, cfg, i, laws["path"]["cache_bytes"]) for i in range(1, iters + 1)]
    for w in sn:
        w["path_step_channels"] = [
            cfg["supernet"]["heads_per_step"] * s["head_dim"],
            cfg["supernet"]["channels_per_step"],
        ]
    supernet = {
        w: layers * sum(sum(supernet_seconds(x, laws, w).values()) for x in sn) for w in ("cpu1", "host16", "gpu")
    }
    other = other_stage_flops(s, layers, cfg)
    head_share = head_flops(s) / (layers * dense_layer_flops(s, cfg["data"]["seq_len"]) + head_flops(s))

    def fwd(stage, where):
        dtype = "float32" if stage == "dense_topk" else "bfloat16"
        return forward_seconds(other[stage], laws, where, head_share, dtype)

    fits = memory(model, cfg)["dense_topk_gpu"] <= GPU["memory_bytes"]
    out = {
        "per_layer_iter1": {w: supernet_seconds(sn[0], laws, w) for w in ("cpu1", "host16", "gpu")},
        "supernet_total": supernet,
        "generations": gens,
        "other_flops": other,
        "other_stages": {w: {k: fwd(k, w) for k in other} for w in ("cpu1", "host16", "gpu")},
        "dense_topk_fits": fits,
        "per_generation": {},
        "totals": {},
    }
    rest_gpu = sum(fwd(k, "gpu") for k in other if k != "dense_topk")
    host = supernet["host16"] + fwd("dense_topk", "host16") + rest_gpu
    coded = supernet["gpu"] + fwd("dense_topk", "gpu" if fits else "host16") + rest_gpu
    for n in (1, 8):
        work = search_work(s, layers, cfg, n)
        gen = {
            "cpu1": search_seconds(work, laws, "cpu1"),
            "gpu_lru": search_seconds(work, laws, "gpu"),
            "gpu_pinned": search_seconds(work, laws, "gpu", "rebuilt_bytes_parent_cache"),
        }
        out["per_generation"].update({f"{k}_x{n}": v for k, v in gen.items()})
        out["totals"].update(
            {
                f"cpu1_x{n}": supernet["cpu1"] + sum(fwd(k, "cpu1") for k in other) + gens * gen["cpu1"],
                f"before_pinning_x{n}": host + gens * gen["gpu_lru"],
                f"host_supernet_x{n}": host + gens * gen["gpu_pinned"],
                f"as_coded_x{n}": coded + gens * gen["gpu_pinned"],
            }
        )
        out["recompute"], out[f"search_work_x{n}"] = work["recompute"], work
    return out


def memory(model: str, cfg: dict) -> dict:
    """Bytes, from the tensors each stage holds (docs/cost-model.md explains every term)."""
    from tyr.model.sparsity import model_params

    s, layers = TARGETS[model], TARGETS[model]["layers"]
    d, m, V, seq = s["hidden"], s["intermediate"], s["vocab"], cfg["data"]["seq_len"]
    out = supernet_memory(s, cfg["data"]["prune_sequences"] * seq, seq, cfg["supernet"]["batch_size"])
    total_params = model_params(spec_of(s, layers, tied=False))["total"]  # untied embedding and head
    levels = supernet_work(s, cfg, 1)["write_bytes"]
    tokens = [t for t, _ in cfg["search"]["stages"]]

    # parent caches: the fixed last stage's, kept, and the current stage's; ParentCache.plan keeps as
    # many boundaries as fit in 2 GiB, but always one
    def boundary(t):
        return t * d * 4 * max(1, min(2 * layers, 2 * GiB // (t * d * 4)))

    caches = boundary(tokens[-1]) + max(map(boundary, tokens[:-1] or [0]))
    gpu = (
        V * d * 4
        + V * d * 2
        + 0.5 * layer_params(s) * layers * 2
        + caches
        + max(tokens) * cfg["search"]["topk"] * 12
        + 4 * seq * (m // 2) * 2 * 3
        + 128 * V * 4 * 3
    )
    sel = cfg["data"].get("selection_sequences", 32)
    out.update(
        {
            "search_host_dense_fp32": 4 * total_params,
            "search_host_dense_fp32_x8": 8 * 4 * total_params,  # every process loads the dense model
            "search_gpu_per_process": gpu,
            "supernet_disk_per_iteration": layers * levels,
            "supernet_disk_all_iterations": cfg["supernet"]["iterations"] * layers * levels,
            "topk_store": (cfg["data"]["fitness_sequences"] + sel) * seq * (cfg["search"]["topk"] * 8 + 4),
            "activation_store_per_layer": cfg["data"]["prune_sequences"] * seq * d * 4,
            "model_fp32": 4 * total_params,
            # dense_topk on a GPU (tyr.search.reference: load_model(...).to(device)): the whole model
            # in fp32, one batch's hidden states and a chunk of logits (batch 4, chunk 256 rows)
            "dense_topk_gpu": 4 * total_params + 4 * seq * d * 4 * 4 + 256 * V * 4 * 3,
        }
    )
    return out


def stream_cache(s: dict, n_seq: int, seq: int, batch: int, cache_bytes: int = GiB) -> dict:
    """What `tyr.supernet.build._Stream` keeps of a layer's intermediates, replayed in the order
    the job asks for them (its `_kept` rule: a value is kept while it fits in what is left):
    the bytes held once the MLP's statistics are done (through the MLP's path and propagation),
    and how often each forward runs per batch (attention input, its residual, MLP input)."""
    d, m, w = s["hidden"], s["intermediate"], s["heads"] * s["head_dim"]
    sizes = [min(batch, n_seq - i) * seq * 4 for i in range(0, n_seq, batch)]
    per = {"attn": w, "h": d, "mlp": m}
    kept, free, runs = set(), cache_bytes, {k: 0 for k in per}

    def get(kind, i):
        nonlocal free
        if (kind, i) in kept:
            return
        runs[kind] += 1
        if kind != "attn":
            get("attn" if kind == "h" else "h", i)
        if sizes[i] * per[kind] <= free:
            kept.add((kind, i))
            free -= sizes[i] * per[kind]

    for i in range(len(sizes)):  # statistics of the attention
        get("attn", i)
    for i in range(len(sizes)):  # statistics of the MLP
        get("mlp", i)
    held = cache_bytes - free
    for i in range(len(sizes)):  # propagate: the MLP's residual input, then its input
        get("h", i)
        get("mlp", i)
    return {"held_bytes": held, "per_batch": {k: v / len(sizes) for k, v in runs.items()}}


# Float64 m×m matrices alive at the MLP path's peak: H (the caller's, kept for the reconstruction
# errors) and two of H⁻¹'s size while a step gathers the kept rows, then columns (the damped H
# and its Cholesky factor are freed once H⁻¹ exists). Before commit 2661e83 there were 5: the
# damped H stayed alive and the old H⁻¹ lived until the new one was assigned (bench/layer_scale.py).
PATH_M2 = 3
# Float64 m×d matrices then: W_dense, the dense level's copy of it, the step's W and G (H·W_dense)
# (levels are kept in float64 until the pass ends); 5 before commit 2661e83 (W and G were copies).
PATH_MD = 4


def supernet_memory(s: dict, tokens: int, seq: int = 2048, batch: int = 8, cache_bytes: int = GiB) -> dict:
    """One supernet_layer job's bytes above the process's start, per phase (the components alive
    at that phase's peak) and their maximum: the dense layer in fp32, `_Stream`'s cache, and
      statistics/mlp  H (fp64), the batch's input, and the larger of the MLP forward's three m-wide
                      intermediates and Hessian.add's fp32 XᵀX with its fp64 copy (beside the MLP
                      input, unless the cache holds it);
      path/mlp        PATH_M2 m×m and PATH_MD m×d float64 matrices, the carried attention projection;
      propagate       both carried projections, three d-wide batch tensors (residual input, norm,
                      output) and, where the MLP input is not cached, its forward again.
    The per-batch terms grow with tokens up to `batch` sequences; the cache up to 1 GiB. Checked
    against bench/layer_scale.py's 8B-shaped jobs (model/measured 0.94-1.07 per phase)."""
    d, m, w = s["hidden"], s["intermediate"], s["heads"] * s["head_dim"]
    n_seq = max(1, tokens // seq)
    B = min(batch, n_seq) * seq  # tokens of one streamed batch
    stream = stream_cache(s, n_seq, seq, batch, cache_bytes)
    z = 0 if stream["per_batch"]["mlp"] == 1 else 4 * B * m  # the MLP input, when not in the cache
    base = {"layer": 4 * layer_params(s), "cache": stream["held_bytes"]}
    phases = {
        "statistics/mlp": dict(
            base, hessian=8 * m * m, batch_input=4 * B * d, batch_peak=max(3 * 4 * B * m, 12 * m * m + z)
        ),
        "path/mlp": dict(base, hessians=PATH_M2 * 8 * m * m, weights_f64=PATH_MD * 8 * m * d, carried=4 * d * w),
        "propagate": dict(base, carried=4 * d * (w + m), batch=3 * 4 * B * d + (3 * z if z else 0)),
    }
    totals = {k: sum(v.values()) for k, v in phases.items()}
    return {
        "supernet_job_peak": max(totals.values()),
        "supernet_peak_phase": max(totals, key=totals.get),
        "supernet_phases": phases,
        "supernet_phase_totals": totals,
        "supernet_hessians": PATH_M2 * 8 * m * m,
        "supernet_hessian_one": 8 * m * m,
    }

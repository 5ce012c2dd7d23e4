"""Fitness of a candidate sub-network: KL(dense ‖ candidate) of next-token distributions.

Dense reference (`dense_topk`). The dense model runs once over the fitness split; per
position we keep the top-k log-probabilities, their token ids, and the log-probability
of everything else (the "rest" bucket). Memory is O(k) per position instead of O(vocab).

Coarsened KL. For a position with dense top-k ids i_1..i_k let
    P = (p_1, .., p_k, p_rest)   p_rest = 1 - Σ p_j
    Q = (q_1, .., q_k, q_rest)   q_j = candidate's probability of token i_j, q_rest = 1 - Σ q_j
Both are distributions over the same k+1 outcomes, so
    KL(P ‖ Q) = Σ_j p_j log(p_j / q_j) + p_rest log(p_rest / q_rest)
is a proper KL divergence: ≥ 0, zero when the candidate agrees with the dense model on
the top-k tokens and on the lumped tail mass, and never larger than the full-vocabulary
KL (coarsening cannot increase a divergence). With k = vocab it is the exact KL. Both
log-masses of the tail are taken as a log-sum-exp over the non-top-k logits (not
log(1 - Σ p)), which stays accurate when the top-k hold almost all the mass.
The fitness of a candidate is the mean coarsened KL over all scored positions, plus
optionally `hidden_mse_weight` × the relative hidden-state error at chosen layers
(paper Eq. 6): Σ‖h_cand − h_dense‖² / Σ‖h_dense‖² at each layer's output, averaged over layers.

Evaluation (`Evaluator`). A candidate (a genome: the kept-unit count of every sublayer)
is built from the physical supernet weights: `tyr.supernet.pruned_layer` slices the dense
layer tensors by the level's kept indices and takes its compensated output projection.
Sublayer modules are cached by (layer, sublayer, kept). Offspring differ from their
parent in a few sublayers only, so the parent's residual stream is cached at sublayer
boundaries on the stage's tokens and a candidate is recomputed only from its first
changed sublayer (`fitness`); `fitness_naive` rebuilds every layer from the level files
and reruns everything, and `benchmark_evaluator` measures both on the same tokens.

Genomes here are flat: `genome[2*l]` is layer l's attention kept heads, `genome[2*l+1]`
its MLP kept channels.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tyr.io import atomic_path

SUBLAYERS = ("attn", "mlp")


# ---- dense reference ---------------------------------------------------------------------


def read_split(tokens_zarr, split: str = "fitness") -> np.ndarray:
    import zarr

    return np.asarray(zarr.open_group(str(tokens_zarr), mode="r")[split][:], dtype=np.int32)


def tokens_digest(tokens: np.ndarray) -> str:
    """Fingerprint of a token split: ties `topk.zarr` to the exact tokens it was computed on."""
    return hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.int32).tobytes()).hexdigest()


def topk_logprobs(lm_head, hidden, k: int, chunk: int = 1024):
    """Top-k log-probs, their ids and the tail log-mass of `lm_head(hidden)` rows, chunked over rows."""
    import torch

    tops, ids, rests = [], [], []
    for h in hidden.split(chunk):
        logits = lm_head(h).float()
        lse = logits.logsumexp(-1)
        top, idx = logits.topk(k, dim=-1)
        tops.append(top - lse[:, None])
        ids.append(idx)
        rests.append(_tail_logsumexp(logits, idx) - lse)
    return torch.cat(tops), torch.cat(ids), torch.cat(rests)


def dense_topk(model_dir, tokens_zarr, out_zarr, *, k: int = 64, split: str = "fitness", batch_size: int = 4,
               dtype: str = "float32", chunk: int = 256) -> None:
    """Run the dense model once on `split` and store its top-k next-token log-probs.

    `out_zarr` (group, written atomically): `logp` [n_seq, seq_len, k] (`dtype`), `index`
    int32 [n_seq, seq_len, k], `logp_rest` float32 [n_seq, seq_len] (log of the mass outside
    the top-k, for the KL's tail term); attrs `k`, `split`, `tokens_sha256`, `model`.
    """
    import torch
    import zarr

    from tyr.model import load_model, threads_from_env

    threads_from_env()
    tokens = read_split(tokens_zarr, split)
    n, seq_len = tokens.shape
    model = load_model(model_dir)
    k = min(k, model.config.vocab_size)
    with atomic_path(out_zarr) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        logp = group.create_array("logp", shape=(n, seq_len, k), dtype=dtype, chunks=(1, seq_len, k))
        index = group.create_array("index", shape=(n, seq_len, k), dtype="int32", chunks=(1, seq_len, k))
        rest = group.create_array("logp_rest", shape=(n, seq_len), dtype="float32", chunks=(1, seq_len))
        with torch.inference_mode():
            for s in range(0, n, batch_size):
                ids = torch.from_numpy(tokens[s:s + batch_size]).long()
                hidden, _ = model.model(ids)  # final-normed hidden states
                top, idx, tail = topk_logprobs(model.lm_head, hidden.flatten(0, 1), k, chunk)
                b = ids.shape[0]
                logp[s:s + b] = top.view(b, seq_len, k).numpy().astype(dtype)
                index[s:s + b] = idx.view(b, seq_len, k).int().numpy()
                rest[s:s + b] = tail.view(b, seq_len).numpy()
        group.attrs.update({"k": k, "split": split, "tokens_sha256": tokens_digest(tokens), "model": str(model_dir)})


def coarse_kl_sum(logits, logp, index, logp_rest, overwrite: bool = False):
    """Σ over rows of KL(P ‖ Q) between the (top-k + rest) coarsenings (see module docstring).

    `overwrite=True` lets the tail mass be taken in place (the top-k entries of `logits`
    are set to -inf), saving a copy of a [rows, vocab] tensor per call.
    """
    import torch

    logits = logits.float()
    lse = logits.logsumexp(-1)
    logq = logits.gather(-1, index) - lse[:, None]
    if overwrite:
        logq_rest = logits.scatter_(-1, index, float("-inf")).logsumexp(-1) - lse
    else:
        logq_rest = _tail_logsumexp(logits, index) - lse
    kl_top = (logp.exp() * (logp - logq)).sum(-1)
    p_rest = logp_rest.exp()
    kl_rest = torch.where(p_rest > 0, p_rest * (logp_rest - logq_rest), torch.zeros_like(p_rest))
    return (kl_top + kl_rest).sum()


def _tail_logsumexp(logits, index):
    """log Σ exp(logits) over the entries not in `index` (-inf when there are none)."""
    return logits.scatter(-1, index, float("-inf")).logsumexp(-1)


# ---- candidate evaluation ------------------------------------------------------------------


@dataclass
class _Batch:
    ids: object          # [b, T] long
    logp: object         # [b*T, k] float32, dense top-k log-probs
    index: object        # [b*T, k] long
    logp_rest: object    # [b*T] float32


def resolve_head_dtype(name: str) -> str:
    """`auto`: bfloat16 where the hardware multiplies it natively (CUDA, or a CPU with
    AVX512-BF16/AMX), else float32. The lm_head is a third of a pruned model's fitness cost;
    in bf16 it runs ~3x faster here, and fitness values move by ~1e-3 (bench/head_dtype.py)."""
    if name != "auto":
        if name not in ("float32", "bfloat16"):
            raise ValueError(f"head_dtype must be auto, float32 or bfloat16, got {name!r}")
        return name
    import torch

    if torch.cuda.is_available():
        return "bfloat16"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def _nbytes(module) -> int:
    return 0 if module is None else sum(t.numel() * t.element_size() for t in module.parameters())


def _empty_level(sublayer: str) -> dict:
    import torch

    none = torch.empty(0, dtype=torch.int64)
    if sublayer == "attn":
        return {"kept_heads": none, "kept_kv_heads": none, "q_to_kv": none}
    return {"kept_channels": none}


class Evaluator:
    """Fitness of genomes on the current token sample, recomputing only what changed.

    Usage per selection stage: `set_tokens(seq_ids)`, `set_parent(parent)` (caches the
    parent's residual stream and gives `parent_fitness`), then `fitness(child)` per child.
    `cache_bytes` bounds the parent cache: when all 2L sublayer boundaries do not fit,
    evenly spaced ones are kept and a child restarts from the last one before its first change.
    """

    def __init__(self, supernet_json, model_dir, topk_zarr, tokens_zarr, *, split: str = "fitness",
                 batch_size: int = 4, hidden_mse_weight: float = 0.0, hidden_mse_layers=(),
                 cache_bytes: int = 2 << 30, module_cache_bytes: int = 1 << 30, chunk: int = 128,
                 head_dtype: str = "float32"):
        import torch
        import zarr

        from tyr.model import load_model, spec_from_config
        from tyr.supernet import read_supernet

        self.model = load_model(model_dir)
        self.config = self.model.config
        self.spec = spec_from_config(self.config)
        self.n_layers = self.config.num_hidden_layers
        self.n_sublayers = 2 * self.n_layers
        self.index = read_supernet(supernet_json)
        if len(self.index["layers"]) != self.n_layers:
            raise ValueError(f"{supernet_json}: {len(self.index['layers'])} layers, model has {self.n_layers}")
        self._paths = {(l, s, lvl["kept"]): lvl["path"]
                       for l, layer in enumerate(self.index["layers"]) for s in SUBLAYERS for lvl in layer[s]}
        self._dense = [dict(layer.state_dict()) for layer in self.model.model.layers]
        self.tokens = read_split(tokens_zarr, split)
        self.topk = zarr.open_group(str(topk_zarr), mode="r")
        digest = self.topk.attrs.get("tokens_sha256")
        if digest is not None and digest != tokens_digest(self.tokens):
            raise ValueError(f"{topk_zarr} was computed on other tokens than {tokens_zarr}[{split}]")
        self.n_seq, self.seq_len = self.tokens.shape
        self.batch_size = batch_size
        self.chunk = chunk
        self.hidden_mse_weight = float(hidden_mse_weight)
        self.mse_layers = tuple(sorted({int(l) for l in hidden_mse_layers})) if self.hidden_mse_weight else ()
        if self.hidden_mse_weight and not all(0 <= l < self.n_layers for l in self.mse_layers or [-1]):
            raise ValueError(f"hidden_mse_layers must name layers in 0..{self.n_layers - 1}, got {hidden_mse_layers}")
        self.cache_bytes = cache_bytes
        self._modules = OrderedDict()
        self._module_cache_bytes = module_cache_bytes
        self._module_bytes = 0
        self.head_dtype = resolve_head_dtype(head_dtype)
        self._head_weight = self.model.lm_head.weight.detach().to(getattr(torch, self.head_dtype))
        self.evaluations = 0
        self._batches = []
        self._clear_parent()

    # -- tokens and parent --------------------------------------------------------------

    def set_tokens(self, seq_ids) -> None:
        """Score on these sequences of the split (all their positions) from now on."""
        import torch

        seq_ids = np.sort(np.asarray(seq_ids, dtype=np.int64))
        logp = np.asarray(self.topk["logp"].oindex[seq_ids], dtype=np.float32)
        index = np.asarray(self.topk["index"].oindex[seq_ids]).astype(np.int64)
        rest = np.asarray(self.topk["logp_rest"].oindex[seq_ids], dtype=np.float32)
        self._batches = []
        for s in range(0, len(seq_ids), self.batch_size):
            sl = slice(s, s + self.batch_size)
            self._batches.append(_Batch(
                ids=torch.from_numpy(self.tokens[seq_ids[sl]]).long(),
                logp=torch.from_numpy(logp[sl]).flatten(0, 1),
                index=torch.from_numpy(index[sl]).flatten(0, 1),
                logp_rest=torch.from_numpy(rest[sl]).flatten(0, 1),
            ))
        self.n_positions = len(seq_ids) * self.seq_len
        dummy = torch.zeros(1, self.seq_len, 1, dtype=self.model.lm_head.weight.dtype)
        self._pos = self.model.model.position_embeddings(dummy)
        self._clear_parent()
        self._dense_hidden = self._dense_states() if self.mse_layers else None

    def set_parent(self, genome) -> float:
        """Cache `genome`'s residual stream on the current tokens; returns its fitness."""
        genome = tuple(int(x) for x in genome)
        self._clear_parent()
        per_boundary = self.n_positions * self.config.hidden_size * 4
        n_ckpt = int(min(self.n_sublayers, max(1, self.cache_bytes // max(per_boundary, 1))))
        self._ckpt_at = sorted(set(np.round(np.linspace(0, self.n_sublayers - 1, n_ckpt)).astype(int).tolist()))
        self._ckpt = [dict() for _ in self._batches]
        self.parent_fitness, self._parent_mse = self._forward(genome, 0, store=True)
        self._parent = genome
        return self.parent_fitness

    def _clear_parent(self) -> None:
        self._parent, self._ckpt, self._ckpt_at, self._parent_mse = None, [], [0], None
        self.parent_fitness = None

    # -- fitness ------------------------------------------------------------------------

    def fitness(self, genome, incremental: bool = True) -> float:
        """Fitness of `genome` on the current tokens (lower is better)."""
        genome = tuple(int(x) for x in genome)
        if not incremental or self._parent is None:
            return self._forward(genome, 0)[0]
        if genome == self._parent:
            return self.parent_fitness
        first = next(i for i, (a, b) in enumerate(zip(genome, self._parent)) if a != b)
        start = max(c for c in self._ckpt_at if c <= first)
        return self._forward(genome, start)[0]

    def fitness_naive(self, genome) -> float:
        """Reference path: rebuild every layer from its level files and rerun all of them."""
        import torch

        from tyr.supernet import load_level, pruned_layer

        genome = tuple(int(x) for x in genome)
        layers = []
        for l in range(self.n_layers):
            levels = [load_level(self._paths[(l, s, genome[2 * l + j])])[0] if genome[2 * l + j] else _empty_level(s)
                      for j, s in enumerate(SUBLAYERS)]
            layers.append(pruned_layer(self.spec, self.config, l, self._dense[l], *levels))
        kl, mse_num = 0.0, np.zeros(len(self.mse_layers))
        with torch.inference_mode():
            for b, batch in enumerate(self._batches):
                h = self._embed(batch)
                for l, layer in enumerate(layers):
                    h = layer(h, self._pos)
                    if l in self.mse_layers:
                        mse_num[self.mse_layers.index(l)] += self._sq_err(h, b, l)
                kl += self._kl_sum(h, batch)
        self.evaluations += 1
        return self._combine(kl, mse_num)

    def _forward(self, genome, start: int, store: bool = False):
        """Run sublayers start..2L-1 from the parent's cached state at `start` (or embeddings)."""
        import torch

        modules = [self._module(i, genome[i]) if i >= start else None for i in range(self.n_sublayers)]
        ckpt_at = set(self._ckpt_at) if store else ()
        mse_num = np.zeros(len(self.mse_layers))
        for j, l in enumerate(self.mse_layers):
            if 2 * l + 2 <= start:  # this layer's output is still the parent's
                mse_num[j] = self._parent_mse[j]
        kl = 0.0
        with torch.inference_mode():
            for b, batch in enumerate(self._batches):
                h = self._embed(batch) if start == 0 else self._ckpt[b][start]
                for i in range(start, self.n_sublayers):
                    if i in ckpt_at:
                        self._ckpt[b][i] = h
                    h = self._sublayer(i, modules[i], h)
                    l = i // 2
                    if i % 2 == 1 and l in self.mse_layers:
                        mse_num[self.mse_layers.index(l)] += self._sq_err(h, b, l)
                kl += self._kl_sum(h, batch)
        self.evaluations += 1
        return self._combine(kl, mse_num), mse_num

    def _combine(self, kl_sum: float, mse_num) -> float:
        fitness = kl_sum / self.n_positions
        if self.mse_layers:
            fitness += self.hidden_mse_weight * float(np.mean(mse_num / self._dense_sq))
        return float(fitness)

    # -- pieces -------------------------------------------------------------------------

    def _embed(self, batch):
        return self.model.model.embed_tokens(batch.ids)

    def _sublayer(self, i: int, module, h):
        """Residual branch of sublayer i, exactly as `TyrDecoderLayer.forward` composes it."""
        if module is None:  # 0 kept units: the branch is gone
            return h
        layer = self.model.model.layers[i // 2]
        if i % 2 == 0:
            return h + module(layer.input_layernorm(h), self._pos)
        return h + module(layer.post_attention_layernorm(h))

    def _kl_sum(self, h, batch) -> float:
        import torch

        h = self.model.model.norm(h).flatten(0, 1)
        total = 0.0
        for s in range(0, h.shape[0], self.chunk):
            sl = slice(s, s + self.chunk)  # [chunk, vocab] logits stay cache-friendly
            logits = torch.nn.functional.linear(h[sl].to(self._head_weight.dtype), self._head_weight)
            total += float(coarse_kl_sum(logits, batch.logp[sl], batch.index[sl], batch.logp_rest[sl],
                                         overwrite=True))
        return total

    def _module(self, i: int, kept: int):
        """The attention or MLP module of sublayer i at the level with `kept` units.

        LRU cached up to `module_cache_bytes` of weights: the whole supernet need not fit in
        memory, and a search keeps revisiting the few levels around its parent.
        """
        key = (i, kept)
        if key in self._modules:
            self._modules.move_to_end(key)
            return self._modules[key]
        module = self._build(i // 2, SUBLAYERS[i % 2], kept) if kept else None
        self._modules[key] = module
        self._module_bytes += _nbytes(module)
        while self._module_bytes > self._module_cache_bytes and len(self._modules) > 1:
            self._module_bytes -= _nbytes(self._modules.popitem(last=False)[1])
        return module

    def _build(self, layer: int, sublayer: str, kept: int):
        from tyr.supernet import load_level, pruned_layer

        level = load_level(self._paths[(layer, sublayer, kept)])[0]
        if sublayer == "attn":
            return pruned_layer(self.spec, self.config, layer, self._dense[layer], level, _empty_level("mlp")).self_attn
        return pruned_layer(self.spec, self.config, layer, self._dense[layer], _empty_level("attn"), level).mlp

    def _dense_states(self):
        """Dense outputs of the MSE layers on the current tokens, and their squared norms."""
        import torch

        states = [dict() for _ in self._batches]
        self._dense_sq = np.zeros(len(self.mse_layers))
        with torch.inference_mode():
            for b, batch in enumerate(self._batches):
                h = self._embed(batch)
                for l in range(max(self.mse_layers) + 1):
                    h = self.model.model.layers[l](h, self._pos)
                    if l in self.mse_layers:
                        states[b][l] = h
                        self._dense_sq[self.mse_layers.index(l)] += float(h.double().pow(2).sum())
        return states

    def _sq_err(self, h, b: int, layer: int) -> float:
        return float((h - self._dense_hidden[b][layer]).double().pow(2).sum())


# ---- speed ----------------------------------------------------------------------------------


def benchmark_evaluator(evaluator: Evaluator, parent, candidates, seq_ids, repeats: int = 1) -> dict:
    """Fitness evaluations per second on the same tokens: incremental vs full rerun vs naive.

    incremental: parent cache (its cost amortised over the candidates) + reruns from the
    first changed sublayer, with warm module caches as in a running search;
    full: cached modules, every sublayer rerun; naive: rebuild from level files, rerun all.
    The modes alternate `repeats` times and each keeps its fastest round, which damps
    interference from other processes on a shared machine.
    """
    evaluator.set_tokens(seq_ids)
    evaluator.set_parent(parent)
    for c in candidates:  # warm the module cache (a search reuses modules across generations)
        evaluator.fitness(c)

    def incremental():
        evaluator.set_parent(parent)
        return [evaluator.fitness(c) for c in candidates]

    modes = {"incremental": incremental,
             "full": lambda: [evaluator.fitness(c, incremental=False) for c in candidates],
             "naive": lambda: [evaluator.fitness_naive(c) for c in candidates]}
    seconds, values = {m: float("inf") for m in modes}, {}
    for _ in range(repeats):
        for mode, run in modes.items():
            t0 = time.perf_counter()
            values[mode] = run()
            seconds[mode] = min(seconds[mode], time.perf_counter() - t0)
    n = len(candidates)
    diff = max(float(np.max(np.abs(np.subtract(values[m], values["naive"])))) for m in ("incremental", "full"))
    return {
        "candidates": n,
        "tokens": evaluator.n_positions,
        "repeats": repeats,
        **{f"{m}_eval_per_s": n / seconds[m] for m in modes},
        "speedup_vs_naive": seconds["naive"] / seconds["incremental"],
        "speedup_vs_full": seconds["full"] / seconds["incremental"],
        "max_abs_diff": diff,
    }

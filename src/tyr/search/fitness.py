"""Fitness of a candidate sub-network: KL(dense ‖ candidate) of next-token distributions.

Dense reference (`dense_topk`). The dense model runs once over the fitness and selection splits; per
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
The fitness of a candidate is the mean coarsened KL over all scored positions (the paper's
Eq. 6 adds a hidden-state error term at chosen layers; it is not implemented: on the
models this project measures the KL alone decides, and a half-wired option helps no one).

Evaluation (`Evaluator`). A candidate (a genome: the kept-unit count of every sublayer)
is built from the physical supernet weights: `tyr.supernet.format.pruned_layer` slices the dense
layer tensors by the level's kept indices and takes its compensated output projection.
Sublayer modules are cached by (layer, sublayer, kept) (`ModuleCache`). Offspring differ from their
parent in a few sublayers only, so the parent's residual stream is cached at sublayer
boundaries on the stage's tokens and a candidate is recomputed only from its first
changed sublayer (`fitness`); `fitness_naive` rebuilds every layer from the level files
and reruns everything, and `benchmark_evaluator` measures both on the same tokens.

Genomes here are flat: `genome[2*l]` is layer l's attention kept heads, `genome[2*l+1]`
its MLP kept channels.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from tyr.calib import stores
from tyr.core.io import atomic_path, write_checksums
from tyr.model import adapter
from tyr.model.spec import SUBLAYERS

# ---- dense reference ---------------------------------------------------------------------


def read_scored_split(topk_zarr, tokens_zarr, split: str):
    """A split's tokens and its group of the dense top-k store, checked to belong together."""
    import zarr

    tokens = stores.read_tokens(tokens_zarr, split)
    topk = zarr.open_group(str(topk_zarr), mode="r")
    if split not in topk:
        raise ValueError(f"{topk_zarr} holds no dense top-k of the {split!r} split (has {list(topk.group_keys())})")
    if topk[split].attrs.get("tokens_sha256") != stores.tokens_digest(tokens):
        raise ValueError(f"{topk_zarr} was computed on other tokens than {tokens_zarr}[{split}]")
    return tokens, topk[split]


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


SCORED_SPLITS = (stores.FITNESS, stores.SELECTION)  # the search's samples, and the final choice among iterations


def dense_topk(model_dir, tokens_zarr, out_zarr, *, k: int = 64, splits=SCORED_SPLITS, batch_size: int = 4,
               dtype: str = "float32", chunk: int = 256) -> None:
    """Run the dense model once on each split and store its top-k next-token log-probs.

    `out_zarr` (group, written atomically) holds one subgroup per non-empty split with `logp`
    [n_seq, seq_len, k] (`dtype`), `index` int32 [n_seq, seq_len, k], `logp_rest` float32
    [n_seq, seq_len] (log of the mass outside the top-k, for the KL's tail term), attrs
    `tokens_sha256`; the group's attrs hold `k` and `model`.
    """
    import zarr

    from tyr.core.device import threads_from_env
    from tyr.model.adapter import load_model

    threads_from_env()
    model = load_model(model_dir)
    k = min(k, model.config.vocab_size)
    present = set(zarr.open_group(str(tokens_zarr), mode="r").array_keys())
    with atomic_path(out_zarr) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        for split in (s for s in splits if s in present):
            tokens = stores.read_tokens(tokens_zarr, split)
            if len(tokens):
                _write_topk(group.create_group(split), model, tokens, k, batch_size, dtype, chunk)
        group.attrs.update({"k": k, "splits": [s for s in splits if s in group], "model": str(model_dir)})
        write_checksums(tmp)


def _write_topk(group, model, tokens, k, batch_size, dtype, chunk) -> None:
    import torch

    n, seq_len = tokens.shape
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
    group.attrs.update({"tokens_sha256": stores.tokens_digest(tokens)})


def coarse_kl_sum(logits, logp, index, logp_rest, overwrite: bool = False):
    """Σ over rows of KL(P ‖ Q) between the (top-k + rest) coarsenings (see module docstring)."""
    return coarse_kl_rows(logits, logp, index, logp_rest, overwrite).sum()


def coarse_kl_rows(logits, logp, index, logp_rest, overwrite: bool = False):
    """KL(P ‖ Q) of every row between the (top-k + rest) coarsenings.

    One exponential pass over the vocabulary: e = exp(logits - max) gives the normaliser
    (Σ e) and, with the top-k entries zeroed, the tail mass as a sum of the tail's own terms
    (no 1 - Σ p cancellation). Two logsumexps, as before, took a third of a search's time.
    A tail that underflows float32 (every tail logit ~87 below the max) counts as float32's
    smallest normal mass: its KL term stays finite, and large. `overwrite=True` lets a float32
    `logits` be used as the scratch buffer.
    """
    import torch

    x = logits.float()
    top = x.gather(-1, index)
    if x is logits and not overwrite:
        x = x.clone()
    m = x.amax(-1)
    e = x.sub_(m[:, None]).exp_()
    lse = e.sum(-1).log() + m
    tail = e.scatter_(-1, index, 0.0).sum(-1).clamp_min(torch.finfo(torch.float32).tiny)
    logq_rest = tail.log() + m - lse
    logq = top - lse[:, None]
    kl_top = (logp.exp() * (logp - logq)).sum(-1)
    p_rest = logp_rest.exp()
    kl_rest = torch.where(p_rest > 0, p_rest * (logp_rest - logq_rest), torch.zeros_like(p_rest))
    return kl_top + kl_rest


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


def resolve_compute_dtype(name: str, device_type: str = "any") -> str:
    """`auto`: bfloat16 where the hardware multiplies it natively (`tyr.core.device`), else float32.

    The fitness forward multiplies in this dtype: every sublayer branch and the LM head. The
    residual stream, the norms and the KL stay float32, so the error does not compound over
    depth. Here bf16 matmuls run 2.2-2.5x fp32 (AVX512-BF16) and the ranking of candidates is
    kept (Spearman vs fp32 in bench/fitness_dtype.py)."""
    from tyr.core.device import resolve_dtype

    try:
        return resolve_dtype(name, device_type)
    except ValueError:
        raise ValueError(f"search.dtype must be auto, float32 or bfloat16, got {name!r}") from None


def _nbytes(module) -> int:
    return 0 if module is None else sum(t.numel() * t.element_size() for t in module.parameters())


def _empty_level(sublayer: str) -> dict:
    import torch

    none = torch.empty(0, dtype=torch.int64)
    if sublayer == "attn":
        return {"kept_heads": none, "kept_kv_heads": none, "q_to_kv": none}
    return {"kept_channels": none}


class ModuleCache:
    """Sublayer modules built from the supernet's level files, LRU-cached up to `max_bytes` of
    weights: the whole supernet need not fit in memory, and a search keeps revisiting the few
    levels around its parent. The parent's own modules are pinned outside that budget (`pin`).
    Sublayer i is layer i // 2's attention (even i) or MLP (odd i)."""

    def __init__(self, supernet_json, spec, config, dense: list, max_bytes: int, dtype=None, device="cpu"):
        from tyr.supernet.format import read_supernet

        index = read_supernet(supernet_json)
        if len(index["layers"]) != config.num_hidden_layers:
            raise ValueError(f"{supernet_json}: {len(index['layers'])} layers, model has {config.num_hidden_layers}")
        self._paths = {(l, s, lvl["kept"]): lvl["path"]
                       for l, layer in enumerate(index["layers"]) for s in SUBLAYERS for lvl in layer[s]}
        self.spec, self.config, self.dense, self.max_bytes = spec, config, dense, max_bytes
        self.dtype, self.device = dtype, device
        self._modules, self._bytes = OrderedDict(), 0
        self._pinned = {}
        self.builds = 0

    def get(self, i: int, kept: int):
        """The module of sublayer i at the level with `kept` units (None: 0 units, no branch)."""
        key = (i, kept)
        if key in self._pinned:
            return self._pinned[key]
        if key in self._modules:
            self._modules.move_to_end(key)
            return self._modules[key]
        module = self._build(key)
        self._insert(key, module)
        return module

    def pin(self, genome) -> None:
        """Hold the modules of `genome` (kept units per sublayer: the search's parent) outside
        the LRU budget; the previous parent's go back to the LRU. A child shares all but a few
        sublayers with its parent, so it builds only those even when one pruned model exceeds
        `max_bytes` (Llama-3.1-8B in bf16: ~8 GB against 1 GiB, where rebuilding nearly every
        sublayer was 73 of the 81 s of an 8-GPU generation in docs/cost-model.md)."""
        keys = {(i, int(kept)) for i, kept in enumerate(genome)}
        for key in [k for k in self._pinned if k not in keys]:
            self._insert(key, self._pinned.pop(key))
        for key in keys - self._pinned.keys():
            if key in self._modules:
                module = self._modules.pop(key)
                self._bytes -= _nbytes(module)
            else:
                module = self._build(key)
            self._pinned[key] = module

    def _build(self, key):
        i, kept = key
        self.builds += 1
        return self.build(i // 2, SUBLAYERS[i % 2], kept).to(self.device) if kept else None

    def _insert(self, key, module) -> None:
        self._modules[key] = module
        self._bytes += _nbytes(module)
        while self._bytes > self.max_bytes and len(self._modules) > 1:
            self._bytes -= _nbytes(self._modules.popitem(last=False)[1])

    def build(self, layer: int, sublayer: str, kept: int):
        from tyr.supernet.format import pruned_layer

        level = self.level(layer, sublayer, kept)
        dense, dtype = self.dense[layer], self.dtype
        if sublayer == "attn":
            return pruned_layer(self.spec, self.config, layer, dense, level, _empty_level("mlp"), dtype).self_attn
        return pruned_layer(self.spec, self.config, layer, dense, _empty_level("attn"), level, dtype).mlp

    def level(self, layer: int, sublayer: str, kept: int) -> dict:
        from tyr.supernet.format import load_level

        return load_level(self._paths[(layer, sublayer, kept)])[0] if kept else _empty_level(sublayer)


class ParentCache:
    """The parent genome's residual stream at sublayer boundaries, on the current tokens.

    When all 2L boundaries do not fit in `max_bytes`, evenly spaced ones are kept; a child is
    recomputed from the last kept boundary before its first change (`start`).
    """

    def __init__(self):
        self.genome, self.fitness, self.at, self.states = None, None, [0], []

    def plan(self, n_batches: int, n_sublayers: int, bytes_per_boundary: int, max_bytes: int) -> set:
        n = int(min(n_sublayers, max(1, max_bytes // max(bytes_per_boundary, 1))))
        self.at = sorted(set(np.round(np.linspace(0, n_sublayers - 1, n)).astype(int).tolist()))
        self.states = [dict() for _ in range(n_batches)]
        return set(self.at)

    def begin(self, genome, *plan_args) -> tuple[set, int | None]:
        """A new parent: the boundaries to store and where its forward starts (None: cached)."""
        if self.genome is None:
            return self.plan(*plan_args), 0
        return set(self.at), self.start(genome)

    def start(self, genome) -> int | None:
        """Where a child's forward resumes (None: the parent itself, or no parent cached)."""
        if self.genome is None or genome == self.genome:
            return None
        first = next(i for i, (a, b) in enumerate(zip(genome, self.genome)) if a != b)
        return max(c for c in self.at if c <= first)


def token_batches(tokens, topk, seq_ids, batch_size: int, device="cpu") -> list:
    """The sequences `seq_ids` and their dense top-k (none when `topk` is None), in batches of
    `batch_size` sequences, on `device`."""
    return [_Batch(*(None if t is None else t.to(device) for t in vars(b).values()))
            for b in _token_batches(tokens, topk, seq_ids, batch_size)]


def _token_batches(tokens, topk, seq_ids, batch_size: int) -> list:
    import torch

    if topk is None:
        return [_Batch(ids=torch.from_numpy(tokens[seq_ids[s:s + batch_size]]).long(), logp=None, index=None,
                       logp_rest=None) for s in range(0, len(seq_ids), batch_size)]
    logp = np.asarray(topk["logp"].oindex[seq_ids], dtype=np.float32)
    index = np.asarray(topk["index"].oindex[seq_ids]).astype(np.int64)
    rest = np.asarray(topk["logp_rest"].oindex[seq_ids], dtype=np.float32)
    batches = []
    for s in range(0, len(seq_ids), batch_size):
        sl = slice(s, s + batch_size)
        batches.append(_Batch(ids=torch.from_numpy(tokens[seq_ids[sl]]).long(),
                              logp=torch.from_numpy(logp[sl]).flatten(0, 1),
                              index=torch.from_numpy(index[sl]).flatten(0, 1),
                              logp_rest=torch.from_numpy(rest[sl]).flatten(0, 1)))
    return batches


def place_shared_modules(model, device) -> None:
    """The modules every candidate shares go to `device`: the embedding, the norms and the
    rotary table (the dense layers stay where they are: sublayers are built from them)."""
    m = model.model
    norms = [n for layer in m.layers for n in (layer.input_layernorm, layer.post_attention_layernorm)]
    for module in (m.embed_tokens, m.norm, m.rotary_emb, *norms):
        module.to(device)


class Evaluator:
    """Fitness of genomes on the current token sample, recomputing only what changed. Per stage:
    `set_tokens(seq_ids)`, `set_parent(parent)` (caches its residual stream, within `cache_bytes`:
    evenly spaced sublayer boundaries when not all fit), then `fitness(child)` per child.
    `use_split`: another split; `use_tokens` + `sequence_nll`: perplexity on any text."""

    def __init__(self, supernet_json, model_dir, topk_zarr, tokens_zarr, *, split: str = stores.FITNESS,
                 batch_size: int = 4, cache_bytes: int = 2 << 30, module_cache_bytes: int = 1 << 30,
                 chunk: int = 128, dtype: str = "float32", device: str = "cpu"):
        import torch

        from tyr.core.device import resolve_device
        from tyr.model.adapter import load_model
        from tyr.model.spec import spec_from_config

        self.model = load_model(model_dir)
        self.config, self.spec = self.model.config, spec_from_config(self.model.config)
        self.n_layers = self.config.num_hidden_layers
        self.n_sublayers = 2 * self.n_layers
        self._dense = [dict(layer.state_dict()) for layer in self.model.model.layers]
        self.device = torch.device(resolve_device(device))
        self.dtype = resolve_compute_dtype(dtype, self.device.type)  # the branches' and the head's
        self._compute = getattr(torch, self.dtype)
        self.modules = ModuleCache(supernet_json, self.spec, self.config, self._dense, module_cache_bytes,
                                   self._compute, self.device)
        self._stores = (topk_zarr, tokens_zarr)
        self.batch_size, self.chunk, self.cache_bytes = batch_size, chunk, cache_bytes
        self._head_weight = self.model.lm_head.weight.detach().to(self.device, self._compute)
        place_shared_modules(self.model, self.device)
        self.evaluations = 0
        self._kept = {}
        if split is not None:  # None: plain tokens come later (`use_tokens`)
            self.use_split(split)

    # -- tokens and parent --------------------------------------------------------------

    def use_split(self, split: str) -> None:
        """Score sequences of `split` from now on (its dense top-k must be in the top-k store)."""
        tokens, topk = read_scored_split(*self._stores, split)
        self.use_tokens(tokens, split)
        self.topk = topk

    def use_tokens(self, tokens, label: str = "text") -> None:
        """Score these token sequences [n, T] from now on, with no dense top-k: for
        `sequence_nll` (a genome's perplexity on text the dense model has not been run on)."""
        self.split, self.tokens, self.topk = label, np.asarray(tokens), None
        self.n_seq, self.seq_len = self.tokens.shape
        self._batches, self.parent = [], ParentCache()

    def set_tokens(self, seq_ids, keep: bool = False) -> None:
        """Score on these sequences of the split (all their positions) from now on.

        `keep=True` keeps these tokens' parent cache when other tokens are set later, so a
        token set scored every generation (the search's fixed last stage) re-caches only what
        a new parent changed. Kept sets are matched by split and sequence ids.
        """

        seq_ids = np.sort(np.asarray(seq_ids, dtype=np.int64))
        key = (self.split, tuple(seq_ids.tolist()))
        if key in self._kept:
            self._batches, self.n_positions, self._pos, self.parent = self._kept[key]
            return
        self._batches = token_batches(self.tokens, self.topk, seq_ids, self.batch_size, self.device)
        self.n_positions = len(seq_ids) * self.seq_len
        self._pos = adapter.rotary(self.config, self.seq_len, device=self.device, dtype=self._compute)
        self.parent = ParentCache()
        if keep:
            self._kept[key] = (self._batches, self.n_positions, self._pos, self.parent)

    @property
    def parent_fitness(self):
        return self.parent.fitness

    def set_parent(self, genome) -> float:
        """Cache `genome`'s residual stream on the current tokens; returns its fitness. When a
        parent is cached on these tokens already, only the sublayers from its first change on
        are recomputed."""
        genome = tuple(int(x) for x in genome)
        self.modules.pin(genome)
        at, start = self.parent.begin(genome, len(self._batches), self.n_sublayers,
                                      self.n_positions * self.config.hidden_size * 4, self.cache_bytes)
        if start is not None:
            self.parent.fitness = self._forward(genome, start, store=at)
            self.parent.genome = genome
        return self.parent.fitness

    # -- fitness ------------------------------------------------------------------------

    def fitness(self, genome, incremental: bool = True) -> float:
        """Fitness of `genome` on the current tokens (lower is better)."""
        genome = tuple(int(x) for x in genome)
        if not incremental or self.parent.genome is None:
            return self._forward(genome, 0)
        start = self.parent.start(genome)
        return self.parent.fitness if start is None else self._forward(genome, start)

    def sequence_kl(self, genome) -> np.ndarray:
        """Mean KL of each current sequence under `genome` (a full forward; no parent cache):
        the per-sequence values a paired comparison of two genomes needs."""
        return self._per_sequence(genome, self._kl_rows)

    def sequence_nll(self, genome) -> np.ndarray:
        """Mean negative log-likelihood of each current sequence's next tokens under `genome`
        (no dense reference needed): exp of the mean is its perplexity on these tokens."""
        return self._per_sequence(genome, lambda h, batch: head_nll_rows(
            self.model.model.norm(h[:, :-1]).flatten(0, 1), self._head_weight, batch.ids[:, 1:].flatten(), self.chunk))

    def _per_sequence(self, genome, rows) -> np.ndarray:
        out = [rows(h, batch).view(len(batch.ids), -1).mean(1).double().cpu().numpy()
               for batch, h in self._final_states(tuple(int(x) for x in genome), 0)]
        self.evaluations += 1
        return np.concatenate(out)

    def _forward(self, genome, start: int, store=()) -> float:
        """Fitness from sublayer `start` on (see `_final_states`)."""
        kl = sum(float(self._kl_rows(h, batch).sum()) for batch, h in self._final_states(genome, start, store))
        self.evaluations += 1
        return kl / self.n_positions

    def _final_states(self, genome, start: int, store=()):
        """Per batch, the last hidden states: sublayers start..2L-1 run from the parent's cached
        state at `start` (or the embeddings), keeping the states at the boundaries in `store`
        as the parent's."""
        import torch

        modules = [self.modules.get(i, genome[i]) if i >= start else None for i in range(self.n_sublayers)]
        with torch.inference_mode():
            for b, batch in enumerate(self._batches):
                h = self.model.model.embed_tokens(batch.ids) if start == 0 else self.parent.states[b][start]
                for i in range(start, self.n_sublayers):
                    if i in store:
                        self.parent.states[b][i] = h
                    h = self._sublayer(i, modules[i], h)
                yield batch, h

    # -- pieces -------------------------------------------------------------------------

    def _sublayer(self, i: int, module, h):
        """Residual branch of sublayer i, as `TyrDecoderLayer.forward` composes it; the branch
        multiplies in the compute dtype, the residual stream stays in h's (float32)."""
        if module is None:  # 0 kept units: the branch is gone
            return h
        layer = self.model.model.layers[i // 2]
        if i % 2 == 0:
            return h + module(layer.input_layernorm(h).to(self._compute), self._pos).to(h.dtype)
        return h + module(layer.post_attention_layernorm(h).to(self._compute)).to(h.dtype)

    def _kl_rows(self, h, batch):
        return head_kl_rows(self.model.model.norm(h).flatten(0, 1), self._head_weight, batch, self.chunk)


def head_kl_rows(h, head_weight, batch, chunk: int):
    """KL to the dense top-k of every position of the batch, from its final-normed hidden
    states `h` [positions, hidden], through the LM head in chunks of `chunk` positions."""
    import torch

    rows = []
    for s in range(0, h.shape[0], chunk):
        sl = slice(s, s + chunk)  # [chunk, vocab] logits stay cache-friendly
        logits = torch.nn.functional.linear(h[sl].to(head_weight.dtype), head_weight)
        rows.append(coarse_kl_rows(logits, batch.logp[sl], batch.index[sl], batch.logp_rest[sl], overwrite=True))
    return torch.cat(rows)


def head_nll_rows(h, head_weight, targets, chunk: int):
    """−log p(target) of every position, from final-normed hidden states `h` [positions, hidden],
    through the LM head in chunks of `chunk` positions (as `head_kl_rows`: the full-vocabulary
    logits of a whole batch would not stay small on a larger model)."""
    import torch

    rows = []
    for s in range(0, h.shape[0], chunk):
        logits = torch.nn.functional.linear(h[s:s + chunk].to(head_weight.dtype), head_weight).float()
        rows.append(torch.nn.functional.cross_entropy(logits, targets[s:s + chunk], reduction="none"))
    return torch.cat(rows)


def fitness_naive(ev: Evaluator, genome) -> float:
    """Reference path: rebuild every layer from its level files and rerun all of them, in
    float32 whatever the evaluator's compute dtype (the baseline every speed-up is measured
    against, and the values a bf16 fitness is checked against)."""
    import torch

    from tyr.supernet.format import pruned_layer

    genome = tuple(int(x) for x in genome)
    layers = [pruned_layer(ev.spec, ev.config, l, ev._dense[l],
                           *(ev.modules.level(l, s, genome[2 * l + j]) for j, s in enumerate(SUBLAYERS)))
              for l in range(ev.n_layers)]
    layers = [layer.to(ev.device) for layer in layers]
    head = ev.model.lm_head.weight.detach().to(ev.device, torch.float32)
    kl = 0.0
    with torch.inference_mode():
        for batch in ev._batches:
            h = ev.model.model.embed_tokens(batch.ids)
            pos = ev.model.model.position_embeddings(h)
            for layer in layers:
                h = layer(h, pos)
            kl += float(head_kl_rows(ev.model.model.norm(h).flatten(0, 1), head, batch, ev.chunk).sum())
    ev.evaluations += 1
    return kl / ev.n_positions


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
             "naive": lambda: [fitness_naive(evaluator, c) for c in candidates]}
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

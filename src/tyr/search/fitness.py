"""The fitness of a candidate sub-network: its coarsened KL to the dense model (`tyr.search.kl`)
on a sample of calibration tokens, against the dense reference (`tyr.search.reference`).

A candidate is given by its kept units (`kept[i]`: sublayer i's kept heads or channels, flat in
the order attn 0, mlp 0, attn 1, ...; `SearchSpace.kept_units` converts a genome). It is built
from the physical supernet weights: `tyr.supernet.format.pruned_layer` slices the dense layer
tensors by the level's kept indices and takes its compensated output projection. Sublayer
modules are cached by (sublayer, kept) (`ModuleCache`). Offspring differ from their parent in
a few sublayers only, so the parent's residual stream is cached at sublayer boundaries on the
stage's tokens and a candidate is recomputed only from its first changed sublayer
(`Evaluator.fitness`); `fitness_naive` rebuilds every layer from the level files and reruns
everything: the reference every speed-up is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from tyr.calib import stores
from tyr.model import adapter
from tyr.model.spec import SUBLAYERS
from tyr.search.caches import ModuleCache, ParentCache
from tyr.search.kl import head_kl_rows, head_nll_rows
from tyr.search.reference import read_scored_split


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


@dataclass
class Batch:
    """Sequences of the sample and, when scored against the dense model, their dense top-k."""

    ids: object  # [b, T] long
    logp: object = None  # [b*T, k] float32, dense top-k log-probs
    index: object = None  # [b*T, k] long
    logp_rest: object = None  # [b*T] float32

    def to(self, device) -> Batch:
        return Batch(
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                for f in fields(self)
            }
        )


def token_batches(tokens, topk, seq_ids, batch_size: int, device="cpu") -> list[Batch]:
    """The sequences `seq_ids` and their dense top-k (none when `topk` is None), in batches of
    `batch_size` sequences, on `device`."""
    import torch

    if topk is None:
        return [
            Batch(torch.from_numpy(tokens[seq_ids[s : s + batch_size]]).long()).to(device)
            for s in range(0, len(seq_ids), batch_size)
        ]
    logp = np.asarray(topk["logp"].oindex[seq_ids], dtype=np.float32)
    index = np.asarray(topk["index"].oindex[seq_ids]).astype(np.int64)
    rest = np.asarray(topk["logp_rest"].oindex[seq_ids], dtype=np.float32)
    batches = []
    for s in range(0, len(seq_ids), batch_size):
        sl = slice(s, s + batch_size)
        batches.append(
            Batch(
                torch.from_numpy(tokens[seq_ids[sl]]).long(),
                torch.from_numpy(logp[sl]).flatten(0, 1),
                torch.from_numpy(index[sl]).flatten(0, 1),
                torch.from_numpy(rest[sl]).flatten(0, 1),
            ).to(device)
        )
    return batches


class TokenSample:
    """The tokens a fitness is computed on: a split (with its dense top-k) or plain text, the
    current sample of its sequences in device batches, the rotary table for their length, and
    the parent cache that belongs to that sample. A sample set with `keep=True` keeps its parent
    cache when another is set, so a sample scored every generation (the search's fixed last
    stage) re-caches only what a new parent changed; kept samples match by label and ids."""

    def __init__(self, config, device, compute_dtype, batch_size: int):
        self.config, self.device, self.compute, self.batch_size = config, device, compute_dtype, batch_size
        self._kept = {}
        self.use(np.zeros((0, 1), dtype=np.int32), None, "none")

    def use(self, tokens, topk, label: str) -> None:
        self.label, self.tokens, self.topk = label, np.asarray(tokens), topk
        self.n_seq, self.seq_len = self.tokens.shape
        self.batches, self.n_positions, self.pos, self.parent = [], 0, None, ParentCache()

    def select(self, seq_ids, keep: bool = False) -> None:
        seq_ids = np.sort(np.asarray(seq_ids, dtype=np.int64))
        key = (self.label, tuple(seq_ids.tolist()))
        if key in self._kept:
            self.batches, self.n_positions, self.pos, self.parent = self._kept[key]
            return
        self.batches = token_batches(self.tokens, self.topk, seq_ids, self.batch_size, self.device)
        self.n_positions = len(seq_ids) * self.seq_len
        self.pos = adapter.rotary(self.config, self.seq_len, device=self.device, dtype=self.compute)
        self.parent = ParentCache()
        if keep:
            self._kept[key] = (self.batches, self.n_positions, self.pos, self.parent)


def place_shared_modules(model, device) -> None:
    """The modules every candidate shares go to `device`: the embedding, the norms and the
    rotary table (the dense layers stay where they are: sublayers are built from them)."""
    m = model.model
    norms = [n for layer in m.layers for n in (layer.input_layernorm, layer.post_attention_layernorm)]
    for module in (m.embed_tokens, m.norm, m.rotary_emb, *norms):
        module.to(device)


class Evaluator:
    """Fitness of candidates on the current token sample, recomputing only what changed. Per
    stage: `set_tokens(seq_ids)`, `set_parent(kept)` (caches its residual stream, within
    `cache_bytes`: evenly spaced sublayer boundaries when not all fit), then `fitness(kept)` per
    child. `use_split`: another split; `use_tokens` + `sequence_nll`: perplexity on any text."""

    def __init__(
        self,
        supernet_json,
        model_dir,
        topk_zarr,
        tokens_zarr,
        *,
        split: str = stores.FITNESS,
        batch_size: int = 4,
        cache_bytes: int = 2 << 30,
        module_cache_bytes: int = 1 << 30,
        chunk: int = 128,
        dtype: str = "float32",
        device: str = "cpu",
    ):
        import torch

        from tyr.core.device import resolve_device
        from tyr.model.families import spec_from_config

        self.model = adapter.load_model(model_dir)
        self.config, self.spec = self.model.config, spec_from_config(self.model.config)
        self.n_layers = self.config.num_hidden_layers
        self.n_sublayers = 2 * self.n_layers
        self.dense = [dict(layer.state_dict()) for layer in self.model.model.layers]
        self.device = torch.device(resolve_device(device))
        self.dtype = resolve_compute_dtype(dtype, self.device.type)  # the branches' and the head's
        self._compute = getattr(torch, self.dtype)
        self.modules = ModuleCache(
            supernet_json, self.spec, self.config, self.dense, module_cache_bytes, self._compute, self.device
        )
        self._stores = (topk_zarr, tokens_zarr)
        self.chunk, self.cache_bytes = chunk, cache_bytes
        self._head_weight = self.model.lm_head.weight.detach().to(self.device, self._compute)
        place_shared_modules(self.model, self.device)
        self.sample = TokenSample(self.config, self.device, self._compute, batch_size)
        self.evaluations = 0
        if split is not None:  # None: plain tokens come later (`use_tokens`)
            self.use_split(split)

    # -- tokens and parent --------------------------------------------------------------

    split = property(lambda self: self.sample.label)
    n_seq = property(lambda self: self.sample.n_seq)
    seq_len = property(lambda self: self.sample.seq_len)
    n_positions = property(lambda self: self.sample.n_positions)
    parent = property(lambda self: self.sample.parent)

    def use_split(self, split: str) -> None:
        """Score sequences of `split` from now on (its dense top-k must be in the top-k store)."""
        tokens, topk = read_scored_split(*self._stores, split)
        self.sample.use(tokens, topk, split)

    def use_tokens(self, tokens, label: str = "text") -> None:
        """Score these token sequences [n, T] from now on, with no dense top-k: for
        `sequence_nll` (a candidate's perplexity on text the dense model has not been run on)."""
        self.sample.use(tokens, None, label)

    def set_tokens(self, seq_ids, keep: bool = False) -> None:
        """Score on these sequences of the split (all their positions) from now on (`keep`:
        see `TokenSample`)."""
        self.sample.select(seq_ids, keep)

    def set_parent(self, kept) -> float:
        """Cache the residual stream of `kept` on the current tokens; returns its fitness. When a
        parent is cached on these tokens already, only the sublayers from its first change on
        are recomputed."""
        kept = tuple(int(x) for x in kept)
        self.modules.pin(kept)
        at, start = self.parent.begin(
            kept,
            len(self.sample.batches),
            self.n_sublayers,
            self.n_positions * self.config.hidden_size * 4,
            self.cache_bytes,
        )
        if start is not None:
            self.parent.fitness = self._forward(kept, start, store=at)
            self.parent.kept = kept
        return self.parent.fitness

    # -- fitness ------------------------------------------------------------------------

    def fitness(self, kept, incremental: bool = True) -> float:
        """Fitness of the candidate `kept` on the current tokens (lower is better)."""
        kept = tuple(int(x) for x in kept)
        if not incremental or self.parent.kept is None:
            return self._forward(kept, 0)
        start = self.parent.start(kept)
        return self.parent.fitness if start is None else self._forward(kept, start)

    def sequence_kl(self, kept) -> np.ndarray:
        """Mean KL of each current sequence under `kept` (a full forward; no parent cache):
        the per-sequence values a paired comparison of two candidates needs."""
        return self._per_sequence(kept, self._kl_rows)

    def sequence_nll(self, kept) -> np.ndarray:
        """Mean negative log-likelihood of each current sequence's next tokens under `kept`
        (no dense reference needed): exp of the mean is its perplexity on these tokens."""
        return self._per_sequence(
            kept,
            lambda h, batch: head_nll_rows(
                self.model.model.norm(h[:, :-1]).flatten(0, 1),
                self._head_weight,
                batch.ids[:, 1:].flatten(),
                self.chunk,
            ),
        )

    def _per_sequence(self, kept, rows) -> np.ndarray:
        out = [
            rows(h, batch).view(len(batch.ids), -1).mean(1).double().cpu().numpy()
            for batch, h in self._final_states(tuple(int(x) for x in kept), 0)
        ]
        self.evaluations += 1
        return np.concatenate(out)

    def _forward(self, kept, start: int, store=()) -> float:
        """Fitness from sublayer `start` on (see `_final_states`)."""
        kl = sum(float(self._kl_rows(h, batch).sum()) for batch, h in self._final_states(kept, start, store))
        self.evaluations += 1
        return kl / self.n_positions

    def _final_states(self, kept, start: int, store=()):
        """Per batch, the last hidden states: sublayers start..2L-1 run from the parent's cached
        state at `start` (or the embeddings), keeping the states at the boundaries in `store`
        as the parent's."""
        import torch

        modules = [self.modules.get(i, kept[i]) if i >= start else None for i in range(self.n_sublayers)]
        with torch.inference_mode():
            for b, batch in enumerate(self.sample.batches):
                h = self.model.model.embed_tokens(batch.ids) if start == 0 else self.parent.states[b][start]
                for i in range(start, self.n_sublayers):
                    if i in store:
                        self.parent.states[b][i] = h
                    h = sublayer(self.model.model.layers[i // 2], i % 2, modules[i], h, self.sample.pos, self._compute)
                yield batch, h

    def _kl_rows(self, h, batch):
        return head_kl_rows(self.model.model.norm(h).flatten(0, 1), self._head_weight, batch, self.chunk)


def sublayer(layer, mlp: int, module, h, pos, compute):
    """h plus the residual branch of a layer's attention (mlp=0) or MLP (mlp=1) built as `module`,
    as `TyrDecoderLayer.forward` composes it: the branch multiplies in the compute dtype, the
    residual stream stays in h's (float32). A module of None (0 kept units) has no branch."""
    if module is None:
        return h
    if not mlp:
        return h + module(layer.input_layernorm(h).to(compute), pos).to(h.dtype)
    return h + module(layer.post_attention_layernorm(h).to(compute)).to(h.dtype)


def fitness_naive(ev: Evaluator, kept) -> float:
    """Reference path: rebuild every layer from its level files and rerun all of them, in
    float32 whatever the evaluator's compute dtype (the baseline every speed-up is measured
    against, and the values a bf16 fitness is checked against)."""
    import torch

    from tyr.supernet.format import pruned_layer

    kept = tuple(int(x) for x in kept)
    levels = [
        [ev.modules.level_tensors(l, s, kept[2 * l + j]) for j, s in enumerate(SUBLAYERS)] for l in range(ev.n_layers)
    ]
    layers = [pruned_layer(ev.spec, ev.config, l, ev.dense[l], *levels[l]).to(ev.device) for l in range(ev.n_layers)]
    head = ev.model.lm_head.weight.detach().to(ev.device, torch.float32)
    kl = 0.0
    with torch.inference_mode():
        for batch in ev.sample.batches:
            h = ev.model.model.embed_tokens(batch.ids)
            pos = ev.model.model.position_embeddings(h)
            for layer in layers:
                h = layer(h, pos)
            kl += float(head_kl_rows(ev.model.model.norm(h).flatten(0, 1), head, batch, ev.chunk).sum())
    ev.evaluations += 1
    return kl / ev.n_positions

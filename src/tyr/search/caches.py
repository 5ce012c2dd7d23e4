"""What the fitness keeps between candidates: the sublayer modules built from level files
(`ModuleCache`), and the parent's residual stream at sublayer boundaries (`ParentCache`).

Both are keyed by kept units (`kept[i]`: sublayer i's kept heads or channels; sublayer i is
layer i // 2's attention for even i, its MLP for odd i).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from tyr.model.spec import SUBLAYERS


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
        self._paths = {
            (l, s, lvl["kept"]): lvl["path"]
            for l, layer in enumerate(index["layers"])
            for s in SUBLAYERS
            for lvl in layer[s]
        }
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

    def pin(self, kept) -> None:
        """Hold the modules of `kept` (kept units per sublayer: the search's parent) outside
        the LRU budget; the previous parent's go back to the LRU. A child shares all but a few
        sublayers with its parent, so it builds only those even when one pruned model exceeds
        `max_bytes` (Llama-3.1-8B in bf16: ~8 GB against 1 GiB, where rebuilding nearly every
        sublayer was 73 of the 81 s of an 8-GPU generation in docs/cost-model.md)."""
        keys = {(i, int(k)) for i, k in enumerate(kept)}
        for key in [k for k in self._pinned if k not in keys]:
            self._insert(key, self._pinned.pop(key))
        for key in keys - self._pinned.keys():
            if key in self._modules:
                module = self._modules.pop(key)
                self._bytes -= _nbytes(module)
            else:
                module = self._build(key)
            self._pinned[key] = module

    @property
    def cached(self) -> list:
        """(sublayer, kept) of the modules in the LRU, oldest first (the pinned ones not among them)."""
        return list(self._modules)

    @property
    def pinned(self) -> set:
        """(sublayer, kept) of the pinned modules: the current parent's."""
        return set(self._pinned)

    @property
    def cached_bytes(self) -> int:
        """Bytes of weights the LRU holds (at most `max_bytes`, or its one newest module)."""
        return self._bytes

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

        level = self.level_tensors(layer, sublayer, kept)
        dense, dtype = self.dense[layer], self.dtype
        if sublayer == "attn":
            return pruned_layer(self.spec, self.config, layer, dense, level, _empty_level("mlp"), dtype).self_attn
        return pruned_layer(self.spec, self.config, layer, dense, _empty_level("attn"), level, dtype).mlp

    def level_tensors(self, layer: int, sublayer: str, kept: int) -> dict:
        """The tensors of the level with `kept` units (an empty level for 0)."""
        from tyr.supernet.format import load_level

        return load_level(self._paths[(layer, sublayer, kept)])[0] if kept else _empty_level(sublayer)


class ParentCache:
    """The parent's residual stream at sublayer boundaries, on the current tokens (`kept`: the
    parent's kept units per sublayer).

    When all 2L boundaries do not fit in `max_bytes`, evenly spaced ones are kept; a child is
    recomputed from the last kept boundary before its first change (`start`).
    """

    def __init__(self):
        self.kept, self.fitness, self.at, self.states = None, None, [0], []

    def plan(self, n_batches: int, n_sublayers: int, bytes_per_boundary: int, max_bytes: int) -> set:
        n = int(min(n_sublayers, max(1, max_bytes // max(bytes_per_boundary, 1))))
        self.at = sorted(set(np.round(np.linspace(0, n_sublayers - 1, n)).astype(int).tolist()))
        self.states = [dict() for _ in range(n_batches)]
        return set(self.at)

    def begin(self, kept, *plan_args) -> tuple[set, int | None]:
        """A new parent: the boundaries to store and where its forward starts (None: cached)."""
        if self.kept is None:
            return self.plan(*plan_args), 0
        return set(self.at), self.start(kept)

    def start(self, kept) -> int | None:
        """Where a child's forward resumes (None: the parent itself, or no parent cached)."""
        if self.kept is None or kept == self.kept:
            return None
        first = next(i for i, (a, b) in enumerate(zip(kept, self.kept)) if a != b)
        return max(c for c in self.at if c <= first)

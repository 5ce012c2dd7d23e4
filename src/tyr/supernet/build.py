"""Building the supernet (Týr-the-Pruner, Sec. 3.2): one job per decoder layer.

For layer l: read its calibration input (the expected output of layer l-1, paper Eq. 5), then
for each sublayer in order (attention, then the MLP on the attention's expected output):
  1. statistics of the output projection's input over the calibration tokens: H = XᵀX, and
     for the corrected refit also C = XᵀX_dense (X_dense: the dense model's own input);
  2. `tyr.supernet.local_prune.prune_levels`: every level of the sublayer in one progressive pass;
  3. the level files (`tyr.supernet.format`) with their reconstruction errors;
  4. the projection that carries the calibration stream on: the density-weighted average of
     the levels (`expected`, the paper), the centre level (`centre`), or the dense one (`dense`).
Finally the layer's output on that stream is written for layer l+1, and the manifest last.

The job computes on `devices.supernet` (`tyr.core.device.placed`): the layer, its statistics,
the solves and one batch of the stream on the device; the stream itself stays in zarr on the host.

Ablation switches (config `supernet.*`): `compensate`, `taylor`, `obs` (local_prune), `accumulate`
(above), and `refit`: `local` fits each level to the dense projection's output on the pruned
stream, G = XᵀX·W (the paper); `corrected` fits it to the dense model's own output, G = XᵀX_dense·W,
so a sublayer also undoes the error upstream layers left in its input.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tyr.calib import stores
from tyr.model.spec import SUBLAYERS
from tyr.supernet import format

log = logging.getLogger("tyr.supernet.build")

ACCUMULATE = ("expected", "centre", "dense")
REFIT = ("local", "corrected")


@dataclass
class Options:
    """The settings of `supernet.*` that change a layer's files (rules/common.smk passes exactly these)."""

    damp: float = 0.01
    heads_per_step: int = 1
    channels_per_step: int = 16
    batch_size: int = 8
    compensate: bool = True
    taylor: bool = True
    obs: bool = True
    accumulate: str = "expected"
    refit: str = "local"

    def __post_init__(self):
        if self.accumulate not in ACCUMULATE:
            raise ValueError(f"accumulate must be one of {ACCUMULATE}, not {self.accumulate!r}")
        if self.refit not in REFIT:
            raise ValueError(f"refit must be one of {REFIT}, not {self.refit!r}")

    def prune_kwargs(self) -> dict:
        return dict(damp_ratio=self.damp, taylor=self.taylor, obs=self.obs, compensate=self.compensate)


@dataclass
class Layer:
    """What every step of one layer's job reads: the dense layer, its levels, where to write."""

    spec: object
    module: object  # the dense TyrDecoderLayer
    dense: dict  # its tensors, by name relative to the layer
    levels: dict  # levels.json entry of the layer
    pos: tuple  # rotary (cos, sin) for the calibration positions
    layer_dir: Path
    meta: dict  # layer and iteration, recorded in every level file


def build_layer(
    model_dir,
    spec_json,
    levels_json,
    inputs_zarr,
    layer,
    layer_dir,
    next_inputs_zarr,
    *,
    iteration=1,
    embeddings_zarr=None,
    device="cpu",
    **options,
) -> dict:
    """Prune every level of layer `layer`'s two sublayers and propagate the chosen stream.

    Reads the layer's input (`inputs_zarr`), writes the level files and, last,
    `layer_dir/manifest.json`; writes the layer's output on the propagated stream to
    `next_inputs_zarr` (skipped when None). `refit="corrected"` also needs the calibration
    embeddings (`embeddings_zarr`), from which the dense model's own input is recomputed.
    """
    import torch

    from tyr.core.device import placed

    opts = Options(**options)
    start = time.perf_counter()
    with placed(device, "devices.supernet") as dev, torch.no_grad():
        ctx = _load_layer(model_dir, spec_json, levels_json, inputs_zarr, layer, layer_dir, iteration, dev)
        x_dense = _dense_inputs(model_dir, embeddings_zarr, layer, dev) if opts.refit == "corrected" else None
        stream = _Stream(ctx, stores.open_hidden(inputs_zarr), x_dense, opts)
        attn, W_attn, b_attn = prune_sublayer(ctx, "attn", stream.statistics("attn"), opts)
        stream.carry_attention(W_attn, b_attn)
        mlp, W_mlp, b_mlp = prune_sublayer(ctx, "mlp", stream.statistics("mlp"), opts)
        if next_inputs_zarr is not None:
            stream.propagate(next_inputs_zarr, W_mlp, b_mlp)
    seconds = round(time.perf_counter() - start, 3)
    centre = {s: ctx.levels[s]["centre"] for s in SUBLAYERS}
    manifest = format.write_manifest(
        layer_dir, layer=layer, iteration=iteration, centre=centre, levels={"attn": attn, "mlp": mlp}, seconds=seconds
    )
    log.info("layer %d: %d attn + %d mlp levels in %.1fs", layer, len(attn), len(mlp), seconds)
    return manifest


def _load_layer(model_dir, spec_json, levels_json, inputs_zarr, layer, layer_dir, iteration, device) -> Layer:
    import torch

    from tyr.core.io import read_json
    from tyr.model import adapter
    from tyr.model.spec import ModelSpec

    config = adapter.load_config(model_dir)
    dense = {k: v.to(device) for k, v in adapter.load_state(model_dir, adapter.layer_prefix(layer)).items()}
    pos = adapter.rotary(config, stores.open_hidden(inputs_zarr).shape[1], device=device)
    return Layer(
        ModelSpec.from_json(spec_json),
        adapter.decoder_layer(config, layer, dense, torch.float32).to(device),
        dense,
        read_json(levels_json)["layers"][layer],
        pos,
        Path(layer_dir),
        {"layer": layer, "iteration": iteration},
    )


def _dense_inputs(model_dir, embeddings_zarr, layer: int, device):
    """The dense model's input of `layer` on the calibration tokens: the embeddings run through
    dense layers 0..layer-1 (the corrected refit's target; O(layer) forwards, an ablation).
    Held on the host, a chunk at a time on the device."""
    import torch

    from tyr.model import adapter

    if embeddings_zarr is None:
        raise ValueError("refit='corrected' needs the calibration embeddings (embeddings_zarr)")
    x = torch.from_numpy(stores.open_hidden(embeddings_zarr)[:])
    config = adapter.load_config(model_dir)
    pos = adapter.rotary(config, x.shape[1], device=device)
    for l in range(layer):
        module = adapter.load_layer(model_dir, l, config, torch.float32).to(device)
        x = torch.cat([module(b.to(device), pos).cpu() for b in x.split(stores.CHUNK_SEQS)])
    return x


class _Stream:
    """The calibration batches through one layer on the carried stream: each sublayer's
    projection input and the MLP's residual input, computed once per batch and kept in memory
    while they fit in `cache_bytes` (recomputed beyond it: an 8B model's MLP inputs are GBs).
    Measured on SmolLM2: forwards fell from 104 to 52 linear calls per layer."""

    def __init__(self, ctx: Layer, x_in, x_dense, opts: Options, cache_bytes: int = 1 << 30):
        self.ctx, self.x_in, self.x_dense, self.opts = ctx, x_in, x_dense, opts
        self.carried_attn = None  # (W, b) of the attention projection carried on, once pruned
        self._cache, self._free = {}, cache_bytes

    def carry_attention(self, W, b) -> None:
        """The MLP's input is computed through this attention projection (the carried one)."""
        self.carried_attn = (W, b)

    def batches(self):
        device = self.ctx.pos[0].device  # the job's device (the stream is read from the host)
        return ((i, x.to(device)) for i, x in stores.row_batches(self.x_in, self.opts.batch_size))

    def _kept(self, key, compute):
        if key in self._cache:
            return self._cache[key]
        value = compute()
        if value.numel() * value.element_size() <= self._free:
            self._cache[key] = value
            self._free -= value.numel() * value.element_size()
        return value

    def attn_input(self, i, x):
        from tyr.model.adapter import o_proj_input

        return self._kept(("attn", i), lambda: o_proj_input(self.ctx.module, x, self.ctx.pos))

    def mlp_residual(self, i, x):
        from tyr.supernet.accumulate import residual

        return self._kept(("h", i), lambda: residual(x, self.attn_input(i, x), *self.carried_attn))

    def mlp_input(self, i, x):
        from tyr.model.adapter import down_proj_input

        return self._kept(("mlp", i), lambda: down_proj_input(self.ctx.module, self.mlp_residual(i, x)))

    def statistics(self, sublayer: str):
        """(H, C): the projection input's Gram matrix on the stream, and its cross moment with
        the dense model's projection input (None unless the refit is corrected)."""
        from tyr.supernet.local_prune import Hessian

        width = self.ctx.spec.units(sublayer, self.ctx.meta["layer"]) * (
            self.ctx.spec.head_dim if sublayer == "attn" else 1
        )
        H = Hessian(width)
        C = Hessian(width) if self.x_dense is not None else None
        for i, x in self.batches():
            z = self.attn_input(i, x) if sublayer == "attn" else self.mlp_input(i, x)
            H.add(z)
            if C is not None:
                C.add(z, self._dense_input(sublayer, self.x_dense[i : i + len(x)].to(z.device)))
        return H.mean(), None if C is None else C.mean()

    def _dense_input(self, sublayer: str, x):
        """The dense model's o_proj / down_proj input at dense layer input x."""
        from tyr.model.adapter import down_proj_input, o_proj_input

        z = o_proj_input(self.ctx.module, x, self.ctx.pos)
        if sublayer == "attn":
            return z
        return down_proj_input(self.ctx.module, x + self.ctx.module.self_attn.o_proj(z))

    def propagate(self, out_zarr, W, b) -> None:
        """Write the layer's output on the stream, the carried MLP projection (W, b) applied."""
        from tyr.supernet.accumulate import residual

        stores.write_hidden(
            out_zarr,
            self.x_in.shape,
            ((i, residual(self.mlp_residual(i, x), self.mlp_input(i, x), W, b)) for i, x in self.batches()),
        )


def prune_sublayer(ctx: Layer, sublayer: str, stats, opts: Options):
    """Every level of one sublayer: write their files; return (manifest entries, W, b) of the
    projection that carries the calibration stream on (opts.accumulate)."""
    from tyr.supernet import accumulate as acc
    from tyr.supernet.local_prune import channels, prune_levels, recon_errors

    H, C = stats
    name = format.OUTPUT_PROJECTION[sublayer]
    weight, bias = ctx.dense[f"{name}.weight"], ctx.dense.get(f"{name}.bias")
    group = ctx.spec.head_dim if sublayer == "attn" else 1
    per_step = opts.heads_per_step if sublayer == "attn" else opts.channels_per_step
    kept = ctx.levels[sublayer]["kept"]
    G = None if C is None else C.double() @ weight.detach().double().T
    pruned = prune_levels(weight, H, kept, group=group, per_step=per_step, G=G, **opts.prune_kwargs())
    variants = [pruned[k] for k in kept]
    assert all(len(u) == k for (u, _), k in zip(variants, kept)), (sublayer, kept)
    weights = _carry_weights(ctx, sublayer, kept, weight.shape[1] // group, opts.accumulate)
    errors = recon_errors(weight, [(channels(u, group), w) for u, w in variants], H)
    entries = [
        format.write_level(
            ctx.layer_dir,
            ctx.spec,
            ctx.meta["layer"],
            sublayer,
            u,
            w,
            bias,
            ctx.meta,
            weight=0.0 if weights is None else weights[e],
            recon_error=errors[e],
        )
        for e, (u, w) in enumerate(variants)
    ]
    if weights is None:
        return entries, weight.float(), None if bias is None else bias.float()
    return (
        entries,
        acc.expected_projection(variants, weights, weight.shape[1], group),
        acc.expected_bias(bias, variants, weights),
    )


def _carry_weights(ctx: Layer, sublayer: str, kept, units: int, accumulate: str):
    """Per-level weights of the carried projection: density (expected), one-hot at the centre
    level (centre), or None for the dense projection (dense)."""
    from tyr.supernet import accumulate as acc

    if accumulate == "dense":
        return None
    if accumulate == "centre":
        return [1.0 if k == ctx.levels[sublayer]["centre"] else 0.0 for k in kept]
    return acc.level_weights(kept, units)

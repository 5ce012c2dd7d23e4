"""One job of the unstructured DAG: prune every projection of one decoder layer, in order.

Layer l reads its input from the activation store the already pruned layer l−1 wrote (layer 0:
the token embeddings), and inside the layer each projection is calibrated on the inputs the
projections pruned before it produce ("true sequential", as GPTQ/SparseGPT's option):

    q, k, v   on input_layernorm(x)                       (one Hessian, shared)
    o         on the attention heads with pruned q, k, v
    gate, up  on post_attention_layernorm(h), h = x + pruned attention
    down      on the MLP channels with pruned gate, up

It writes the layer's pruned tensors (+ packed masks and statistics) and the pruned layer's
output, the next layer's input. The source is the dense prepared model or a structural export
(a folder with per-layer shapes, `tyr.model.adapter.is_export`); a sublayer a structural method
removed entirely is skipped.

`device` (config `devices.unstructured`: auto, cpu, cuda, cuda:N) is where the layer computes
(`tyr.core.device.placed`): the layer, its Hessians and one batch of activations are there; the
activation stores are read and written, and the results saved, on the host. On the CPU nothing
changes (the same kernels in the same order).
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager

import torch

from tyr.calib.stores import open_hidden, row_batches, write_hidden
from tyr.core.device import placed
from tyr.core.io import save_safetensors
from tyr.methods import unstructured
from tyr.methods.unstructured.hessian import layer_error
from tyr.methods.unstructured.patterns import Pattern, pack
from tyr.model import adapter
from tyr.model.adapter import decoder_layer, layer_prefix, load_state
from tyr.supernet.local_prune import Hessian

log = logging.getLogger("tyr.methods.unstructured")

STAGES = (  # projections that share one input, in the order they are pruned
    ("attn_in", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    ("attn_out", ("self_attn.o_proj",)),
    ("mlp_in", ("mlp.gate_proj", "mlp.up_proj")),
    ("mlp_out", ("mlp.down_proj",)),
)
MASK_PREFIX = "mask."  # tensors "mask.<projection>": the packed removal mask (patterns.pack)
DEVICE_KEY = "devices.unstructured"  # the config key of the device (tyr.core.device.placed names it in errors)


def stage_input(module, x, pos, stage):
    """The input of `stage`'s projections at layer input x, through the module as pruned so far."""
    if stage == "attn_in":
        return module.input_layernorm(x)
    if stage == "attn_out":
        return adapter.o_proj_input(module, x, pos)
    h = x if module.self_attn is None else x + module.self_attn(module.input_layernorm(x), pos)
    u = module.post_attention_layernorm(h)
    return u if stage == "mlp_in" else module.mlp.channels(u)


def prune_layer(
    model_dir,
    inputs_zarr,
    layer,
    out_file,
    next_inputs_zarr,
    *,
    method,
    pattern,
    blocksize=128,
    damp=0.01,
    batch_size=8,
    device="cpu",
) -> dict:
    """Prune layer `layer` of `model_dir` with `method` at `pattern` on `device`; returns its statistics."""
    start = time.perf_counter()
    pattern = Pattern.parse(pattern)
    config = adapter.load_config(model_dir)  # a dense source, or a structural export's per-layer widths
    with placed(device, key=DEVICE_KEY) as dev:
        module = decoder_layer(config, layer, load_state(model_dir, layer_prefix(layer)), torch.float32).to(dev)
        x_in = open_hidden(inputs_zarr)  # on the host, read a batch at a time
        pos = adapter.rotary(config, x_in.shape[1], device=dev)
        options = dict(blocksize=blocksize, damp=damp)
        stats, masks = prune_stages(module, x_in, pos, method, pattern, options, batch_size)
        if next_inputs_zarr is not None:
            # the pruned layer's output on every calibration sequence: the next layer's input
            with torch.no_grad():
                outputs = ((i, module(x.to(dev), pos).cpu()) for i, x in row_batches(x_in, batch_size))
                write_hidden(next_inputs_zarr, x_in.shape, outputs)
        state = {name: t.cpu() for name, t in module.state_dict().items()}
    seconds = round(time.perf_counter() - start, 3)
    meta = {"layer": layer, "method": method, "pattern": pattern.tag, "seconds": seconds, "stats": json.dumps(stats)}
    save_safetensors(out_file, {**state, **masks}, meta)
    log.info(
        "layer %d: %s %s in %.1fs; relative error %s",
        layer,
        method,
        pattern.label,
        seconds,
        {k.split(".")[-1]: round(v["rel_error"], 4) for k, v in stats.items()},
    )
    return stats


def prune_stages(module, x_in, pos, method, pattern, options, batch_size):
    """Prune the layer's projections in STAGES order, in place, each on the inputs of the layer as
    pruned so far (batches moved to the layer's device); returns (statistics, packed masks)."""
    device = module.input_layernorm.weight.device
    stats, masks = {}, {}
    with torch.no_grad():
        for stage, names in STAGES:
            if getattr(module, names[0].split(".")[0]) is None:
                continue  # removed by a structural method
            H = Hessian(module.get_submodule(names[0]).in_features)
            for _, x in row_batches(x_in, batch_size):
                H.add(stage_input(module, x.to(device), pos, stage))
            H = H.mean()
            linears = [module.get_submodule(n) for n in names]
            for name, linear, res in zip(
                names, linears, prune_together(method, [l.weight for l in linears], H, pattern, options)
            ):
                stats[name] = projection_stats(linear.weight, res, H)
                linear.weight.copy_(res.weight)
                masks[MASK_PREFIX + name] = pack(res.mask.cpu())
    return stats, masks


@contextmanager
def one_thread():
    """The methods' loops run many small ops (a column, a greedy step), which gain little from a
    second thread and lose a lot on a shared CPU, where OpenMP's spinning threads wait for each
    other: SparseGPT on SmolLM2's gate_proj took 0.9 s with 1 thread and 25 s with 2 (load ~8
    on 2 cores). Hessians and forward passes keep the job's threads."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def prune_together(method, weights, H, pattern, options):
    """Prune projections that share H; row-wise methods prune them stacked, in one call."""
    module = unstructured.method(method)
    with one_thread():
        if not getattr(module, "ROW_WISE", False) or len(weights) == 1:
            return [module.prune(w, H, pattern, **options) for w in weights]
        res = module.prune(torch.cat(weights), H, pattern, **options)
    sizes = [w.shape[0] for w in weights]
    parts = zip(
        res.weight.split(sizes),
        res.mask.split(sizes),
        res.loss.split(sizes) if res.loss is not None else [None] * len(sizes),
    )
    return [type(res)(w, m, l) for w, m, l in parts]


def projection_stats(dense, res, H) -> dict:
    """Removed weights, the measured layer-wise error (relative to ‖XW‖²) and the predicted one."""
    err = float(layer_error(dense, res.weight, H).sum())
    scale = float(layer_error(dense, torch.zeros_like(dense), H).sum())
    return {
        "removed": int(res.mask.sum()),
        "weights": res.mask.numel(),
        "error": err,
        "rel_error": err / max(scale, 1e-300),
        "predicted": None if res.loss is None else float(res.loss.sum()),
    }

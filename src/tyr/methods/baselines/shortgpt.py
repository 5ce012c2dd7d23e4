"""ShortGPT (Men et al., 2024): remove whole decoder layers with the lowest Block Influence.

    BI_i = 1 − E_{X,t} [ x_{i,t}ᵀ x_{i+1,t} / (‖x_{i,t}‖ ‖x_{i+1,t}‖) ]

where x_{i,t} is the hidden state entering layer i at token t and x_{i+1,t} the one
leaving it, over the calibration tokens of one dense forward pass. A layer that barely
turns the residual stream (BI near 0) is the cheapest to drop. Removing a layer is
written as a level with 0 heads and 0 channels: the decoder layer then passes the
residual stream through, which is exactly layer removal.

Budget: layers go in ascending BI order; of the counts n = 0…L, the one whose backbone
sparsity (tyr.model.sparsity) is closest to the target is taken (ties: fewer layers removed).
Granularity is one layer, so the achieved sparsity can differ from the target by up to
half a layer's share of the backbone; the genome records it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tyr.calib.stores import PRUNE
from tyr.core.device import placed
from tyr.methods.baselines.common.activations import calibration_tokens, dense_model, forward_with_hooks
from tyr.methods.baselines.common.single_level import DEVICE_KEY, Structure, load_spec, write
from tyr.model import sparsity

METHOD = "shortgpt"


def block_influence(model, tokens: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """BI of every decoder layer (float64 [num_layers]) on the calibration tokens."""
    layers = model.model.layers
    cos_sum = torch.zeros(len(layers), dtype=torch.float64)
    count = torch.zeros(len(layers), dtype=torch.float64)

    def hook(i):
        def fn(module, args, output):
            cos = F.cosine_similarity(args[0].double(), output.double(), dim=-1)
            cos_sum[i] += cos.sum()
            count[i] += cos.numel()

        return fn

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    forward_with_hooks(model, tokens, batch_size, handles)
    return 1.0 - cos_sum / count


def layers_to_remove(spec, bi: torch.Tensor, target_sparsity: float) -> list[int]:
    """The lowest-BI layers whose removal brings the backbone sparsity closest to the target."""
    order = sorted(range(spec.num_layers), key=lambda l: (float(bi[l]), l))
    layer_params = [
        sparsity.dense_sublayer_params(spec, "attn", l) + sparsity.dense_sublayer_params(spec, "mlp", l)
        for l in range(spec.num_layers)
    ]
    total = sparsity.backbone_prunable_params(spec)
    achieved = [sum(layer_params[l] for l in order[:n]) / total for n in range(spec.num_layers + 1)]
    n = min(range(spec.num_layers + 1), key=lambda n: (abs(achieved[n] - target_sparsity), n))
    return sorted(order[:n])


def run(
    model_dir,
    tokens_zarr,
    out_dir,
    *,
    target_sparsity: float,
    split: str = PRUNE,
    max_seqs: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
):
    """Score layers by Block Influence, remove the lowest; returns the genome path."""
    spec = load_spec(model_dir)
    with placed(device, key=DEVICE_KEY) as dev:
        tokens = calibration_tokens(tokens_zarr, split, max_seqs).to(dev)
        bi = block_influence(dense_model(model_dir, dev), tokens, batch_size).cpu()
    removed = set(layers_to_remove(spec, bi, target_sparsity))
    structure = Structure(
        heads=[[] if l in removed else list(range(spec.num_heads)) for l in range(spec.num_layers)],
        channels=[[] if l in removed else list(range(spec.intermediate_size[l])) for l in range(spec.num_layers)],
        info={
            "block_influence": [float(b) for b in bi],
            "removed_layers": sorted(removed),
            "off_target": "whole layers only: the closest number of layers to the target",
        },
    )
    return write(model_dir, out_dir, structure, method=METHOD, target_sparsity=target_sparsity)

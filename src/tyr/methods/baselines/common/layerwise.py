"""Layer-by-layer calibration, as the sequential pruners' reference code runs it.

SparseGPT, Wanda(-sp), Search-LLM's reformation and Numerical Pruning's compensation
all walk the decoder one layer at a time: they keep the calibration hidden states in
memory, read a layer's statistics from them, change the layer, and only then run it to
get the next layer's inputs, so every layer is calibrated on what the already pruned
layers before it actually produce. `layers` yields each layer with its inputs and runs
it afterwards, as the caller left it; `sublayer_inputs` gives the four projection inputs
of one layer batch by batch; `mask_layer` removes units in place by zeroing their output
columns (exactly what removing them does to the layer's output).

Memory: the hidden states of the calibration set, [n_seq, seq_len, hidden] float32
(32 × 256 × 576 × 4 B = 19 MB for SmolLM2's default calibration), kept on the host. On a GPU
only the current layer and one batch of its inputs are on the device: a layer moves there for
its turn and back where it was after, and batches move as they are used.
"""

from __future__ import annotations

import torch

from tyr.methods.baselines.common.activations import batches


def layers(model, tokens: torch.Tensor, batch_size: int = 8, device=None):
    """Yield (index, layer, inputs, position embeddings) for every decoder layer in order.

    The inputs of layer l+1 are computed when the caller asks for the next item, by layer
    l as the caller left it (masked, compensated). The yielded layer and position embeddings
    are on `device` (default: where the model is), the inputs on the host.
    """
    embed = model.model.embed_tokens
    device = embed.weight.device if device is None else device
    with torch.no_grad():
        x = embed(tokens.to(embed.weight.device)).float()
        pos = tuple(p.to(device) for p in model.model.position_embeddings(x))
        x = x.cpu()
    for index, layer in enumerate(model.model.layers):
        home = layer.input_layernorm.weight.device
        layer.to(device)
        yield index, layer, x, pos
        with torch.no_grad():
            x = torch.cat([layer(xb.to(device), pos).cpu() for xb in batches(x, batch_size)])
        layer.to(home)


def sublayer_inputs(layer, x: torch.Tensor, pos, batch_size: int = 8):
    """Per batch, the inputs of the layer's projections (token dimensions flattened), on the
    layer's device:

    attn  q/k/v input (the input RMSNorm's output)     heads     o_proj input
    mlp   gate/up input (the post-attention norm's)     channels  down_proj input
    """
    device = layer.input_layernorm.weight.device
    with torch.no_grad():
        for xb in batches(x, batch_size):
            xb = xb.to(device)
            attn = layer.input_layernorm(xb)
            heads = layer.self_attn.heads(attn, pos)
            h = xb + layer.self_attn.o_proj(heads)
            mlp = layer.post_attention_layernorm(h)
            channels = layer.mlp.channels(mlp)
            yield {
                name: t.reshape(-1, t.shape[-1])
                for name, t in (("attn", attn), ("heads", heads), ("mlp", mlp), ("channels", channels))
            }


def mask_layer(layer, head_dim: int, kept_heads, kept_channels) -> None:
    """Remove the heads and channels not kept, in place, by zeroing their o_proj / down_proj columns.

    A head's q/k/v rows only feed its own o_proj columns, and a channel's gate/up rows only
    its down_proj column, so the layer's output is exactly that of the pruned layer. A
    sublayer left without units loses its output bias too (it is gone from the export).
    """
    for proj, kept, group in ((layer.self_attn.o_proj, kept_heads, head_dim), (layer.mlp.down_proj, kept_channels, 1)):
        removed = torch.ones(proj.in_features // group, dtype=torch.bool)
        removed[list(kept)] = False
        with torch.no_grad():
            proj.weight[:, removed.repeat_interleave(group)] = 0
            if proj.bias is not None and not kept:
                proj.bias.zero_()


def compensate(model, spec, tokens: torch.Tensor, structure, solve, batch_size: int = 8, device=None) -> None:
    """Walk the layers and replace each kept o_proj / down_proj by `solve`'s compensated weights.

    `solve(W, H, cols)` gets the dense projection W [in, out] (float64), the Gram matrix
    H = XᵀX / N of its input on the already compensated model, and the kept input columns;
    it returns the kept weights [out, len(cols)]. The MLP's inputs are taken after its
    layer's attention is compensated. The results go to `structure.o_weight` / `down_weight`
    and into the model, so the next layer sees them; layers compute on `device` (see `layers`),
    the compensated weights are kept on the host.
    """
    from tyr.supernet.local_prune import Hessian, channels

    structure.o_weight, structure.down_weight = [], []
    for l, layer, x, pos in layers(model, tokens, batch_size, device):
        dense = [layer.self_attn.o_proj.weight.detach().double().T, layer.mlp.down_proj.weight.detach().double().T]
        mask_layer(layer, spec.head_dim, structure.heads[l], structure.channels[l])
        for proj, key, kept, group, W, out in (
            (layer.self_attn.o_proj, "heads", structure.heads[l], spec.head_dim, dense[0], structure.o_weight),
            (layer.mlp.down_proj, "channels", structure.channels[l], 1, dense[1], structure.down_weight),
        ):
            H = Hessian(proj.in_features)
            for inputs in sublayer_inputs(layer, x, pos, batch_size):
                H.add(inputs[key])
            cols = channels(torch.as_tensor(kept, dtype=torch.long), group)
            kept_w = solve(W, H.mean().double(), cols) if len(cols) else W.T[:, :0]
            with torch.no_grad():
                proj.weight[:, cols] = kept_w.to(proj.weight.dtype)
            out.append(kept_w.contiguous().cpu())

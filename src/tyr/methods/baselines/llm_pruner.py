"""LLM-Pruner (Ma et al., NeurIPS 2023) without the LoRA recovery: first-order Taylor group importance.

Pruning a coupled group (the parameters that must go together) changes the loss by
ΔL ≈ Σ_{w ∈ group} (∂L/∂w) · w to first order. LLM-Pruner scores each member of a group
(one weight row or column, or one bias element) and sums the members:

  element  (default; the paper's "Element¹", its code's `param_first`):
           I(member) = Σ_{w ∈ member} |w · ∂L/∂w|
  vector   (the paper's "Vector"):  I(member) = |Σ_{w ∈ member} w · ∂L/∂w|

  I(group) = Σ_{members} I(member)

Gradients are those of the mean next-token loss of the dense model on a few
calibration sequences (autograd; the paper uses 10), taken in float32.

Groups (Llama layout):
  attention  query head h: its head_dim rows of q_proj (and q bias), its head_dim
             columns of o_proj, and its KV head's rows of k_proj / v_proj (and biases).
             A KV head is shared by `group_size` query heads under GQA and goes only
             with all of them, so with kv="split" (default) each query head gets
             1/group_size of its KV head's importance (the KV parts are counted once per
             KV group); kv="skip" leaves k/v out. Without GQA, "split" is the paper's group.
  mlp        channel c: row c of gate_proj and up_proj (and their biases), column c of
             down_proj.
Layers. The reference scripts prune only layers [4, 30) of the 32-layer LLaMA-7B
(`--block_attention_layer_start 4 --block_attention_layer_end 30`, the same for the MLP):
the first four and the last two layers stay dense. `layers="scaled"` (default) keeps that
share at any depth (`budget.layer_range`: [4, 28) of SmolLM2's 30 layers); "all" prunes
every layer. Inside the range every layer is pruned at the same ratio
(`budget.uniform_structure`), like the paper's uniform per-layer setting, and the ratio
is raised so the backbone meets the target (the reference applies its ratio to the range
only, so a "20%" LLaMA-7B there is ~16% sparse); no weights are updated. If the range
cannot hold the target (ratio > 1), every unit in it goes and the genome says so.
"""

from __future__ import annotations

import torch

from tyr.calib.stores import PRUNE
from tyr.core.device import placed
from tyr.methods.baselines.common.activations import batches, calibration_tokens, dense_model
from tyr.methods.baselines.common.budget import layer_range, on_host, range_note, uniform_structure
from tyr.methods.baselines.common.single_level import DEVICE_KEY, load_spec, write

METHOD = "llm_pruner"
PROJECTIONS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


def loss_gradients(model, tokens: torch.Tensor, batch_size: int = 2) -> None:
    """Leave ∂L/∂w of the mean LM loss over `tokens` in `.grad` of every projection parameter."""
    model.zero_grad(set_to_none=True)
    for layer in model.model.layers:
        for name in PROJECTIONS:
            layer.get_submodule(name).requires_grad_(True)
    n = len(tokens)
    for batch in batches(tokens, batch_size):
        loss = model(input_ids=batch, labels=batch).loss
        (loss * (len(batch) / n)).backward()  # equal-length sequences: the mean over all tokens


def member_importance(param: torch.Tensor, dim: int, taylor: str) -> torch.Tensor:
    """Importance of each slice of `param` along `dim` (rows: dim=1 summed; columns: dim=0 summed)."""
    wg = param.detach().double() * param.grad.double()
    if wg.ndim == 1:  # bias: one element per member
        return wg.abs()
    if taylor == "element":
        return wg.abs().sum(dim)
    if taylor == "vector":
        return wg.sum(dim).abs()
    raise ValueError(f"taylor must be 'element' or 'vector', not {taylor!r}")


def layer_scores(layer, spec, taylor: str = "element", kv: str = "split") -> tuple[torch.Tensor, torch.Tensor]:
    """(importance of each query head, importance of each MLP channel) of one decoder layer."""
    if kv not in ("split", "skip"):
        raise ValueError(f"kv must be 'split' or 'skip', not {kv!r}")
    attn, mlp, d = layer.self_attn, layer.mlp, spec.head_dim

    def rows(linear):  # one member per output channel (+ its bias element)
        score = member_importance(linear.weight, 1, taylor)
        return score + member_importance(linear.bias, 0, taylor) if linear.bias is not None else score

    heads = (rows(attn.q_proj) + member_importance(attn.o_proj.weight, 0, taylor)).reshape(spec.num_heads, d).sum(1)
    if kv == "split":
        kv_heads = (rows(attn.k_proj) + rows(attn.v_proj)).reshape(spec.num_kv_heads, d).sum(1)
        heads = heads + kv_heads[torch.arange(spec.num_heads) // spec.group_size] / spec.group_size
    channels = rows(mlp.gate_proj) + rows(mlp.up_proj) + member_importance(mlp.down_proj.weight, 0, taylor)
    return heads, channels


def run(
    model_dir,
    tokens_zarr,
    out_dir,
    *,
    target_sparsity: float,
    taylor: str = "element",
    kv: str = "split",
    layers="scaled",
    split: str = PRUNE,
    max_seqs: int | None = 10,
    batch_size: int = 2,
    device: str = "cpu",
):
    """Taylor group importance from LM-loss gradients, uniform pruning in a layer range; returns the genome path."""
    spec = load_spec(model_dir)
    tokens = calibration_tokens(tokens_zarr, split, max_seqs)
    with placed(device, key=DEVICE_KEY) as dev:
        model = dense_model(model_dir, dev)
        loss_gradients(model, tokens.to(dev), batch_size)
        scores = on_host([layer_scores(layer, spec, taylor, kv) for layer in model.model.layers])
    pruned = layer_range(spec.num_layers, layers)
    structure = uniform_structure(spec, target_sparsity, [s[0] for s in scores], [s[1] for s in scores], pruned)
    structure.info = {
        "taylor": taylor,
        "kv": kv,
        "sequences": len(tokens),
        "layers": [pruned[0], pruned[-1] + 1],
        **range_note(spec, target_sparsity, pruned),
    }
    return write(model_dir, out_dir, structure, method=METHOD, target_sparsity=target_sparsity)

"""A candidate structure as a real, smaller model in memory, and how well it predicts.

Methods that compare structures before choosing one (Search-LLM's evolution, AdaPruner's
Bayesian optimisation, NIRVANA's calibration selection) evaluate each candidate on a few
calibration sequences. The candidate's layers are built sliced, exactly as export builds
them (`tyr.supernet.format.pruned_layer`), so a 50% candidate also runs about twice as fast as
the dense model would with masks; embeddings, final norm and LM head are the dense
model's, shared.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tyr.methods.baselines.common.activations import batches


def dense_layer_states(model) -> list[dict]:
    """Each decoder layer's tensors by their names relative to the layer (views, no copy)."""
    return [dict(layer.state_dict()) for layer in model.model.layers]


def pruned_layers(model, spec, states: list[dict], structure) -> list:
    """The decoder layers of `structure` (kept heads/channels), sliced from the dense `states`, on
    the dense model's device (their index buffers, q_to_kv, are built on the host)."""
    from tyr.supernet.format import attention_level, mlp_level, pruned_layer

    d, layers, device = spec.head_dim, [], model.model.embed_tokens.weight.device
    for l, (heads, chans) in enumerate(zip(structure.heads, structure.channels)):
        dense = states[l]
        cols = torch.tensor([h * d + i for h in heads for i in range(d)], dtype=torch.long)
        attn = attention_level(
            spec, heads, dense["self_attn.o_proj.weight"][:, cols], dense.get("self_attn.o_proj.bias")
        )
        ch = torch.as_tensor(chans, dtype=torch.long)
        mlp = mlp_level(chans, dense["mlp.down_proj.weight"][:, ch], dense.get("mlp.down_proj.bias"))
        layers.append(pruned_layer(spec, model.config, l, dense, attn, mlp).to(device))
    return layers


def logits(model, layers, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token logits of the model whose decoder layers are `layers` (float32)."""
    with torch.no_grad():
        x = model.model.embed_tokens(tokens)
        pos = model.model.position_embeddings(x)
        for layer in layers:
            x = layer(x, pos)
        return model.lm_head(model.model.norm(x)).float()


def lm_loss(model, layers, tokens: torch.Tensor, batch_size: int = 4) -> float:
    """Mean next-token cross-entropy on `tokens` (its exp is the calibration perplexity)."""
    total, count = 0.0, 0
    for batch in batches(tokens, batch_size):
        z = logits(model, layers, batch)[:, :-1]
        total += F.cross_entropy(z.flatten(0, 1), batch[:, 1:].flatten(), reduction="sum").item()
        count += batch[:, 1:].numel()
    return total / count


def kl_to_dense(model, layers, tokens: torch.Tensor, dense_logp: list, batch_size: int = 4) -> float:
    """Mean per-token KL(P_dense ‖ Q_candidate); `dense_logp` from `dense_log_probs` on the same batches."""
    total, count = 0.0, 0
    for batch, logp in zip(batches(tokens, batch_size), dense_logp):
        logq = logits(model, layers, batch).log_softmax(-1)
        total += (logp.exp() * (logp - logq)).sum().item()
        count += batch.numel()
    return total / count


def dense_log_probs(model, tokens: torch.Tensor, batch_size: int = 4) -> list:
    """The dense model's log-probabilities, batch by batch (computed once, compared many times)."""
    return [logits(model, model.model.layers, batch).log_softmax(-1) for batch in batches(tokens, batch_size)]

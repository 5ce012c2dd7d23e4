"""Calibration statistics of the dense model, shared by the activation-based baselines.

The baselines score units from the inputs of the two output projections: o_proj's input
(the per-head attention outputs, head_dim channels per query head) and down_proj's input
(the MLP channels). Activations are never stored: forward pre-hooks fold each batch into
per-channel running statistics (count, mean, M2, Σx²), so memory is O(channels) whatever
the number of calibration tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tyr.calib import stores


def calibration_tokens(tokens_zarr, split: str = stores.PRUNE, max_seqs: int | None = None) -> torch.Tensor:
    """The calibration sequences [n_seq, seq_len] (int64, on the host), the first `max_seqs` when given."""
    tokens = torch.from_numpy(stores.read_tokens(Path(tokens_zarr), split)).long()
    if tokens.ndim != 2 or len(tokens) == 0:
        raise ValueError(
            f"{tokens_zarr}[{split}]: expected a non-empty [n_seq, seq_len] array, got {tuple(tokens.shape)}"
        )
    return tokens[:max_seqs] if max_seqs else tokens


def batches(tokens: torch.Tensor, batch_size: int):
    for i in range(0, len(tokens), batch_size):
        yield tokens[i : i + batch_size]


def dense_model(model_dir, device=None):
    """The dense model in float32 (statistics and gradients are taken in full precision), moved to
    `device` when given: the methods that run the whole model at once (forward passes with hooks,
    gradients, candidate evaluation) hold it there; the layer-by-layer ones leave it on the host and
    move one layer at a time (`layerwise.layers`)."""
    from tyr.model.adapter import load_model

    with torch.device("cpu"):  # read on the host, whatever the stage's default device (its rotary table too)
        model = load_model(model_dir, dtype=torch.float32)
    return model if device is None else model.to(device)


class ChannelStats:
    """Per-channel statistics over tokens, merged batch by batch.

    Means and second moments use Chan et al.'s pairwise update in float64, so the sample
    variance does not suffer the cancellation of E[x²] − E[x]² over millions of tokens.
    """

    def __init__(self, n_channels: int):
        self.n = 0
        self.mean = torch.zeros(n_channels, dtype=torch.float64)
        self.m2 = torch.zeros(n_channels, dtype=torch.float64)  # Σ (x − mean)²
        self.sumsq = torch.zeros(n_channels, dtype=torch.float64)  # Σ x²

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).double()
        nb = x.shape[0]
        if nb == 0:
            return
        mb = x.mean(0)
        n = self.n + nb
        delta = mb - self.mean
        self.m2 += ((x - mb) ** 2).sum(0) + delta**2 * (self.n * nb / n)
        self.mean += delta * (nb / n)
        self.sumsq += (x * x).sum(0)
        self.n = n

    @property
    def variance(self) -> torch.Tensor:
        """Sample variance (Bessel-corrected) of each channel."""
        return self.m2 / max(self.n - 1, 1)

    @property
    def norm(self) -> torch.Tensor:
        """‖X_j‖₂ of each channel over all calibration tokens."""
        return self.sumsq.sqrt()


def projection_inputs(model, tokens: torch.Tensor, batch_size: int = 8) -> list[dict]:
    """For every layer, {"attn": stats of o_proj's input, "mlp": stats of down_proj's input}.

    One dense forward pass over the calibration tokens; the LM head is skipped (nothing
    here needs logits).
    """
    stats, hooks = [], []
    for layer in model.model.layers:
        s = {
            "attn": ChannelStats(layer.self_attn.o_proj.in_features),
            "mlp": ChannelStats(layer.mlp.down_proj.in_features),
        }
        hooks.append(layer.self_attn.o_proj.register_forward_pre_hook(lambda m, args, st=s["attn"]: st.add(args[0])))
        hooks.append(layer.mlp.down_proj.register_forward_pre_hook(lambda m, args, st=s["mlp"]: st.add(args[0])))
        stats.append(s)
    forward_with_hooks(model, tokens, batch_size, hooks)
    return stats


def forward_with_hooks(model, tokens: torch.Tensor, batch_size: int, hooks) -> None:
    """Run the dense decoder over the calibration batches, then remove `hooks` whatever happens."""
    try:
        with torch.no_grad():
            for batch in batches(tokens, batch_size):
                model.model(batch)
    finally:
        for h in hooks:
            h.remove()


def head_sums(per_channel: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Per-head sums of a per-channel score over o_proj's input (heads are head_dim blocks)."""
    return per_channel.reshape(-1, head_dim).sum(-1)

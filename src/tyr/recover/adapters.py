"""What recovery trains: LoRA adapters on the kept projections (peft, merged into them at the
end), or every kept weight of the decoder layers ("full"). The embedding (tied to the LM head in
SmolLM2 and Llama-3.2) stays frozen in both: it is 20 % of SmolLM2's parameters and pruning did
not change it.
"""

from __future__ import annotations

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MODES = ("lora", "full")


def trainable(model, mode: str, *, rank: int = 16, alpha: float = 32.0):
    """The model to train (peft-wrapped for lora) with exactly its trained parameters requiring grad."""
    if mode not in MODES:
        raise ValueError(f"recover.mode: {mode!r}; expected one of {MODES}")
    model.requires_grad_(False)
    if mode == "full":
        for layer in model.model.layers:
            layer.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    present = sorted({name.rsplit(".", 1)[-1] for name, _ in model.named_modules()} & set(PROJECTIONS))
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none", target_modules=present)
    return get_peft_model(model, config)


def merged(model, mode: str):
    """The plain model with the adapters folded into its weights (W + (α/r)·B·A): what export writes."""
    return model.merge_and_unload() if mode == "lora" else model


def trained_parameters(model) -> dict:
    """{name: parameter} of what the optimiser updates (and a checkpoint holds)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}

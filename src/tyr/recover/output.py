"""The recovered model's folder: the pruned folder's config, modeling code and tokenizer, the
trained weights (LoRA merged: no peft needed to load it), `tyr_recovery.json` (options, loss
history, seconds) and a model card with the recovery and what the three models say."""

from __future__ import annotations

import shutil
from pathlib import Path

from tyr.core.io import CHECKSUMS, atomic_path, write_checksums, write_json
from tyr.core.markdown import cell

RECORD = "tyr_recovery.json"
REPLACED = (CHECKSUMS, "README.md", "model.safetensors.index.json")  # besides the weight shards


def write_recovered(model, pruned_dir, dense_dir, out_dir, record: dict, card: dict) -> None:
    """Write `model` (a plain TyrForCausalLM) as the recovered folder `out_dir`, atomically."""
    from tyr.export.hf import ShardWriter

    pruned_dir = Path(pruned_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for f in pruned_dir.iterdir():
            if f.is_file() and f.name not in REPLACED and f.suffix != ".safetensors":
                shutil.copyfile(f, tmp / f.name)
        writer = ShardWriter(tmp)
        writer.add(_state(model))
        writer.close()
        rows = _continuations(dense_dir, pruned_dir, tmp, card) if card.get("prompts") else []
        write_json(tmp / RECORD, dict(record, continuations=rows))
        base = (pruned_dir / "README.md").read_text() if (pruned_dir / "README.md").is_file() else ""
        (tmp / "README.md").write_text(base + recovery_card(record, rows))
        write_checksums(tmp)


def _state(model) -> dict:
    """The weights as export names them: no tied LM head (its embedding is the same tensor)."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    return state


def _continuations(dense_dir, pruned_dir, recovered_dir, card) -> list[dict]:
    """Greedy continuations of the dense, the retraining-free and the recovered model (the last
    loaded from its own folder, the way a user loads it)."""
    from tyr.evaluate.measure import continuations, load
    from tyr.export.card import side_by_side

    prompts, new_tokens = card["prompts"], card.get("new_tokens", 24)
    model, tokenizer = load(recovered_dir)
    recovered = continuations(model, tokenizer, prompts, new_tokens=new_tokens)
    return [dict(row, recovered=r["continuation"])
            for row, r in zip(side_by_side(dense_dir, pruned_dir, prompts, new_tokens), recovered)]  # fmt: skip


def recovery_card(record: dict, rows: list[dict]) -> str:
    """The model card's recovery section (appended to the pruned model's card)."""
    o = record["options"]
    how = f"LoRA rank {o['rank']} (α {o['alpha']:g}), merged" if o["mode"] == "lora" else "every kept decoder weight"
    lines = [
        "",
        "## Recovery (knowledge distillation from the dense model)",
        "",
        "These weights are the pruned model above after recovery: trained to match the dense model's "
        f"next-token distribution (KL to its top {o['top_k']} tokens per position, at temperature "
        f"{o['temperature']:g}) on {record['sequences']} sequences × {record['seq_len']} tokens of "
        f"{'the calibration splits (never the held-out one)' if o['text'] == 'calibration' else o['text']}.",
        "",
        "| | value |",
        "|---|---|",
        f"| trained | {how} |",
        f"| steps × sequences | {o['steps']} × {o['batch']} ({record['tokens']:,} tokens) |",
        f"| learning rate | {o['lr']:g}, {o['warmup']} warm-up steps, cosine to 0 |",
        f"| compute | {record['compute_dtype']} on {record['device']}, {record['seconds']:.0f} s |",
        f"| final loss (mean of the last 10 steps) | {record['final_loss']:.4f} |",
        f"| seed | {o['seed']} |",
    ]
    if rows:
        lines += ["", "### What it says (greedy continuations)", "", "| prompt | dense | pruned | recovered |",
                  "|---|---|---|---|"]  # fmt: skip
        lines += [f"| {cell(r['prompt'])} | {cell(r['dense'])} | {cell(r['pruned'])} | {cell(r['recovered'])} |"
                  for r in rows]  # fmt: skip
    return "\n".join(lines) + "\n"

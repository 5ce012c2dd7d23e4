"""Write a tyr model folder (the dense `model/` or any structural export `pruned/`) as a GGUF file
that llama.cpp runs: architecture `deci`, per-layer head / KV-head / MLP-width arrays, Llama tensor
names, the tokenizer of the source (`tyr.export.gguf_vocab`).

Every layer goes through `tyr.export.gguf_layout.layer_layout` (what `deci` can express and how);
q/k rows are permuted per head for llama.cpp's rope, which rotates adjacent pairs of a head's
dimensions where Hugging Face's rotates its two halves (the permutation llama.cpp's own Llama
converter applies). Weights are written in f32, f16 or bf16 (norms stay f32, as llama.cpp's
converter keeps 1-D tensors); quantization is `tyr.export.quantize`'s job, by llama.cpp itself.
The whole model is held in memory while the file is written (≈ 4 bytes per parameter in f32).
"""

from __future__ import annotations

from pathlib import Path

from tyr.core.io import atomic_path
from tyr.export.gguf_layout import check_model, layer_layout
from tyr.model.adapter import layer_prefix, load_config, load_state

ARCH = "deci"
FLOAT_TYPES = ("f32", "f16", "bf16")


def export_gguf(model_dir, out_path, *, tokenizer_source, ftype="f32", pad=True, name=None) -> dict:
    """Write `model_dir` to `out_path` (atomically) as a `deci` GGUF; return its manifest.

    `tokenizer_source`: a .gguf file (its `tokenizer.*` keys are copied) or a HF folder;
    `pad`: express layer 0 without attention and attention-without-MLP layers with exact zero
    padding (False: refuse them, naming the layer and the rule).
    """
    import gguf

    from tyr.export import gguf_vocab

    if ftype not in FLOAT_TYPES:
        raise ValueError(f"ftype {ftype!r}: one of {FLOAT_TYPES} (quantized types: tyr.export.quantize)")
    config = load_config(model_dir)
    check_model(config)
    layouts = [layer_layout(config, layer, pad=pad) for layer in range(config.num_hidden_layers)]
    with atomic_path(out_path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), ARCH)
        _write_hparams(writer, config, layouts, name or Path(model_dir).name, ftype)
        tokenizer = gguf_vocab.write(writer, tokenizer_source, config.vocab_size)
        _add(writer, "token_embd.weight", _embedding(model_dir), ftype)
        _add(writer, "output_norm.weight", load_state(model_dir, "model.norm.")["weight"], ftype)
        if not config.tie_word_embeddings:
            _add(writer, "output.weight", load_state(model_dir, "lm_head.")["weight"], ftype)
        for layer, layout in enumerate(layouts):
            for key, tensor in layer_tensors(config, load_state(model_dir, layer_prefix(layer)), layout).items():
                _add(writer, f"blk.{layer}.{key}", tensor, ftype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return {
        "file": str(out_path),
        "architecture": ARCH,
        "ftype": ftype,
        "tokenizer": tokenizer,
        "layers": [
            {
                "q_heads": x.n_head,
                "kv_heads": x.n_head_kv,
                "intermediate": x.n_ff,
                "zero_head": x.zero_head,
                "zero_channels": x.pad_ff,
            }
            for x in layouts
        ],
    }


def _write_hparams(writer, config, layouts, name, ftype) -> None:
    import gguf

    file_types = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
    }
    writer.add_name(name)
    writer.add_file_type(file_types[ftype])
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length([x.n_ff for x in layouts])
    writer.add_head_count([x.n_head for x in layouts])
    writer.add_head_count_kv([x.n_head_kv for x in layouts])
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)


def layer_tensors(config, state: dict, layout) -> dict:
    """GGUF tensors (name within `blk.<l>.` -> torch tensor) of one layer in `layout`."""
    import torch

    hidden, d = config.hidden_size, config.head_dim
    out = {}
    if layout.n_head:
        out["attn_norm.weight"] = state.get("input_layernorm.weight", torch.ones(hidden))
        out.update(_attention(state, layout, d, hidden))
    if layout.n_ff:
        out["ffn_norm.weight"] = state.get("post_attention_layernorm.weight", torch.ones(hidden))
        out.update(_mlp(state, layout, hidden))
    return out


def _attention(state, layout, d, hidden) -> dict:
    import torch

    def heads(name, order):  # rows of the listed heads, [len(order) * d, ...]
        t = state[f"self_attn.{name}"]
        return torch.cat([t[h * d : (h + 1) * d] for h in order]) if order else t[:0]

    def zero_head(t, rows):
        return torch.cat([t, t.new_zeros((rows, *t.shape[1:]))]) if layout.zero_head else t

    zero = torch.zeros((0, hidden))
    out = {}
    for proj, key, order in (
        ("q_proj", "attn_q", layout.q_order),
        ("k_proj", "attn_k", layout.kv_order),
        ("v_proj", "attn_v", layout.kv_order),
    ):
        for part in ("weight", "bias"):
            if f"self_attn.{proj}.{part}" in state:
                t = zero_head(heads(f"{proj}.{part}", order), d)
                out[f"{key}.{part}"] = rope_permute(t, d) if key != "attn_v" else t
        if f"{key}.weight" not in out:  # a zero head in a layer without attention tensors
            out[f"{key}.weight"] = zero_head(zero, d)
    o = state.get("self_attn.o_proj.weight", torch.zeros((hidden, 0)))
    columns = [o[:, h * d : (h + 1) * d] for h in layout.q_order] + (
        [o.new_zeros(hidden, d)] if layout.zero_head else []
    )
    out["attn_output.weight"] = torch.cat(columns, dim=1)
    if "self_attn.o_proj.bias" in state:
        out["attn_output.bias"] = state["self_attn.o_proj.bias"]
    return out


def _mlp(state, layout, hidden) -> dict:
    import torch

    if layout.pad_ff:  # MLP removed, attention kept: zero channels, which add exactly 0
        zeros = torch.zeros((layout.pad_ff, hidden))
        return {"ffn_gate.weight": zeros, "ffn_up.weight": zeros, "ffn_down.weight": zeros.T.contiguous()}
    out = {}
    for proj, key in (("gate_proj", "ffn_gate"), ("up_proj", "ffn_up"), ("down_proj", "ffn_down")):
        for part in ("weight", "bias"):
            if f"mlp.{proj}.{part}" in state:
                out[f"{key}.{part}"] = state[f"mlp.{proj}.{part}"]
    return out


def rope_permute(t, head_dim: int):
    """Rows of q/k (or their bias) from Hugging Face's half-split rope layout to llama.cpp's
    adjacent-pair layout, per head: row i of the second half moves beside row i of the first."""
    rows = t.shape[0]
    return t.reshape(rows // head_dim, 2, head_dim // 2, *t.shape[1:]).transpose(1, 2).reshape(t.shape)


def _embedding(model_dir):
    return load_state(model_dir, "model.embed_tokens.")["weight"]


def _add(writer, name: str, tensor, ftype: str) -> None:
    """Add one tensor in `ftype` (1-D tensors stay f32)."""
    import gguf
    import numpy as np
    import torch

    data = tensor.detach().to(torch.float32).contiguous().numpy()
    if data.ndim == 1 or ftype == "f32":
        writer.add_tensor(name, data)
    elif ftype == "f16":
        writer.add_tensor(name, data.astype(np.float16))
    else:
        writer.add_tensor(
            name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.BF16), raw_dtype=gguf.GGMLQuantizationType.BF16
        )

"""Export a genome as a standalone, physically smaller Hugging Face model folder.

The folder holds sliced safetensors weights, a `config.json` with per-layer shapes (a `TyrConfig`
under the source's `model_type`) whose `auto_map`
points at a verbatim copy of `modeling_tyr.py`, the source tokenizer and generation
config, and a model card. It loads with
`AutoModelForCausalLM.from_pretrained(out_dir, trust_remote_code=True)` where tyr is not
installed. Every layer is rebuilt by `tyr.supernet.format.layer_state` (dense tensors + the two
level files the genome names), so export slices nothing by hand, and the written
parameter count is checked against what the supernet and `tyr.model.sparsity` promised.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from tyr.core.io import atomic_path, read_json, write_checksums
from tyr.export.card import model_card, side_by_side
from tyr.model import sparsity
from tyr.model.adapter import decoder_layer, layer_prefix, load_config, load_state
from tyr.model.spec import SUBLAYERS, ModelSpec
from tyr.supernet.format import index_of, layer_shape, layer_state, load_level, pruned_config, read_supernet

MODELING_FILE = Path(__file__).resolve().parents[1] / "model" / "modeling_tyr.py"
AUTO_MAP = {"AutoConfig": "modeling_tyr.TyrConfig", "AutoModelForCausalLM": "modeling_tyr.TyrForCausalLM"}
# Tokenizer artefacts are copied verbatim: re-saving through a tokenizer class can rewrite them.
TOKENIZER_GLOBS = (
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "chat_template*",
    "*.tiktoken",
    "spiece.model",
)
MAX_SHARD_BYTES = 4 << 30
SPARSITY_TOLERANCE = 1e-4  # genomes may store a rounded sparsity; params are compared exactly


class ExportError(ValueError):
    pass


def export(model_dir, spec_json, genome_json, out_dir, *, method="tyr", card=None, supernet_json=None) -> dict:
    """Write the pruned model of `genome_json` to `out_dir` (atomically); return its summary.

    `card` (optional) feeds the model card: `base_model` (str), `tokens_zarr` (the path of
    `calib/tokens.zarr`, whose attrs and split shapes are recorded) or `calibration` (a dict),
    `evaluation_plan` (a `tyr.evaluate.plan` plan) or `evaluation` (dict, or the path of an
    evaluation/summary JSON), `prompts` (greedy continuations of the dense and the pruned
    model, side by side) and `new_tokens`. `supernet_json` overrides the genome file's `supernet`.
    """
    model_dir, genome_json = Path(model_dir), Path(genome_json)
    spec = ModelSpec.from_json(spec_json)
    record = read_json(genome_json)  # the genome file: its level per layer and sublayer, and provenance
    supernet = read_supernet(supernet_json or _resolve(record["supernet"], genome_json))
    _check_lengths(spec, record, supernet)
    levels = [
        {sub: _level_entry(supernet, layer, sub, choice[sub]) for sub in SUBLAYERS}
        for layer, choice in enumerate(record["layers"])
    ]
    base = _with_level_biases(load_config(model_dir), levels)

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        writer = ShardWriter(tmp)
        dtype = _write_unpruned(model_dir, spec, writer)
        shapes, promised, written, added = [], 0, 0, 0
        for layer, entries in enumerate(levels):
            state, shape = _pruned_layer_state(model_dir, spec, base, layer, entries)
            shapes.append(shape)
            promised += int(entries["attn"]["params"]) + int(entries["mlp"]["params"])
            n_added = _added_bias_params(spec, state)
            written += sum(v.numel() for k, v in state.items() if _is_prunable(k)) - n_added
            added += n_added
            writer.add({layer_prefix(layer) + k: v for k, v in state.items()})
        writer.close()

        summary = _summary(spec, record, shapes, method, added)
        _check_promise(summary, promised, written, record)
        config = _export_config(base, shapes, dtype)
        config.save_pretrained(tmp)
        shutil.copyfile(MODELING_FILE, tmp / "modeling_tyr.py")
        _copy_tokenizer(model_dir, tmp)
        (tmp / "tyr_pruning.json").write_text(json.dumps(summary, indent=2) + "\n")
        card = dict(card or {})
        if card.get("prompts"):  # what the pruned model says, beside the dense model
            card["continuations"] = side_by_side(model_dir, tmp, card["prompts"], card.get("new_tokens", 24))
        (tmp / "README.md").write_text(model_card(summary, spec, card))
        write_checksums(tmp)
    return summary


# ---- layers ----------------------------------------------------------------------------------


def _pruned_layer_state(model_dir, spec, base, layer, entries):
    """(sliced tensors, layer_shape) of one layer, built from its two level files."""
    attn, _ = load_level(entries["attn"]["path"])
    mlp, _ = load_level(entries["mlp"]["path"])
    state = layer_state(spec, load_state(model_dir, layer_prefix(layer)), attn, mlp)
    _zero_missing_biases(base, state)
    shape = layer_shape(attn, mlp)
    # Strict load into a meta-device layer of the promised shape: a wrong slice fails here,
    # with the layer named, not later inside from_pretrained.
    try:
        decoder_layer(pruned_config(base, [shape] * spec.num_layers), layer, state)
    except RuntimeError as e:
        raise ExportError(f"layer {layer}: level tensors do not fit shape {shape}: {e}") from e
    return state, shape


# Bias compensation (e.g. FLAP) stores an o_proj / down_proj bias in levels of models whose
# dense projections have none; the exported config must then give those projections biases.
LEVEL_BIASES = {
    "attn": ("o_proj.bias", "o_bias", "self_attn.o_proj"),
    "mlp": ("down_proj.bias", "down_bias", "mlp.down_proj"),
}


def _with_level_biases(config, levels):
    """`config` with o_bias / down_bias switched on where any chosen level carries that bias."""
    from safetensors import safe_open

    for sub, (tensor, flag, _) in LEVEL_BIASES.items():
        for entries in levels:
            with safe_open(entries[sub]["path"], framework="pt") as f:
                if tensor in f.keys():
                    setattr(config, flag, True)
                    break
    return config


def _zero_missing_biases(config, state):
    """A kept projection without a stored bias gets a zero one when the config has biases
    (zero adds nothing, so the layer computes exactly what its level defines)."""
    import torch

    for _, flag, module in LEVEL_BIASES.values():
        weight = state.get(f"{module}.weight")
        if getattr(config, flag, False) and weight is not None and f"{module}.bias" not in state:
            state[f"{module}.bias"] = torch.zeros(weight.shape[0], dtype=weight.dtype)


def _added_bias_params(spec, state) -> int:
    """Parameters of o_proj / down_proj biases the dense model does not have (compensation)."""
    added = [("self_attn.o_proj.bias", spec.o_bias), ("mlp.down_proj.bias", spec.mlp_bias)]
    return sum(state[name].numel() for name, dense_has in added if not dense_has and name in state)


def _level_entry(supernet, layer, sublayer, kept) -> dict:
    for entry in supernet["layers"][layer][sublayer]:
        if int(entry["kept"]) == int(kept):
            return entry
    have = sorted(int(e["kept"]) for e in supernet["layers"][layer][sublayer])
    raise ExportError(f"layer {layer} {sublayer}: genome keeps {kept} units; supernet levels are {have}")


def _is_prunable(name: str) -> bool:
    return "_proj." in name  # q/k/v/o and gate/up/down weights and biases, nothing else


def _write_unpruned(model_dir, spec, writer):
    """Copy embeddings, final norm and (untied) lm_head; return the checkpoint dtype."""
    embed = load_state(model_dir, "model.embed_tokens.")["weight"]
    writer.add(
        {"model.embed_tokens.weight": embed, "model.norm.weight": load_state(model_dir, "model.norm.")["weight"]}
    )
    if not spec.tie_word_embeddings:
        writer.add({"lm_head.weight": load_state(model_dir, "lm_head.")["weight"]})
    return embed.dtype


# ---- checks and config -----------------------------------------------------------------------


def _check_lengths(spec, record, supernet):
    n = spec.num_layers
    if len(record["layers"]) != n or len(supernet["layers"]) != n:
        raise ExportError(f"model has {n} layers; genome {len(record['layers'])}, supernet {len(supernet['layers'])}")


def _summary(spec, record, shapes, method, added_bias=0) -> dict:
    """Parameter accounting of the export. `backbone_prunable` and `sparsity` follow
    tyr.model.sparsity; biases added by compensation are counted in `total`/`backbone` and
    reported as `added_bias`, outside the sparsity accounting."""
    kept = sparsity.kept_params(
        spec, [{"attn": (s["q_heads"], s["kv_heads"]), "mlp": s["intermediate"]} for s in shapes]
    )
    dense = spec.params or sparsity.model_params(spec)
    removed = dense["backbone_prunable"] - kept - added_bias
    return {
        "method": method,
        "iteration": record.get("iteration"),
        "target_sparsity": record.get("target_sparsity"),
        "genome_sparsity": record.get("sparsity"),
        "sparsity": sparsity.backbone_sparsity(spec, kept),
        "params": {
            "dense_total": dense["total"],
            "total": dense["total"] - removed,
            "dense_backbone": dense["backbone"],
            "backbone": dense["backbone"] - removed,
            "dense_backbone_prunable": dense["backbone_prunable"],
            "backbone_prunable": kept,
            "added_bias": added_bias,
        },
        "layers": shapes,
    }


def _check_promise(summary, promised, written, record):
    """The written tensors, the supernet's level params and tyr.model.sparsity must all agree."""
    kept = summary["params"]["backbone_prunable"]
    if not promised == written == kept:
        raise ExportError(
            f"prunable params: supernet levels promise {promised}, tyr.model.sparsity {kept}, written {written}"
        )
    claimed = record.get("sparsity")
    if claimed is not None and not math.isclose(summary["sparsity"], claimed, abs_tol=SPARSITY_TOLERANCE):
        raise ExportError(f"genome claims sparsity {claimed}, its levels give {summary['sparsity']:.6f}")


def _export_config(base, shapes, dtype):
    config = pruned_config(base, shapes)
    config.architectures = ["TyrForCausalLM"]
    config.auto_map = dict(AUTO_MAP)
    config.dtype = dtype
    return config


def _resolve(path, genome_json: Path) -> Path:
    """The genome's supernet path is workflow-relative (cwd); fall back to the genome's folder."""
    path = Path(path)
    if path.is_absolute() or index_of(path).exists():
        return path
    return genome_json.parent / path


def _copy_tokenizer(model_dir: Path, out: Path) -> None:
    names = {p.name for g in TOKENIZER_GLOBS for p in model_dir.glob(g) if p.is_file()}
    if (model_dir / "generation_config.json").is_file():
        names.add("generation_config.json")
    for name in sorted(names):
        shutil.copyfile(model_dir / name, out / name)


# ---- weights ---------------------------------------------------------------------------------


class ShardWriter:
    """Streams tensors into safetensors shards so export never holds the whole model.

    One shard is written as `model.safetensors`; more get HF's `model-0000i-of-0000n`
    names and a `model.safetensors.index.json`.
    """

    def __init__(self, folder: Path, max_bytes: int = MAX_SHARD_BYTES):
        self.folder, self.max_bytes = Path(folder), max_bytes
        self.pending, self.pending_bytes, self.parts = {}, 0, []  # parts: (temp file, tensor names)
        self.total_bytes = 0

    def add(self, tensors: dict) -> None:
        for name, t in tensors.items():
            size = t.numel() * t.element_size()
            if self.pending and self.pending_bytes + size > self.max_bytes:
                self._flush()
            self.pending[name] = t.contiguous()
            self.pending_bytes += size
            self.total_bytes += size

    def _flush(self) -> None:
        from safetensors.torch import save_file

        path = self.folder / f".part{len(self.parts):05d}.safetensors"
        save_file(self.pending, str(path), metadata={"format": "pt"})
        self.parts.append((path, list(self.pending)))
        self.pending, self.pending_bytes = {}, 0

    def close(self) -> None:
        if self.pending or not self.parts:
            self._flush()
        if len(self.parts) == 1:
            self.parts[0][0].rename(self.folder / "model.safetensors")
            return
        n, weight_map = len(self.parts), {}
        for i, (path, names) in enumerate(self.parts):
            final = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            path.rename(self.folder / final)
            weight_map.update(dict.fromkeys(names, final))
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
        (self.folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")

"""An unstructured result as a Hugging Face folder: the source model with zeros in its projections.

The folder is the source folder (config, tokenizer, and for a structural source its
`modeling_tyr.py` and `tyr_pruning.json`) with the pruned layers' weights, so a dense source
gives a standard `LlamaForCausalLM` (or Qwen, Phi-3, ...) folder and a stacked one stays a
`tyr_llama` folder (`trust_remote_code=True`). The layers are pruned under canonical names and
written back under the source family's (`Family.from_canonical`: Phi-3's q/k/v fuse into
`qkv_proj` again), so the folder loads with the source's own class. Beside the weights:

  masks/masks.safetensors  per projection weight (named as in the folder), the removal mask
                           packed 8 per byte along the inputs (numpy.packbits, big bit order;
                           True = removed), so a zero the method kept is told apart from a
                           removed weight; packed row by row, a fused weight's mask is its
                           parts' masks stacked like the weight
  tyr_unstructured.json    method, pattern, per-layer statistics, removed / total weights
  README.md                a model card, including how to run a 2:4 model on a sparse kernel

The masks live in a subfolder because loaders glob `*.safetensors` at the top level.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tyr.core.io import atomic_path, load_safetensors, write_checksums
from tyr.export.hf import ShardWriter
from tyr.methods.unstructured.layer import MASK_PREFIX
from tyr.methods.unstructured.patterns import Pattern, unpack
from tyr.model.adapter import folder_family, layer_prefix, load_state, weight_files

RECORD = "tyr_unstructured.json"
MASKS = "masks/masks.safetensors"
SKIPPED = {"README.md", "spec.json", "model.safetensors.index.json"}  # rewritten, or not this model's


class ExportError(ValueError):
    pass


def export(source_dir, layer_files, out_dir, *, method: str, pattern, source: str) -> dict:
    """Write the source model with the pruned layers of `layer_files` (in layer order) to `out_dir`."""
    source_dir, pattern = Path(source_dir), Pattern.parse(pattern)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        writer = ShardWriter(tmp)
        writer.add(_non_layer_tensors(source_dir))
        family, config = folder_family(source_dir)
        masks, layers = {}, []
        for layer, path in enumerate(layer_files):
            tensors, layer_masks, meta = _layer(source_dir, layer, path, pattern)
            writer.add(family.from_canonical(tensors, config))
            masks.update(family.from_canonical(layer_masks, config))
            layers.append({"layer": layer, "seconds": float(meta["seconds"]), "projections": json.loads(meta["stats"])})
        writer.close()
        from safetensors.torch import save_file

        (tmp / "masks").mkdir()
        # one metadata key: the library writes several in hash-map order (bytes would vary)
        save_file(masks, str(tmp / MASKS), metadata={"packing": "numpy.packbits(axis=1, bitorder=big); 1 = removed"})
        record = _record(method, pattern, source, layers)
        _copy_source_files(source_dir, tmp)
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(record))
        write_checksums(tmp)
    return record


def _non_layer_tensors(source_dir) -> dict:
    """Embeddings, final norm and (untied) lm_head: every tensor outside model.layers."""
    from safetensors import safe_open

    state = {}
    for f in weight_files(source_dir):
        with safe_open(str(f), framework="pt") as sf:
            state.update({k: sf.get_tensor(k) for k in sf.keys() if not k.startswith("model.layers.")})
    return state


def _layer(source_dir, layer, path, pattern):
    """(tensors, packed masks, metadata) of one pruned layer, checked against the source layer."""
    source = load_state(source_dir, layer_prefix(layer))
    tensors, meta = load_safetensors(path)
    packed = {k[len(MASK_PREFIX) :]: v for k, v in tensors.items() if k.startswith(MASK_PREFIX)}
    weights = {k: v for k, v in tensors.items() if not k.startswith(MASK_PREFIX)}
    if set(weights) != set(source) or any(weights[k].shape != source[k].shape for k in source):
        raise ExportError(f"{path}: tensors do not match layer {layer} of {source_dir}")
    out, masks = {}, {}
    for name, w in weights.items():
        w = w.to(source[name].dtype)
        projection = name.removesuffix(".weight")
        if projection in packed:
            mask = unpack(packed[projection], w.shape[1])
            if bool(w[mask].any()):
                raise ExportError(f"layer {layer} {projection}: a removed weight is not zero")
            if pattern.m:
                _check_nm(mask, pattern, f"layer {layer} {projection}")
            masks[layer_prefix(layer) + name] = packed[projection]
        out[layer_prefix(layer) + name] = w
    return out, masks, meta


def _check_nm(mask, pattern, where):
    removed = mask.reshape(mask.shape[0], -1, pattern.m).sum(-1)
    if not bool((removed == pattern.m - pattern.n).all()):
        raise ExportError(f"{where}: not {pattern.label} (groups remove {sorted(set(removed.flatten().tolist()))})")


def _record(method, pattern, source, layers) -> dict:
    removed = sum(p["removed"] for l in layers for p in l["projections"].values())
    weights = sum(p["weights"] for l in layers for p in l["projections"].values())
    return {
        "method": method,
        "pattern": pattern.tag,
        "pattern_label": pattern.label,
        "source": source,
        "removed": removed,
        "weights": weights,
        "sparsity": removed / max(weights, 1),
        "seconds": round(sum(l["seconds"] for l in layers), 3),
        "layers": layers,
    }


def _copy_source_files(source_dir: Path, out: Path) -> None:
    for f in sorted(source_dir.iterdir()):
        if f.is_file() and not f.name.endswith(".safetensors") and f.name not in SKIPPED:
            shutil.copyfile(f, out / f.name)


def model_card(record: dict) -> str:
    """README.md: what was pruned, how much, and how to use the zeros."""
    pattern = Pattern.parse(record["pattern"])
    lines = [
        "---",
        "library_name: transformers",
        "tags: [pruned, sparse, tyr]",
        "---",
        "",
        f"# {record['method']} {record['pattern_label']} (tyr)",
        "",
        f"Source: `{record['source']}`. Every q/k/v/o and gate/up/down projection weight was pruned to "
        f"{record['pattern_label']}: {record['removed']:,} of {record['weights']:,} weights "
        f"({record['sparsity']:.2%}) are exact zeros. The tensors keep their dense shapes, so the model "
        "loads and runs like its source (`from_pretrained`; a `tyr_llama` source needs "
        "`trust_remote_code=True`). Dense kernels gain nothing from the zeros.",
        "",
        "`masks/masks.safetensors` holds the removal masks (`numpy.unpackbits(m, axis=1, count=d_in)`, "
        "True = removed); `tyr_unstructured.json` the per-layer statistics.",
        "",
    ]
    if (pattern.n, pattern.m) == (2, 4):
        lines += [
            "## Running on 2:4 sparse tensor cores",
            "",
            "On a GPU with semi-structured sparsity (NVIDIA Ampere or newer), fp16/bf16:",
            "",
            "```python",
            "import torch",
            "from torch.sparse import to_sparse_semi_structured",
            "model = model.half().cuda()",
            "for name, module in model.named_modules():",
            "    if isinstance(module, torch.nn.Linear) and name.endswith('_proj'):",
            "        module.weight = torch.nn.Parameter(to_sparse_semi_structured(module.weight))",
            "```",
            "",
            "No speed-up was measured here (CPU only).",
            "",
        ]
    elif pattern.m:
        lines += [f"{pattern.label} has no PyTorch sparse kernel (only 2:4 maps onto sparse tensor cores).", ""]
    return "\n".join(lines)

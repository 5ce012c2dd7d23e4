"""Hand-picked pruned structures of the tiny llama, written as a supernet and a genome, and what
an export of them must compute (the dense model with the removed units zeroed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from tyr.model import adapter, sparsity
from tyr.supernet.format import OUTPUT_PROJECTION, assemble, write_level, write_manifest
from tyr.supernet.local_prune import channels

# Tiny llama (conftest): 3 layers, 4 query heads over 2 KV heads (group 2), head_dim 16, 96 channels.
HEADS = [[1, 2, 3], [], [0, 3]]  # uneven GQA (KV0 keeps 1, KV1 keeps 2); no attention; 1 per KV head
CHANNELS = [list(range(0, 96, 2)), [5, 17, 40, 41, 42, 90, 95], []]  # half; a few; no MLP


def build_supernet(model_dir, spec, root, heads_per_layer, channels_per_layer) -> Path:
    """A supernet with a full-density level and the given pruned level for every sublayer, by
    plain slicing of the dense o_proj / down_proj columns (no compensation), through the
    product's writer."""
    manifests = []
    for layer in range(spec.num_layers):
        dense = adapter.load_state(model_dir, adapter.layer_prefix(layer))
        layer_dir = Path(root) / f"layer{layer:03d}"
        levels = {}
        for sub, pruned, full in (
            ("attn", heads_per_layer[layer], range(spec.num_heads)),
            ("mlp", channels_per_layer[layer], range(spec.intermediate_size[layer])),
        ):
            levels[sub] = [_sliced_level(spec, dense, layer_dir, layer, sub, units) for units in (list(full), pruned)]
        centre = {"attn": len(heads_per_layer[layer]), "mlp": len(channels_per_layer[layer])}
        write_manifest(layer_dir, layer=layer, iteration=1, centre=centre, levels=levels)
        manifests.append(layer_dir / "manifest.json")
    path = Path(root) / "supernet.json"
    assemble(manifests, path)
    return path


def _sliced_level(spec, dense, layer_dir, layer, sublayer, kept_units) -> dict:
    units = torch.tensor(sorted(kept_units), dtype=torch.int64)
    group = spec.head_dim if sublayer == "attn" else 1
    weight = dense[f"{OUTPUT_PROJECTION[sublayer]}.weight"][:, channels(units, group)]
    return write_level(layer_dir, spec, layer, sublayer, units, weight, None, {"layer": layer, "iteration": 1})


def genome(supernet, spec, heads, channels, **extra) -> dict:
    layers = [{"attn": len(h), "mlp": len(c)} for h, c in zip(heads, channels)]
    kept = sparsity.kept_params(
        spec, [{"attn": (len(h), len({spec.kv_of(x) for x in h})), "mlp": len(c)} for h, c in zip(heads, channels)]
    )
    return {
        "iteration": 1,
        "supernet": str(supernet),
        "target_sparsity": 0.5,
        "sparsity": sparsity.backbone_sparsity(spec, kept),
        "fitness": 0.0,
        "layers": layers,
        **extra,
    }


def masked_dense_logits(model_dir, spec, heads, channels, ids):
    """Reference: the dense transformers model with removed heads/channels zeroed at o/down_proj.

    With uncompensated levels a pruned layer computes exactly this, so it checks every slice
    (q rows, KV selection and mapping, o/down columns) independently of tyr's code.
    """
    from transformers import AutoModelForCausalLM

    return masked_dense_logits_of(AutoModelForCausalLM.from_pretrained(model_dir).eval(), spec, heads, channels, ids)


def masked_dense_logits_of(ref, spec, heads, channels, ids):
    with torch.no_grad():
        for layer, (h, c) in enumerate(zip(heads, channels)):
            block = ref.model.layers[layer]
            mask = torch.zeros(spec.num_heads, spec.head_dim)
            mask[list(h)] = 1
            block.self_attn.o_proj.weight.mul_(mask.reshape(-1))
            cmask = torch.zeros(spec.intermediate_size[layer])
            cmask[list(c)] = 1
            block.mlp.down_proj.weight.mul_(cmask)
        return ref(ids).logits


CLEAN_ENV_SCRIPT = textwrap.dedent("""
    import importlib.util, json, sys
    from pathlib import Path
    # The editable install puts src/ on sys.path (a .pth); drop every entry that provides tyr.
    sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "tyr").exists()]
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    assert importlib.util.find_spec("tyr") is None, "tyr is still importable"
    import torch
    import transformers.models.auto.configuration_auto as auto_config
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path, copy = sys.argv[1], sys.argv[2]
    # The tokenizer needs no custom code: AutoTokenizer must not ask "run the custom code? [y/N]".
    asked, resolve = [], auto_config.resolve_trust_remote_code
    def spy(trust, name, has_local_code, has_remote_code, *args, **kwargs):
        if trust is None and has_remote_code and not has_local_code:  # transformers would prompt
            asked.append(name)
        return resolve(trust, name, has_local_code, has_remote_code, *args, **kwargs)
    auto_config.resolve_trust_remote_code = spy
    tokenizer = AutoTokenizer.from_pretrained(path)
    auto_config.resolve_trust_remote_code = resolve
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    ids = torch.tensor([[3, 9, 27, 81, 4, 12, 40]])
    with torch.no_grad():
        logits = model(ids).logits
    out = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0)
    model.save_pretrained(copy)
    again = AutoModelForCausalLM.from_pretrained(copy, trust_remote_code=True).eval()
    with torch.no_grad():
        same = torch.equal(again(ids).logits, logits)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"generated": out.shape[1] - ids.shape[1], "params": n, "roundtrip_equal": same,
                      "tokenizer_prompted": asked, "tokenizer": type(tokenizer).__name__,
                      "logits": logits[0, -1, :8].tolist(),
                      "tied": model.lm_head.weight is model.model.embed_tokens.weight}))
""")


def run_clean(path, tmp_path) -> dict:
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", PYTHONPATH="")
    proc = subprocess.run(
        [sys.executable, "-c", CLEAN_ENV_SCRIPT, str(path), str(tmp_path / "roundtrip")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])

"""For tests and benchmarks: tiny random Llama-shaped models and a character tokenizer (no
download, built in seconds), and the supernet of a model built in one process.

Installed with tyr, so the tests, the benchmarks and CI's fresh-clone run (.ci/tiny_model.py) build the
same models without importing each other.
"""

from __future__ import annotations

from pathlib import Path

import torch

# Phi3Config's token ids default to Phi-3's 32k vocabulary; the tiny ones are Llama's defaults.
FAMILY_DEFAULTS = {"phi3": {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None}}


def tiny_hf_model(model_type: str = "llama", seed: int = 0, **overrides):
    """A random, small decoder of the given family (GQA: 4 query heads over 2 KV heads)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = dict(
        vocab_size=128,
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=96,
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        **FAMILY_DEFAULTS.get(model_type, {}),
    )
    kwargs.update(overrides)
    config = AutoConfig.for_model(model_type, **kwargs)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():  # norms at 1 hide bugs that mix channels up: randomise them
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def tiny_tokenizer(vocab_size: int = 128):
    """A character-level fast tokenizer with `vocab_size` entries; needs no download."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(32, 127)]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for ch in chars:
        if len(vocab) >= vocab_size:
            break
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def save_tiny_model(path, model_type: str = "llama", **overrides):
    """A tiny random model and its tokenizer saved as a Hugging Face folder at `path`."""
    model = tiny_hf_model(model_type, **overrides)
    model.save_pretrained(path)
    tiny_tokenizer(model.config.vocab_size).save_pretrained(path)
    return path


def build_supernet(model_dir, spec_json, levels_json, tokens_zarr, out_dir, **options) -> Path:
    """The workflow's embed + every `supernet_layer` job + `supernet`, in one process and in the
    workflow's layout: out_dir/acts/ (each layer's input, deleted once consumed),
    out_dir/supernet/layer{l:03d}/ and out_dir/supernet/supernet.json (returned)."""
    import shutil

    from tyr.calib.calibrate import embed
    from tyr.model.spec import ModelSpec
    from tyr.supernet.build import build_layer
    from tyr.supernet.format import assemble

    out_dir = Path(out_dir)
    n_layers = ModelSpec.from_json(spec_json).num_layers
    acts = [out_dir / "acts" / f"layer{l:03d}.zarr" for l in range(n_layers)]
    layer_dirs = [out_dir / "supernet" / f"layer{l:03d}" for l in range(n_layers)]
    embeddings = out_dir / "acts" / "embeddings.zarr"
    embed(model_dir, tokens_zarr, embeddings, batch_size=options.get("batch_size", 8))
    shutil.copytree(embeddings, acts[0])
    for l in range(n_layers):
        nxt = acts[l + 1] if l + 1 < n_layers else None  # the last layer's output feeds nothing
        build_layer(
            model_dir, spec_json, levels_json, acts[l], l, layer_dirs[l], nxt, embeddings_zarr=embeddings, **options
        )
        shutil.rmtree(acts[l])
    shutil.rmtree(embeddings)
    out = out_dir / "supernet" / "supernet.json"
    assemble([d / "manifest.json" for d in layer_dirs], out)
    return out


def incomplete_outputs(workdir) -> set[Path]:
    """Outputs of jobs Snakemake had started but not recorded as finished when it was killed (its
    file-backend markers .snakemake/incomplete/<url-safe base64 of the path, split into '@'
    folders): what a resume must redo, for the tests' and the kill trials' checks."""
    import base64

    workdir = Path(workdir)
    root, marked = workdir / ".snakemake" / "incomplete", set()
    for f in root.rglob("*") if root.exists() else ():
        if f.is_file() and f.name != "migration_underway":
            encoded = "".join(part.lstrip("@") for part in f.relative_to(root).parts)
            marked.add((workdir / base64.urlsafe_b64decode(encoded).decode()).resolve())
    return marked

"""The inputs bench/gpu_check.py runs every stage on: a random model of a real model's layer
shape, text, calibration tokens, embeddings, levels, a supernet, the dense top-k, a searched and
a uniform genome. Built with product code, once per shape; what is computed by a stage under
check (the supernet, the top-k, the search) is built on the device being checked, since only
its result's agreement with the CPU's matters here, and the CPU would take minutes at 1B shapes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from costmodel.shapes import SHAPES as COST_SHAPES
from costmodel.shapes import hf_kwargs

from lib.config import default_config, search_options
from lib.tinyrun import write_text

EVERY_STAGE = (
    "calibrate", "supernet_layer", "dense_topk", "attention_share", "search", "select", "evaluate", "baselines",
    "unstructured",
)  # fmt: skip
SMALL = dict(seq_len=32, prune=8, fitness=8, selection=4, heldout=2, sample_seqs=2, topk=16)
LARGER = dict(seq_len=128, prune=16, fitness=8, selection=4, heldout=4, sample_seqs=4, topk=64)

SHAPES_135M, SHAPES_1B = COST_SHAPES["135m"], COST_SHAPES["1b"]
TIED = dict(tie_word_embeddings=True, max_position_embeddings=2048)
SHAPES = {  # random weights: the layer shape is the real model's, the depth is cut (stated in `about`)
    "tiny": {
        "about": "tyr.testing's tiny Llama (3 layers, d 64, m 96, 4/2 heads, vocab 128)",
        "config": {},
        "sizes": SMALL,
        "stages": EVERY_STAGE,
    },
    "smollm2-135m": {
        "about": "SmolLM2-135M's layer (d 576, m 1536, 9/3 heads of 64, vocab 49152, tied), 6 of its 30 layers",
        "config": hf_kwargs(SHAPES_135M, num_hidden_layers=6, **TIED),
        "sizes": LARGER,
        "stages": EVERY_STAGE,
    },
    "llama-3.2-1b": {
        "about": "Llama-3.2-1B's layer (d 2048, m 8192, 32/8 heads of 64, vocab 128256, tied), 2 of its 16 layers",
        "config": hf_kwargs(SHAPES_1B, num_hidden_layers=2, **TIED),
        "sizes": LARGER,
        "stages": ("calibrate", "supernet_layer", "dense_topk", "evaluate", "baselines", "unstructured"),
    },
}
# The supernet slice: 3 levels around the target (the progressive pass walks down to 62.5% sparsity),
# 16-channel steps as the default; the search: 2 generations of the tiny preset's stages.
SUPERNET = dict(levels=3, delta=0.125, channels_per_step=16)


@dataclass
class Fixture:
    shape: str
    root: Path
    sizes: dict
    stages: tuple
    model: Path = None
    spec: Path = None
    text: Path = None
    tokens: Path = None
    embeddings: Path = None
    levels: Path = None
    supernet: Path = None
    topk: Path = None
    best: Path = None
    uniform: Path = None
    supernet_options: dict = field(default_factory=dict)
    search_options: dict = field(default_factory=dict)
    baselines: tuple = ("wanda_sp", "flap")
    baseline_options: dict = field(default_factory=dict)
    unstructured: tuple = ("sparsegpt", "apt", "wanda")


def build(shape: str, root: Path, device: str) -> Fixture:
    """Every input of `shape`'s checks under `root` (see the module docstring)."""
    entry = SHAPES[shape]
    conf = default_config(smoke=True)
    fx = Fixture(shape, Path(root), entry["sizes"], entry["stages"])
    fx.supernet_options = {"channels_per_step": SUPERNET["channels_per_step"], "batch_size": 4}
    fx.search_options = dict(search_options(conf["search"]), generations=2, track_sequences=0, dtype="float32")
    fx.baseline_options = {m: conf["baselines"][m] for m in fx.baselines}
    _model(fx, entry["config"])
    _tokens(fx)
    _levels(fx)
    if {"attention_share", "search", "select"} & set(fx.stages):
        _searched(fx, device)
    return fx


def _model(fx: Fixture, config: dict) -> None:
    from tyr.model.families import spec_from_config
    from tyr.testing import save_tiny_model, tiny_hf_model

    fx.model = save_tiny_model(fx.root / "model", **config)
    fx.spec = fx.root / "model" / "spec.json"
    spec_from_config(tiny_hf_model(**config).config).to_json(fx.spec)
    fx.text = write_text(fx.root / "text.txt", chars=200_000)


def _tokens(fx: Fixture) -> None:
    from tyr.calib.calibrate import calibrate, embed

    s = fx.sizes
    fx.tokens = fx.root / "tokens.zarr"
    calibrate(
        fx.model, fx.tokens, source=str(fx.text), seq_len=s["seq_len"], n_prune=s["prune"], n_fitness=s["fitness"],
        n_selection=s["selection"], n_heldout=s["heldout"], seed=0,
    )  # fmt: skip
    fx.embeddings = fx.root / "embeddings.zarr"
    embed(fx.model, fx.tokens, fx.embeddings)


def _levels(fx: Fixture) -> None:
    from tyr.supernet.levels import write_levels

    fx.levels = fx.root / "levels.json"
    write_levels(
        fx.spec, fx.levels, target_sparsity=0.5, delta=SUPERNET["delta"], n_levels=SUPERNET["levels"], iteration=1,
        mlp_group=SUPERNET["channels_per_step"],
    )  # fmt: skip


def _searched(fx: Fixture, device: str) -> None:
    """The supernet, the dense top-k, a searched and the uniform genome (on `device`)."""
    from tyr.search.budget import uniform_genome
    from tyr.search.evolve import run_search
    from tyr.search.reference import dense_topk
    from tyr.testing import build_supernet

    fx.supernet = build_supernet(
        fx.model, fx.spec, fx.levels, fx.tokens, fx.root / "iter1", device=device, **fx.supernet_options
    )
    fx.topk = fx.root / "topk.zarr"
    dense_topk(fx.model, fx.tokens, fx.topk, k=fx.sizes["topk"], device=device)
    fx.uniform = fx.root / "uniform.json"
    uniform_genome(fx.supernet, fx.spec, fx.uniform, target_sparsity=0.5, iteration=1)
    search = fx.root / "search"
    run_search(
        fx.supernet, fx.topk, fx.tokens, fx.model, fx.spec, search, target_sparsity=0.5, progress=False,
        **fx.search_options, device=device,
    )  # fmt: skip
    fx.best = search / "best.json"
    shutil.rmtree(fx.root / "iter1" / "acts", ignore_errors=True)


def describe(device: str) -> str:
    """The device checked, in words (its name and memory on CUDA)."""
    import torch

    if device == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    props = torch.cuda.get_device_properties(torch.device(device))
    return f"{device}: {props.name}, {props.total_memory / 2**30:.0f} GiB"

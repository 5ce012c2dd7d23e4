"""A finished run of a tiny random model, in the workflow's layout (results/<run>/), built in a few
seconds with product code only: what every --smoke mode runs its benchmark on.

    run/model/                  tyr.testing.save_tiny_model + spec.json
    run/calib/tokens.zarr       tyr.calib.calibrate on a generated text (the character tokenizer reads any text)
    run/dense/topk.zarr         tyr.search.reference.dense_topk
    run/dense/eval.json         tyr.evaluate.measure.evaluate_model (held-out perplexity only)
    run/s50/iter1/levels.json, supernet/   tyr.supernet.levels + tyr.testing.build_supernet
    run/s50/iter1/search/       tyr.search.evolve.run_search, two generations
    run/s50/{tyr,uniform}/      genome.json, pruned/ (tyr.export.hf), eval/{pruned,summary}.json
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from lib.config import default_config, search_options

TARGET = "50"
SEQ_LEN = 32  # half the tiny preset's: every smoke forward is short
WORDS = (
    "the model keeps a few heads and channels of every layer while the search moves the budget "
    "between them until the fitness on held out text stops improving and the pruned network is "
    "exported with its tokenizer and evaluated on the same windows as the dense one"
).split()


def write_text(path: Path, chars: int = 40_000, seed: int = 0) -> Path:
    """Plain prose-like text (random word order): a calibration source and a 'WikiText' for smoke runs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines, size = [], 0
    while size < chars:
        line = " ".join(rng.choice(WORDS, size=int(rng.integers(8, 20)))).capitalize() + "."
        lines.append(line)
        size += len(line) + 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


_BUILT: list[Path] = []  # one build per process, copied for every caller (bench/smoke.py runs all scripts in one)


def tiny_run(run_dir: Path) -> Path:
    """A copy of the process's tiny finished run at `run_dir` (built on first use); its own
    copy, so a benchmark may add to it. The generated text is beside it: `text_of(run_dir)`."""
    if not _BUILT:
        cache = Path(tempfile.mkdtemp(prefix="tyr-bench-tinyrun-"))
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
        _build(cache / "run")
        _BUILT.append(cache / "run")
    run_dir = Path(run_dir)
    shutil.copytree(_BUILT[0], run_dir, dirs_exist_ok=True)
    shutil.copy(text_of(_BUILT[0]), text_of(run_dir))
    for record in run_dir.rglob("*.json"):  # genomes name their supernet by absolute path: the copy's own
        text = record.read_text()
        if str(_BUILT[0]) in text:
            record.write_text(text.replace(str(_BUILT[0]), str(run_dir.resolve())))
    return run_dir


def text_of(run_dir: Path) -> Path:
    """The generated text a tiny run was calibrated on (also the smoke runs' 'WikiText-2')."""
    return Path(run_dir).parent / f"{Path(run_dir).name}-text.txt"


def smoke_run_args(args, tmp: Path) -> Path:
    """Point a run-based benchmark's arguments at a fresh tiny run: run_dir, target and, where
    it scores perplexity, the text and a few short windows."""
    args.run_dir, args.target = str(tiny_run(tmp / "results" / "tiny")), TARGET
    if hasattr(args, "wikitext"):
        args.wikitext, args.windows, args.seq_len = str(text_of(Path(args.run_dir))), 2, SEQ_LEN
    return Path(args.run_dir)


def _build(run: Path, search_generations: int = 2) -> Path:
    """Build the run at `run` (see the module docstring)."""
    from tyr.search.budget import uniform_genome
    from tyr.search.evolve import run_search
    from tyr.search.reference import dense_topk

    conf = default_config(smoke=True)
    data = conf["data"]
    model, spec, tokens = _model_and_tokens(run, data)
    it = run / f"s{TARGET}" / "iter1"
    supernet = _supernet(model, spec, tokens, it, conf["supernet"])
    dense_topk(model, tokens, run / "dense" / "topk.zarr", k=conf["search"]["topk"])
    uniform_genome(supernet, spec, run / f"s{TARGET}" / "uniform" / "genome.json", target_sparsity=0.5, iteration=1)
    opts = dict(search_options(conf["search"]), generations=search_generations, dtype="float32", device="cpu")
    run_search(
        supernet,
        run / "dense" / "topk.zarr",
        tokens,
        model,
        spec,
        it / "search",
        target_sparsity=0.5,
        progress=False,
        **opts,
    )
    (run / f"s{TARGET}" / "tyr").mkdir(parents=True, exist_ok=True)
    shutil.copy(it / "search" / "best.json", run / f"s{TARGET}" / "tyr" / "genome.json")
    _evaluate(run, conf, supernet)
    return run


def _model_and_tokens(run: Path, data: dict):
    from tyr.calib.calibrate import calibrate
    from tyr.model.families import spec_from_config
    from tyr.testing import save_tiny_model, tiny_hf_model

    model = save_tiny_model(run / "model")
    spec = run / "model" / "spec.json"
    spec_from_config(tiny_hf_model().config).to_json(spec)
    tokens = run / "calib" / "tokens.zarr"
    calibrate(
        model,
        tokens,
        source=str(write_text(text_of(run))),
        seq_len=SEQ_LEN,
        n_prune=data["prune_sequences"],
        n_fitness=data["fitness_sequences"],
        n_selection=data["selection_sequences"],
        n_heldout=data["heldout_sequences"],
        seed=data["seed"],
    )
    return model, spec, tokens


def _supernet(model: Path, spec: Path, tokens: Path, it: Path, sn: dict) -> Path:
    from tyr.supernet.levels import write_levels
    from tyr.testing import build_supernet

    write_levels(
        spec,
        it / "levels.json",
        target_sparsity=0.5,
        delta=sn["delta"],
        n_levels=sn["levels"],
        iteration=1,
        mlp_group=sn["channels_per_step"],
    )
    return build_supernet(
        model,
        spec,
        it / "levels.json",
        tokens,
        it,
        channels_per_step=sn["channels_per_step"],
        batch_size=sn["batch_size"],
    )


def _evaluate(run: Path, conf: dict, supernet: Path) -> None:
    """dense/eval.json and, per method, the export and its eval/summary.json (held-out perplexity:
    the smoke runs read no evaluation data)."""
    from tyr.evaluate.measure import evaluate_model
    from tyr.evaluate.plan import resolve
    from tyr.evaluate.summary import summarize
    from tyr.export.hf import export

    data = dict(conf["data"], seq_len=SEQ_LEN, source=str(text_of(run)))
    plan = resolve(
        dict(conf["evaluate"], wikitext="none", zeroshot_tasks=[], zeroshot_dir="none"),
        data,
        hub=lambda: "smoke runs are offline",
    )
    tokens, spec = run / "calib" / "tokens.zarr", run / "model" / "spec.json"
    kw = dict(plan=plan, tokens_zarr=tokens, seq_len=SEQ_LEN, speed=False)
    evaluate_model(run / "model", run / "dense" / "eval.json", **kw)
    for method in ("tyr", "uniform"):
        base = run / f"s{TARGET}" / method
        export(run / "model", spec, base / "genome.json", base / "pruned", method=method, supernet_json=supernet)
        evaluate_model(base / "pruned", base / "eval" / "pruned.json", **kw)
        summarize(
            run / "dense" / "eval.json",
            base / "eval" / "pruned.json",
            spec,
            base / "genome.json",
            base / "eval" / "summary.json",
            method=method,
        )


def tiny_workflow_config(tmp: Path, **settings) -> list[Path]:
    """Config files for a smoke run of the workflow itself (a dry-run in tmp): the tiny preset and a
    tiny random model, pydoc calibration, no evaluation data, no speed timing; `settings` on top."""
    from lib.config import TINY
    from lib.snakemake import write_overrides
    from tyr.testing import save_tiny_model

    model = tmp / "tiny-model"
    if not model.exists():
        save_tiny_model(model)
    base = {
        "model": {"source": str(model)},
        "data": {"source": "pydoc"},
        "evaluate": {"wikitext": "none", "zeroshot_tasks": [], "zeroshot_dir": "none", "speed": False},
    }
    return [TINY, write_overrides(tmp / "smoke.yaml", {**base, **settings})]

"""Every heavy stage on the device against the CPU: seconds, peak device memory, agreement.

    python bench/gpu_check.py                        # cuda vs cpu: SmolLM2-135M and Llama-3.2-1B shapes
    python bench/gpu_check.py --device cpu --quick   # the same code on the CPU, a tiny model, < 60 s (CI)

For each stage (`calibrate`, `supernet_layer`, `dense_topk`, `attention_share`, `search`, `select`,
`evaluate`, `baselines`, `unstructured`) one small slice runs through the stage's own entry point
with `device=<--device>` and again with `device="cpu"`, on the same inputs: a model with random
weights built here (no download; the layer shapes of SmolLM2-135M and Llama-3.2-1B, fewer layers
than the real ones, stated in the result) and text generated here. Agreement (`lib.agreement`):
the same kept units at every level, weights and activations within a relative tolerance, the
same choices (share, selected genome, baseline genomes), KL and perplexity within a relative
tolerance. Every slice computes in float32 (the sampler and the fitness too), so the two devices
differ only by their kernels; bf16 differences are a precision question, not a placement one.

Prints one JSON line {"device", "agrees", "stages": {"<stage>@<shape>": {"seconds": {"device": s, "cpu": s},
"peak_mem_mib", "agrees", "checks"}}} and writes it to
bench/results/<date>-<host>-gpu-check[-quick].json (`--out` elsewhere).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from lib import agreement as agree
from lib import args as bench_args
from lib import devicefixture, results

QUICK = ("tiny",)
FULL = ("smollm2-135m", "llama-3.2-1b")


def stage_calibrate(fx, device, out):
    from tyr.calib.sampling import sample_self

    tokens, _ = sample_self(fx.model, fx.sizes["sample_seqs"], fx.sizes["seq_len"], 0, dtype="float32", device=device)
    return tokens


def stage_supernet_layer(fx, device, out):
    from tyr.supernet.build import build_layer

    build_layer(
        fx.model, fx.spec, fx.levels, fx.embeddings, 0, out / "layer000", out / "out000.zarr", device=device,
        **fx.supernet_options,
    )  # fmt: skip
    return out


def stage_dense_topk(fx, device, out):
    from tyr.search.reference import dense_topk

    dense_topk(fx.model, fx.tokens, out / "topk.zarr", k=fx.sizes["topk"], device=device)
    return out / "topk.zarr"


def stage_attention_share(fx, device, out):
    from tyr.search.split import choose_share

    return choose_share(
        fx.supernet, fx.model, fx.spec, out / "share.json", target_sparsity=0.5, shares=[0.75, 1.0],
        text=str(fx.text), sequences=4, seq_len=fx.sizes["seq_len"], dtype="float32", device=device,
    )  # fmt: skip


def stage_search(fx, device, out):
    from tyr.core.io import read_json
    from tyr.search.evolve import run_search

    run_search(
        fx.supernet, fx.topk, fx.tokens, fx.model, fx.spec, out, target_sparsity=0.5, progress=False,
        **fx.search_options, device=device,
    )  # fmt: skip
    return read_json(out / "best.json")


def stage_select(fx, device, out):
    from tyr.search.select import select_genome

    return select_genome([fx.best, fx.uniform], fx.model, fx.topk, fx.tokens, out / "genome.json", device=device)


def stage_evaluate(fx, device, out):
    from tyr.calib.stores import HELDOUT
    from tyr.evaluate.measure import evaluate_model

    plan = {"perplexity": {"heldout": {"source": HELDOUT}}, "zeroshot": {"tasks": [], "dir": None}, "skipped": {}}
    speed = {"prompt_tokens": 32, "new_tokens": 8, "repeats": 1}
    return evaluate_model(fx.model, out / "eval.json", plan=plan, tokens_zarr=fx.tokens, speed=speed, device=device)


def stage_baselines(fx, device, out):
    from tyr.core.io import read_json
    from tyr.methods import baselines

    genomes = {}
    for method in fx.baselines:
        path = baselines.run(
            method, fx.model, fx.tokens, out / method, target_sparsity=0.5, device=device, **fx.baseline_options[method]
        )
        genomes[method] = read_json(path)["layers"]
    return genomes


def stage_unstructured(fx, device, out):
    from tyr.methods.unstructured.layer import prune_layer

    for method in fx.unstructured:
        prune_layer(
            fx.model, fx.embeddings, 0, out / f"{method}.safetensors", out / f"{method}-next.zarr", method=method,
            pattern="0.5", device=device,
        )  # fmt: skip
    return out


STAGES = {  # name: (run on one device, compare the two results -> checks with "agrees")
    "calibrate": (stage_calibrate, agree.tokens),
    "supernet_layer": (stage_supernet_layer, agree.supernet_layer),
    "dense_topk": (stage_dense_topk, agree.topk),
    "attention_share": (stage_attention_share, agree.share),
    "search": (stage_search, agree.search),
    "select": (stage_select, agree.select),
    "evaluate": (stage_evaluate, agree.evaluation),
    "baselines": (stage_baselines, agree.genomes),
    "unstructured": (stage_unstructured, agree.unstructured),
}


def timed(run, fx, device, out: Path) -> tuple:
    """(result, seconds, peak device MiB or None) of one stage run on `device`."""
    import torch

    cuda = device != "cpu"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    value = run(fx, device, out)
    if cuda:
        torch.cuda.synchronize()
    seconds = round(time.perf_counter() - start, 3)
    peak = round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None
    return value, seconds, peak


def check_stage(name: str, fx, device: str, work: Path) -> dict:
    run, compare = STAGES[name]
    ours, seconds, peak = timed(run, fx, device, work / name / device.replace(":", ""))
    ref, ref_seconds, _ = timed(run, fx, "cpu", work / name / "cpu-reference")
    checks = compare(ours, ref)
    row = {"stage": name, "shape": fx.shape, "seconds": {"device": seconds, "cpu": ref_seconds}, "peak_mem_mib": peak}
    row.update(agrees=bool(checks.pop("agrees")), checks=checks)
    print(f"[gpu_check] {name}@{fx.shape}: {row['seconds']} agrees={row['agrees']} {checks}", file=sys.stderr)
    return row


def run_checks(device: str, shapes, work: Path, only=None) -> dict:
    stages = {}
    for shape in shapes:
        fx = devicefixture.build(shape, work / shape, device)
        for name in STAGES:
            if name in fx.stages and (not only or name in only):
                stages[f"{name}@{shape}"] = check_stage(name, fx, device, work / shape)
    return {
        "device": devicefixture.describe(device),
        "agrees": all(s["agrees"] for s in stages.values()),
        "shapes": {s: devicefixture.SHAPES[s]["about"] for s in shapes},
        "stages": stages,
    }


def main(argv=None) -> int:
    import tempfile

    ap = bench_args.parser(__doc__)
    ap.add_argument("--device", default="cuda", help="the device checked against the CPU: cuda | cuda:N | cpu")
    ap.add_argument("--quick", action="store_true", help="a tiny model only (the CPU check CI runs)")
    ap.add_argument("--stages", nargs="+", choices=list(STAGES), help="check these stages only")
    args = ap.parse_args(argv)
    if args.smoke:  # bench/smoke.py: the quick CPU check, its result in a temp folder
        args.device, args.quick = "cpu", True
    with tempfile.TemporaryDirectory(prefix="tyr-gpu-check-") as tmp:
        out = args.out or (Path(tmp) / "results" if args.smoke else None)
        report = run_checks(args.device, QUICK if args.quick else FULL, Path(tmp), args.stages)
        path = results.write("gpu-check" + ("-quick" if args.quick else ""), data=report, out=out, quiet=True)
    print(json.dumps(report, default=str))
    print(f"[gpu_check] wrote {results.suffixed(path, '.json')}", file=sys.stderr)
    return 0 if report["agrees"] else 1


if __name__ == "__main__":
    sys.exit(main())

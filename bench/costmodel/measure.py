"""The measurements of the cost model: one worker per measurement, each in a fresh process on one
thread (so its ru_maxrss is its own), run by `python bench/scaling.py --worker KIND JOB`.

  setup     a shape's model folder (1 decoder layer, random), tokens, the paper's levels, layer 0's
            calibration input, a one-level supernet at 50 % for the fitness: nothing timed
  supernet  `tyr.supernet.build.build_layer` (the `supernet_layer` rule) at the paper's levels,
            split by `lib.meter.Meter` into Hessians, pruning path, reconstruction error, forwards
            and level writes
  path      `tyr.supernet.local_prune.prune_levels` alone at one width
  topk      `tyr.search.reference.dense_topk` (k = 256) over the fitness split
  fitness   `tyr.search.fitness.Evaluator`, every sublayer at 50 %: a cold evaluation (module
            builds) and a warm one (sublayer forwards, LM head + KL)
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from lib.env import ROOT, child_env
from lib.meter import Meter

from costmodel.shapes import QUICK_SWEEP, SHAPES, SWEEP, hf_kwargs, spec_of

SCRIPT = ROOT / "bench" / "scaling.py"


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def staged(run):
    """run() with its CPU and wall seconds and its peak memory over the resident size before it."""
    before, peak_before = rss_now(), peak_rss()
    cpu, wall = time.process_time(), time.perf_counter()
    out = run()
    peak = peak_rss()
    return out, {
        "cpu": time.process_time() - cpu,
        "wall": time.perf_counter() - wall,
        "peak_delta_bytes": peak - before,
        "peak_above_startup": peak > peak_before,
    }


def tokens_of(x) -> int:
    return x.numel() // x.shape[-1]


# ---- workers ----------------------------------------------------------------------------------


def worker_setup(job: dict) -> dict:
    from tyr.calib import stores
    from tyr.calib.calibrate import embed
    from tyr.methods.baselines.common.single_level import Structure, write
    from tyr.model.families import spec_from_config
    from tyr.supernet.levels import write_levels
    from tyr.testing import tiny_hf_model

    d, s = Path(job["dir"]), SHAPES[job["shape"]]
    model = tiny_hf_model(
        "llama", **hf_kwargs(s, num_hidden_layers=1, max_position_embeddings=4096, tie_word_embeddings=True)
    )
    model.save_pretrained(d / "model")
    spec_from_config(model.config).to_json(d / "model" / "spec.json")
    del model
    rng = np.random.default_rng(0)
    splits = {
        split: rng.integers(3, s["vocab"], size=tuple(job[split]), dtype=np.int32) for split in ("prune", "fitness")
    }
    stores.write_tokens(d / "tokens.zarr", splits, {"source": "random"})
    write_levels(
        d / "model" / "spec.json",
        d / "levels.json",
        target_sparsity=0.5,
        delta=0.125,
        n_levels=9,
        iteration=1,
        mlp_group=16,
    )
    embed(d / "model", d / "tokens.zarr", d / "acts0.zarr", split="prune")
    # The fitness times whatever weights it is given: half the heads and channels of the dense layer,
    # written as a one-level supernet by the baselines' writer (no pruning path to wait for).
    half = Structure(heads=[list(range(s["heads"] // 2))], channels=[list(range(s["intermediate"] // 2))])
    write(d / "model", d / "half", half, method="costmodel", target_sparsity=0.5)
    return {}


def _time_supernet_pieces(meter, spec, seq: int, m: int) -> None:
    """The meter's spans of one supernet layer job: Hessians, pruning paths, reconstruction
    errors, the forward passes of the expectation propagation, level writes."""
    from floors import attention_input_flops, mlp_input_flops

    from tyr.model import adapter
    from tyr.supernet import accumulate, local_prune
    from tyr.supernet import format as supernet

    meter.wrap(
        local_prune.Hessian, "add", lambda a, k, o: (("hessian", a[0].H.shape[0]), {"tokens": tokens_of(a[1])}, None)
    )
    meter.wrap(
        local_prune,
        "prune_levels",
        lambda a, k, o: (
            ("path", a[0].shape[1]),
            {},
            {
                "width": a[0].shape[1],
                "d_out": a[0].shape[0],
                "group": k.get("group", 1),
                "per_step": k.get("per_step", 1),
                "levels": [int(x) for x in a[2]],
            },
        ),
    )
    meter.wrap(
        local_prune,
        "recon_errors",
        lambda a, k, o: (  # H·D per level (+ ‖XW‖² once)
            ("recon", a[0].shape[1]),
            {"flops": 2 * a[0].shape[1] ** 2 * a[0].shape[0] * len(a[1])},
            None,
        ),
    )
    meter.wrap(
        adapter,
        "o_proj_input",
        lambda a, k, o: (
            ("forward", "attention_input"),
            {
                "tokens": tokens_of(a[1]),
                "flops": tokens_of(a[1]) * attention_input_flops(spec, spec.num_heads, seq / 2),
            },
            None,
        ),
    )
    meter.wrap(
        adapter,
        "down_proj_input",
        lambda a, k, o: (
            ("forward", "mlp_input"),
            {"tokens": tokens_of(a[1]), "flops": tokens_of(a[1]) * mlp_input_flops(spec, m)},
            None,
        ),
    )
    meter.wrap(
        accumulate,
        "residual",
        lambda a, k, o: (
            ("forward", "residual"),
            {"tokens": tokens_of(a[1]), "flops": 2 * tokens_of(a[1]) * a[2].numel()},
            None,
        ),
    )
    meter.wrap(
        supernet, "write_level", lambda a, k, o: (("write", a[3]), {"bytes": a[5].numel() * a[5].element_size()}, None)
    )


def worker_supernet(job: dict) -> dict:
    """tyr.supernet.build.build_layer of layer 0 with the paper's options, its pieces timed."""
    from tyr.supernet import build as construct

    d, spec, seq = Path(job["dir"]), spec_of(SHAPES[job["shape"]]), job["prune"][1]
    m = spec.intermediate_size[0]
    with Meter() as meter:
        _time_supernet_pieces(meter, spec, seq, m)
        options = dict(damp=0.01, heads_per_step=1, channels_per_step=16, batch_size=8)
        _, total = staged(
            lambda: construct.build_layer(
                d / "model",
                d / "model" / "spec.json",
                d / "levels.json",
                d / "acts0.zarr",
                0,
                d / "supernet" / "layer000",
                d / "acts1.zarr",
                iteration=1,
                **options,
            )
        )
        pieces = meter.take()
    return {"total": total, "pieces": pieces}


def worker_path(job: dict) -> dict:
    """prune_levels alone on a random Hessian at one width, the paper's levels of that sublayer."""
    import torch

    from tyr.supernet.levels import sublayer_levels
    from tyr.supernet.local_prune import Hessian, prune_levels

    width, d_out, group, per_step = job["width"], job["d_out"], job["group"], job["per_step"]
    torch.manual_seed(0)
    H = Hessian(width)
    H.add(torch.randn(min(width, 1024), width))  # rank-deficient: the damping makes it definite, as in use
    H = H.mean()
    W = torch.randn(d_out, width) / math.sqrt(width)
    levels, _ = sublayer_levels(width // group, 0.5, 0.125, 9, 1 if group > 1 else 16)
    _, total = staged(lambda: prune_levels(W, H, levels, group=group, per_step=per_step, damp_ratio=0.01))
    return {
        "total": total,
        "info": {"width": width, "d_out": d_out, "group": group, "per_step": per_step, "levels": levels},
    }


def worker_topk(job: dict) -> dict:
    from tyr.search.reference import dense_topk

    d = Path(job["dir"])
    _, total = staged(lambda: dense_topk(d / "model", d / "tokens.zarr", d / "topk.zarr", k=256, splits=("fitness",)))
    return {"total": total}


def worker_fitness(job: dict) -> dict:
    """Evaluator: a cold full evaluation (module builds) and a warm one (forwards, head)."""
    from tyr.core.io import read_json
    from tyr.search import fitness

    d, spec = Path(job["dir"]), spec_of(SHAPES[job["shape"]])
    kept = tuple(x for layer in read_json(d / "half" / "genome.json")["layers"] for x in (layer["attn"], layer["mlp"]))
    with Meter() as meter:
        meter.wrap(fitness, "sublayer", lambda a, k, o: _sublayer_key(spec, a))
        meter.wrap(
            fitness,
            "head_kl_rows",
            lambda a, k, o: (("head",), {"tokens": a[0].shape[0], "flops": 2 * a[0].shape[0] * a[1].numel()}, None),
        )
        meter.wrap(
            fitness.ModuleCache,
            "build",
            lambda a, k, o: (
                ("build", a[2]),
                {"bytes": sum(p.numel() * p.element_size() for p in o.parameters())},
                None,
            ),
        )

        def run():
            ev = fitness.Evaluator(
                d / "half" / "supernet" / "supernet.json",
                d / "model",
                d / "topk.zarr",
                d / "tokens.zarr",
                batch_size=4,
                dtype=job["dtype"],
                device="cpu",
            )
            ev.set_tokens(list(range(ev.n_seq)))
            ev.fitness(kept, incremental=False)
            cold = meter.take()
            ev.fitness(kept, incremental=False)
            return cold, meter.take()

        (cold, warm), total = staged(run)
    return {"total": total, "cold": cold, "warm": warm}


def _sublayer_key(spec, args):
    """One sublayer branch of the fitness forward (`fitness.sublayer(layer, mlp, module, h, ...)`):
    its FLOPs at the module's kept units (floors.py)."""
    from floors import attention_flops, mlp_flops

    _, mlp, module, h = args[:4]
    kind = "mlp" if mlp else "attn"
    if module is None:
        return ("sublayer", kind), {}, None
    kept = module.down_proj.in_features if mlp else module.num_heads
    per_token = attention_flops(spec, kept, h.shape[1] / 2) if kind == "attn" else mlp_flops(spec, kept)
    return ("sublayer", kind), {"tokens": tokens_of(h), "flops": tokens_of(h) * per_token}, None


WORKERS = {
    "setup": worker_setup,
    "supernet": worker_supernet,
    "path": worker_path,
    "topk": worker_topk,
    "fitness": worker_fitness,
}


def worker_main(kind: str, job_json: str) -> None:
    """A worker process: one measurement on one thread, its result on stdout's last line."""
    print("RESULT " + json.dumps(run_worker(kind, json.loads(job_json))))


def run_worker(kind: str, job: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    if kind != "setup":  # import what the stage imports lazily, so its memory is its tensors, not libraries
        import zarr  # noqa: F401

        from tyr.model.adapter import load_config
        from tyr.supernet import build as construct  # noqa: F401

        if "dir" in job:
            load_config(Path(job["dir"]) / "model")
    return WORKERS[kind](job)


# ---- driver -----------------------------------------------------------------------------------


def spawn(kind: str, job: dict, in_process: bool = False) -> dict:
    """One measurement in a fresh process on one thread (`in_process`: in this one, for smoke runs,
    whose memory figures then mean nothing)."""
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    if in_process:
        out = run_worker(kind, job)
    else:
        env = child_env(OMP_NUM_THREADS=1, MKL_NUM_THREADS=1)
        env.pop("TYR_THREADS", None)
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--worker", kind, json.dumps(job)], env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"{kind} {job} failed:\n{done.stderr[-4000:]}")
        line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith("RESULT "))
        out = json.loads(line[len("RESULT ") :])
    out.update(kind=kind, job=job, process_wall=time.perf_counter() - t0, load=[load0, os.getloadavg()[0]])
    print(
        f"  {kind:8s} {job.get('shape', job.get('width', ''))!s:6s} {job.get('dtype', '')!s:9s} "
        f"cpu {out.get('total', {}).get('cpu', 0):7.1f}s  process wall {out['process_wall']:6.1f}s  "
        f"load {out['load'][0]:.2f}->{out['load'][1]:.2f}",
        flush=True,
    )
    return out


def measure(args) -> list:
    """Every measurement of the run, in order, each in its own process. --quick: the tiny shape
    and two path points; --smoke: quick, in this process, but for one path point spawned."""
    quick = args.quick or args.smoke
    shapes, seq = (["tiny"], 256) if quick else (args.shapes.split(","), 2048)
    results = []
    with tempfile.TemporaryDirectory(prefix="tyr-scaling-") as tmp:
        for name in shapes:
            d = Path(tmp) / name
            fit_seq = seq // 2 if name == "1b" else seq  # the 1B LM head costs 0.5 GFLOP a token
            job = {"dir": str(d), "shape": name, "prune": [2, seq], "fitness": [1, fit_seq]}
            spawn("setup", job, args.smoke)
            if name != "1b" or args.full:
                results.append(spawn("supernet", job, args.smoke))
            results.append(spawn("topk", job, args.smoke))
            for dtype in ("float32", "bfloat16"):
                results.append(spawn("fitness", dict(job, dtype=dtype), args.smoke))
        if args.sweep:
            for k, (sub, width, d_out, group, per_step) in enumerate(QUICK_SWEEP if quick else SWEEP):
                job = dict(sublayer=sub, width=width, d_out=d_out, group=group, per_step=per_step)
                results.append(spawn("path", job, args.smoke and k > 0))
    return results

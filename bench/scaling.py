"""Per-stage cost scaling, measured on random Llama-shaped layers: the constants of docs/cost-model.md.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/scaling.py [--quick] [--full]
        [--shapes 135m,360m,1b] [--no-sweep]

Builds random-initialised Llama-architecture models with ONE decoder layer (every per-layer cost
is linear in depth) in a temporary folder with the tests' model factory, SmolLM2-135M-, SmolLM2-
360M- and Llama-3.2-1B-shaped, and times on one thread, each in a fresh process:

  supernet  `tyr.supernet.build.build_layer` (the `supernet_layer` rule) at the paper's levels (9,
            Δ 12.5 %, 1 head / 16 channels per step) on 2 × 2048 calibration tokens, split into
            Hessian accumulation, pruning path (`prune_levels`), reconstruction error, forwards
            and level writes. Not for the 1B shape unless --full: it takes ~9 CPU-min here (an
            hour of wall clock on a busy machine), its MLP pruning path most of it.
  path      `tyr.supernet.local_prune.prune_levels` alone at wider widths (Llama-3.1-8B's attention among
            them): the O(width³) part, which does not depend on the token count.
  topk      `tyr.search.fitness.dense_topk` (k = 256) over one 2048-token sequence (1B: 1024).
  fitness   `tyr.search.fitness.Evaluator` on a supernet of the tests' factory, every sublayer at 50 %:
            the pruned sublayer forwards and the LM head + KL per token, in float32 and
            bfloat16, and the build of sublayer modules from level files.

Times are CPU seconds of the process (time.process_time: user + system), so a busy machine
inflates the wall clock far more than them; both are recorded. Memory: the process's peak
resident size (ru_maxrss) minus its resident size just before the stage, in a fresh process.
Then one constant per law is fitted (seconds per FLOP, per byte; the path as c_in·Σn² while the
n×n H⁻¹ fits the last-level cache + c_out·Σn² beyond it + c_w·Σn·d_out + c_init·(w³ + 2w²·d_out)
over its elimination steps), with predicted/measured per point and the 1B layer predicted from
a fit without it (--holdout), and the paper preset (config/config.yaml + config/presets/paper.yaml)
is predicted for Llama-3.1-8B and -70B (docs/cost-model.md). Writes
bench/results/<date>-<host>-scaling[-<tag>].{json,md}; --refit A.json [B.json] fits and predicts
again from stored measurements.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # floors.py, common.py, also when loaded by path
GiB = 1 << 30

# Llama-architecture shapes: hidden d, MLP width m, query / KV heads, head_dim, vocab.
SHAPES = {
    "tiny": dict(hidden=256, intermediate=768, heads=4, kv_heads=2, head_dim=64, vocab=8192),
    "135m": dict(hidden=576, intermediate=1536, heads=9, kv_heads=3, head_dim=64, vocab=49152),
    "360m": dict(hidden=960, intermediate=2560, heads=15, kv_heads=5, head_dim=64, vocab=49152),
    "1b": dict(hidden=2048, intermediate=8192, heads=32, kv_heads=8, head_dim=64, vocab=128256),
}
TARGETS = {
    "Llama-3.1-8B": dict(layers=32, hidden=4096, intermediate=14336, heads=32, kv_heads=8, head_dim=128,
                         vocab=128256),
    "Llama-3.1-70B": dict(layers=80, hidden=8192, intermediate=28672, heads=64, kv_heads=8, head_dim=128,
                          vocab=128256),
}
# prune_levels alone: (sublayer, width, d_out, group, per_step). 4096/128 is Llama-3.1-8B's attention.
SWEEP = [("mlp", 1024, 288, 1, 16), ("mlp", 2048, 576, 1, 16), ("mlp", 4096, 1152, 1, 16),
         ("attn", 2048, 2048, 64, 1), ("attn", 4096, 4096, 128, 1)]
QUICK_SWEEP = [("mlp", 512, 160, 1, 16), ("attn", 512, 512, 64, 1)]

# GPU figures are extrapolations: work (FLOPs, bytes) divided by these assumed sustained rates for
# one H100/H200 SXM-class device. Peaks (NVIDIA datasheets): bf16 dense 989 TFLOP/s, fp32 67,
# fp64 tensor 67, HBM 3.35 (H100) / 4.8 (H200) TB/s. Sustained = half of peak for large GEMMs
# (what well-shaped transformer GEMMs reach), 70 % of the H100's HBM for streaming passes, and
# host→device copies of pageable tensors at 20 GB/s (PCIe 5 x16 peaks at 64).
GPU = dict(name="H100/H200 SXM class (assumed, not measured)", bf16_flops=0.5 * 989e12, fp32_flops=0.5 * 67e12,
           fp64_flops=0.5 * 67e12, hbm_bytes=0.7 * 3.35e12, h2d_bytes=20e9, launch_s=10e-6,
           host_threads_speedup=4.0)
# The host side of a GPU node (the supernet, dense_topk and module builds run there in this
# version): the paper preset's 16 threads, assumed 10x one thread (not measurable on 2 cores).
CPU_THREADS_SPEEDUP = 10.0


# ---- measurement helpers (run inside the worker processes) ------------------------------------


class Meter:
    """CPU and wall seconds of wrapped functions, summed per key, with per-call features."""

    def __init__(self):
        self.rows = defaultdict(lambda: defaultdict(float))
        self.info = {}

    def wrap(self, owner, name, key_of):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            cpu, wall = time.process_time(), time.perf_counter()
            out = original(*args, **kwargs)
            key, features, info = key_of(args, kwargs, out)
            row = self.rows[key]
            row["cpu"] += time.process_time() - cpu
            row["wall"] += time.perf_counter() - wall
            row["calls"] += 1
            for f, v in features.items():
                row[f] += float(v)
            if info is not None:
                self.info[key] = info
            return out

        setattr(owner, name, timed)

    def take(self) -> dict:
        rows = {"/".join(map(str, k)): dict(v, **({"info": self.info[k]} if k in self.info else {}))
                for k, v in self.rows.items()}
        self.rows, self.info = defaultdict(lambda: defaultdict(float)), {}
        return rows


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
    return out, {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall,
                 "peak_delta_bytes": peak - before, "peak_above_startup": peak > peak_before}


def tokens_of(x) -> int:
    return x.numel() // x.shape[-1]


def weight_numel(module) -> int:
    return sum(p.numel() for name, p in module.named_parameters() if p.dim() == 2)


# ---- workers ----------------------------------------------------------------------------------


def worker_setup(job: dict) -> dict:
    """The shape's model folder (1 decoder layer, random), its spec, tokens, the paper's levels,
    layer 0's calibration input, a factory supernet for the fitness: nothing here is timed."""
    import zarr
    from supernet_factory import build_supernet

    from tyr.calib.calibrate import embed
    from tyr.model.spec import spec_from_config
    from tyr.supernet.levels import write_levels
    from tyr.testing import tiny_hf_model

    d, s = Path(job["dir"]), SHAPES[job["shape"]]
    model = tiny_hf_model("llama", num_hidden_layers=1, hidden_size=s["hidden"], intermediate_size=s["intermediate"],
                          num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"], head_dim=s["head_dim"],
                          vocab_size=s["vocab"], max_position_embeddings=4096, tie_word_embeddings=True)
    model.save_pretrained(d / "model")
    spec_from_config(model.config).to_json(d / "model" / "spec.json")
    del model
    rng = np.random.default_rng(0)
    group = zarr.open_group(str(d / "tokens.zarr"), mode="w")
    for split, (n, seq) in (("prune", job["prune"]), ("fitness", job["fitness"])):
        arr = group.create_array(split, shape=(n, seq), dtype="int32", chunks=(1, seq))
        arr[:] = rng.integers(3, s["vocab"], size=(n, seq), dtype=np.int32)
    write_levels(d / "model" / "spec.json", d / "levels.json", target_sparsity=0.5, delta=0.125, n_levels=9,
                 iteration=1, mlp_group=16)
    embed(d / "model", d / "tokens.zarr", d / "acts0.zarr", split="prune")
    build_supernet(d / "model", d / "factory", attn_levels=9, mlp_levels=9, target_sparsity=0.5)
    return {}


def worker_supernet(job: dict) -> dict:
    """tyr.supernet.build.build_layer of layer 0 with the paper's options, its pieces timed."""
    from tyr.supernet import accumulate, local_prune
    from tyr.supernet import build as construct
    from tyr.supernet import format as supernet

    meter, d = Meter(), Path(job["dir"])
    meter.wrap(local_prune.Hessian, "add", lambda a, k, o: (("hessian", a[0].H.shape[0]), {"tokens": tokens_of(a[1])},
                                                             None))
    meter.wrap(local_prune, "prune_levels", lambda a, k, o: (
        ("path", a[0].shape[1]), {}, {"width": a[0].shape[1], "d_out": a[0].shape[0], "group": k.get("group", 1),
                                      "per_step": k.get("per_step", 1), "levels": [int(x) for x in a[2]]}))
    meter.wrap(local_prune, "recon_errors", lambda a, k, o: (("recon", a[0].shape[1]), {
        "flops": 2 * a[0].shape[1] ** 2 * a[0].shape[0] * len(a[1])}, None))  # H·D per level (+ ‖XW‖² once)
    meter.wrap(accumulate, "attention_input", lambda a, k, o: (("forward", "attention_input"), {
        "tokens": tokens_of(a[1]), "flops": tokens_of(a[1]) * _attention_flops(a[0].self_attn, a[1].shape[1])}, None))
    meter.wrap(accumulate, "mlp_input", lambda a, k, o: (("forward", "mlp_input"), {
        "tokens": tokens_of(a[1]), "flops": 2 * tokens_of(a[1]) * (a[0].mlp.gate_proj.weight.numel()
                                                                   + a[0].mlp.up_proj.weight.numel())}, None))
    meter.wrap(accumulate, "residual", lambda a, k, o: (("forward", "residual"), {
        "tokens": tokens_of(a[1]), "flops": 2 * tokens_of(a[1]) * a[2].numel()}, None))
    meter.wrap(supernet, "write_level", lambda a, k, o: (("write", a[3]), {"bytes": a[5].numel() * a[5].element_size()},
                                                         None))
    options = dict(damp=0.01, heads_per_step=1, channels_per_step=16, batch_size=8)
    manifest, total = staged(lambda: construct.build_layer(
        d / "model", d / "model" / "spec.json", d / "levels.json", d / "acts0.zarr", 0, d / "supernet" / "layer000",
        d / "acts1.zarr", iteration=1, **options))
    return {"total": total, "pieces": meter.take()}


def _attention_flops(attn, seq: int) -> int:
    """Per token: q/k/v projections and causal attention (QKᵀ and AV over seq/2 keys on average)."""
    proj = attn.q_proj.weight.numel() + attn.k_proj.weight.numel() + attn.v_proj.weight.numel()
    return 2 * proj + 2 * seq * attn.num_heads * attn.head_dim


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
    units = width // group
    levels, _ = sublayer_levels(units, 0.5, 0.125, 9, 1 if group > 1 else 16)
    _, total = staged(lambda: prune_levels(W, H, levels, group=group, per_step=per_step, damp_ratio=0.01))
    info = {"width": width, "d_out": d_out, "group": group, "per_step": per_step, "levels": levels}
    return {"total": total, "info": info}


def worker_topk(job: dict) -> dict:
    from tyr.search.fitness import dense_topk

    d = Path(job["dir"])
    _, total = staged(lambda: dense_topk(d / "model", d / "tokens.zarr", d / "topk.zarr", k=256, splits=("fitness",)))
    return {"total": total}


def worker_fitness(job: dict) -> dict:
    """Evaluator: a cold full evaluation (module builds) and a warm one (forwards, head)."""
    import inspect

    from tyr.core.io import read_json
    from tyr.search import fitness

    meter, d = Meter(), Path(job["dir"])
    meter.wrap(fitness.Evaluator, "_sublayer", _sublayer_key)
    meter.wrap(fitness, "head_kl_rows", lambda a, k, o: (("head",), {"tokens": a[0].shape[0],
                                                                     "flops": 2 * a[0].shape[0] * a[1].numel()}, None))
    meter.wrap(fitness.ModuleCache, "build", lambda a, k, o: (("build", a[2]), {
        "bytes": sum(p.numel() * p.element_size() for p in o.parameters())}, None))
    params = inspect.signature(fitness.Evaluator).parameters
    dtype = {"dtype": job["dtype"], "device": "cpu"} if "dtype" in params else {"head_dtype": job["dtype"]}
    levels = read_json(d / "factory" / "levels.json")["layers"]
    genome = tuple(layer[s]["centre"] for layer in levels for s in ("attn", "mlp"))  # every sublayer at ~50 %

    def run():
        ev = fitness.Evaluator(d / "factory" / "supernet" / "supernet.json", d / "model", d / "topk.zarr",
                               d / "tokens.zarr", batch_size=4, **dtype)
        ev.set_tokens(list(range(ev.n_seq)))
        ev.fitness(genome, incremental=False)
        cold = meter.take()
        ev.fitness(genome, incremental=False)
        return cold, meter.take()

    (cold, warm), total = staged(run)
    return {"total": total, "cold": cold, "warm": warm, "dtype_arguments": dtype}


def _sublayer_key(args, kwargs, out):
    _, i, module, h = args
    kind = "attn" if i % 2 == 0 else "mlp"
    if module is None:
        return ("sublayer", kind), {}, None
    flops = 2 * tokens_of(h) * weight_numel(module)
    if kind == "attn":
        flops += tokens_of(h) * 2 * h.shape[1] * module.num_heads * module.head_dim
    return ("sublayer", kind), {"tokens": tokens_of(h), "flops": flops}, None


WORKERS = {"setup": worker_setup, "supernet": worker_supernet, "path": worker_path, "topk": worker_topk,
           "fitness": worker_fitness}


def worker_main(kind: str, job_json: str) -> None:
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "tests"))  # the tests' random-model and supernet factories
    job = json.loads(job_json)
    if kind != "setup":  # import what the stage imports lazily, so its memory is its tensors, not libraries
        import zarr  # noqa: F401

        from tyr.model.adapter import load_config
        from tyr.supernet import build as construct  # noqa: F401

        if "dir" in job:
            load_config(Path(job["dir"]) / "model")
    out = WORKERS[kind](job)
    print("RESULT " + json.dumps(out))


# ---- driver -----------------------------------------------------------------------------------


def spawn(kind: str, job: dict) -> dict:
    """One measurement in a fresh process on one thread (so ru_maxrss is its own)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"),
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("TYR_THREADS", None)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    done = subprocess.run([sys.executable, __file__, "--worker", kind, json.dumps(job)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} {job} failed:\n{done.stderr[-4000:]}")
    line = next(l for l in reversed(done.stdout.splitlines()) if l.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    out.update(kind=kind, job=job, process_wall=time.perf_counter() - t0, load=[load0, os.getloadavg()[0]])
    print(f"  {kind:8s} {job.get('shape', job.get('width', ''))!s:6s} {job.get('dtype', '')!s:9s} "
          f"cpu {out.get('total', {}).get('cpu', 0):7.1f}s  process wall {out['process_wall']:6.1f}s  "
          f"load {out['load'][0]:.2f}->{out['load'][1]:.2f}", flush=True)
    return out


def measure(args) -> list:
    """Every measurement of the run, in order, each in its own process."""
    shapes = ["tiny"] if args.quick else args.shapes.split(",")
    seq = 256 if args.quick else 2048
    results = []
    with tempfile.TemporaryDirectory(prefix="tyr-scaling-") as tmp:
        for name in shapes:
            d = Path(tmp) / name
            fit_seq = seq // 2 if name == "1b" else seq  # the 1B LM head costs 0.5 GFLOP a token
            job = {"dir": str(d), "shape": name, "prune": [2, seq], "fitness": [1, fit_seq]}
            spawn("setup", job)
            if name != "1b" or args.full:
                results.append(spawn("supernet", job))
            results.append(spawn("topk", job))
            for dtype in ("float32", "bfloat16"):
                results.append(spawn("fitness", dict(job, dtype=dtype)))
        if args.sweep:
            for sub, width, d_out, group, per_step in (QUICK_SWEEP if args.quick else SWEEP):
                results.append(spawn("path", dict(sublayer=sub, width=width, d_out=d_out, group=group,
                                                  per_step=per_step)))
    return results


# ---- laws and fits ----------------------------------------------------------------------------


def l3_bytes() -> int:
    """This CPU's last-level cache: the n×n fp64 H⁻¹ of the pruning path leaves it at n ≈ √(L3/8)."""
    try:
        text = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
        return int(text[:-1]) * {"K": 1 << 10, "M": 1 << 20}[text[-1]]
    except (OSError, ValueError, KeyError):
        return 32 << 20


def path_features(width: int, d_out: int, group: int, per_step: int, levels, cache_bytes: int = 32 << 20) -> dict:
    """What prune_levels does for these levels, step by step as its loop runs: Σn² (the H⁻¹
    down-date and the copies that shrink it, n = channels alive), split where the n×n fp64 H⁻¹
    outgrows `cache_bytes` (streaming from memory costs more per element than from cache),
    Σn·d_out (the W update), and the start: Cholesky, inverse and H·W, w³ + 2w²·d_out."""
    alive, f = width // group, {"s2": 0.0, "s2_in": 0.0, "s2_out": 0.0, "sw": 0.0, "steps": 0}
    for target in sorted({int(k) for k in levels}, reverse=True):
        while alive > target:
            n = alive * group
            f["s2"] += n * n
            f["s2_in" if 8 * n * n <= cache_bytes else "s2_out"] += n * n
            f["sw"] += n * d_out
            f["steps"] += 1
            alive -= min(per_step, alive - target)
    f["init"] = float(width) ** 3 + 2.0 * width ** 2 * d_out
    return f


PATH_TERMS = ("s2_in", "s2_out", "sw", "init")


def fit_nonneg(X, y) -> np.ndarray:
    """Least squares of relative errors (each row scaled by 1/y, so small and large points weigh
    alike), constants kept ≥ 0 by dropping a negative one and refitting."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    active = list(range(X.shape[1]))
    while True:
        A = X[:, active] / y[:, None]
        coef, *_ = np.linalg.lstsq(A, np.ones(len(y)), rcond=None)
        if (coef >= 0).all() or len(active) == 1:
            out = np.zeros(X.shape[1])
            out[active] = np.clip(coef, 0, None)
            return out
        active.pop(int(np.argmin(coef)))


def ratio_fit(work, seconds) -> float:
    """One constant through the origin, seconds = a · work, by relative least squares."""
    return float(fit_nonneg(np.asarray(work, float)[:, None], seconds)[0])


def _points(results, kind):
    return [r for r in results if r["kind"] == kind]


def fit_all(results, cache_bytes: int) -> dict:
    """Every law's constant, and per point the predicted/measured ratio."""
    pieces = [(r["job"]["shape"], k.split("/"), v)
              for r in _points(results, "supernet") for k, v in r["pieces"].items()]

    def law(prefix, work_of, unit):
        rows = [(shape, key, v) for shape, key, v in pieces if key[0] == prefix]
        return _law([work_of(key, v) for _, key, v in rows], [v["cpu"] for *_, v in rows],
                    [f"{shape} {key[1]}" for shape, key, _ in rows], unit)

    laws = {"hessian": law("hessian", lambda key, v: 2 * v["tokens"] * int(key[1]) ** 2,
                           "s per FLOP (fp32 XᵀX per batch, summed in fp64)"),
            "supernet_forward": law("forward", lambda key, v: v["flops"], "s per FLOP (fp32 layer forwards)"),
            "recon": law("recon", lambda key, v: v["flops"], "s per FLOP (fp32 H·D per level)"),
            "write": law("write", lambda key, v: v["bytes"], "s per byte written (safetensors + sha256)"),
            "path": _path_law(results, cache_bytes)}
    laws.update(_fitness_laws(results))
    return laws


def holdout_check(results, shape: str, cache_bytes: int) -> dict:
    """The supernet layer of `shape` predicted piece by piece from laws fitted without it."""
    held = [r for r in _points(results, "supernet") if r["job"]["shape"] == shape]
    if not held:
        return {}
    laws = fit_all([r for r in results if r not in held], cache_bytes)
    if laws["path"]["constants"] is None or laws["hessian"]["constant"] is None:
        return {}  # nothing else measured to fit from
    c = dict(zip(PATH_TERMS, laws["path"]["constants"]))
    out = {}
    for key, v in held[0]["pieces"].items():
        kind, arg = key.split("/")
        if kind == "hessian":
            pred = laws["hessian"]["constant"] * 2 * v["tokens"] * int(arg) ** 2
        elif kind == "path":
            i = v["info"]
            f = path_features(i["width"], i["d_out"], i["group"], i["per_step"], i["levels"], cache_bytes)
            pred = sum(c[k] * f[k] for k in PATH_TERMS)
        else:
            law = {"forward": "supernet_forward", "recon": "recon", "write": "write"}[kind]
            pred = laws[law]["constant"] * v["bytes" if kind == "write" else "flops"]
        out[key] = {"predicted_s": pred, "measured_s": v["cpu"], "ratio": pred / v["cpu"] if v["cpu"] else None}
    total = held[0]["total"]["cpu"]
    out["total"] = {"predicted_s": sum(x["predicted_s"] for x in out.values()), "measured_s": total}
    out["total"]["ratio"] = out["total"]["predicted_s"] / total
    return out


def holdout_lines(check: dict, shape: str) -> list:
    if not check:
        return []
    lines = [f"Out of sample: the {shape} supernet layer from laws fitted without it (CPU s):", "",
             "| piece | predicted | measured | ratio |", "|---|---|---|---|"]
    for key, v in check.items():
        lines.append(f"| {key} | {v['predicted_s']:.2f} | {v['measured_s']:.2f} | {v['ratio']:.2f} |")
    return lines + [""]


def _law(work, seconds, labels, unit) -> dict:
    if not work:
        return {"unit": unit, "constant": None, "points": []}
    a = ratio_fit(work, seconds)
    points = [{"label": l, "work": w, "cpu_s": s, "ratio": a * w / s if s > 0 else None}
              for l, w, s in zip(labels, work, seconds)]
    return {"unit": unit, "constant": a, "points": points}


def _path_law(results, cache_bytes: int) -> dict:
    """c_in·Σn²(in cache) + c_out·Σn²(beyond) + c_w·Σn·d_out + c_init·(w³ + 2w²·d_out) over every
    prune_levels call measured; also the widest MLP point predicted by a fit without it."""
    rows = []
    for r in _points(results, "supernet"):
        for k, v in r["pieces"].items():
            if k.startswith("path/"):
                rows.append((f"{r['job']['shape']} {'attn' if v['info']['group'] > 1 else 'mlp'}", v["info"], v["cpu"]))
    for r in _points(results, "path"):
        rows.append((f"sweep {r['info']['width']}/{r['info']['group']}", r["info"], r["total"]["cpu"]))
    if not rows:
        return {"constants": None, "points": []}
    feats = [path_features(i["width"], i["d_out"], i["group"], i["per_step"], i["levels"], cache_bytes)
             for _, i, _ in rows]
    X = [[f[k] for k in PATH_TERMS] for f in feats]
    y = [s for *_, s in rows]
    coef = fit_nonneg(X, y)
    points = [{"label": l, "width": i["width"], "steps": f["steps"], "cpu_s": s, "ratio": float(np.dot(coef, x) / s)}
              for (l, i, s), f, x in zip(rows, feats, X)]
    out = {"unit": "s per element of Σn² in cache, beyond it, per Σn·d_out, per (w³ + 2w²·d_out)",
           "terms": PATH_TERMS, "constants": coef.tolist(), "cache_bytes": cache_bytes, "points": points}
    mlp = [j for j, (l, i, _) in enumerate(rows) if i["group"] == 1]
    if len(rows) > len(PATH_TERMS) and mlp:
        held = max(mlp, key=lambda j: rows[j][1]["width"])
        keep = [j for j in range(len(rows)) if j != held]
        c = fit_nonneg([X[j] for j in keep], [y[j] for j in keep])
        out["held_out"] = {"label": rows[held][0], "ratio": float(np.dot(c, X[held]) / y[held])}
    return out


def _fitness_laws(results) -> dict:
    """Sublayer forwards and the head (warm evaluation), module builds (cold), per dtype; dense_topk."""
    laws = {}
    for dtype in ("float32", "bfloat16"):
        fr = [r for r in _points(results, "fitness") if r["job"]["dtype"] == dtype]
        sub = [(f"{r['job']['shape']} {k[9:]}", v) for r in fr for k, v in r["warm"].items()
               if k.startswith("sublayer/") and "flops" in v]
        laws[f"fitness_sublayer_{dtype}"] = _law([v["flops"] for _, v in sub], [v["cpu"] for _, v in sub],
                                                 [s for s, _ in sub], "s per FLOP (pruned sublayer forward)")
        head = [(r["job"]["shape"], r["warm"]["head"]) for r in fr if "head" in r["warm"]]
        laws[f"fitness_head_{dtype}"] = _law([v["flops"] for _, v in head], [v["cpu"] for _, v in head],
                                             [s for s, _ in head], "s per FLOP of the LM head (+ softmax, KL)")
        build = [(r["job"]["shape"], v) for r in fr for k, v in r["cold"].items() if k.startswith("build/")]
        laws[f"module_build_{dtype}"] = _law([v["bytes"] for _, v in build], [v["cpu"] for _, v in build],
                                             [s for s, _ in build], "s per byte of module built from level files")
    tk = _points(results, "topk")
    laws["dense_topk"] = _law([_topk_flops(SHAPES[r["job"]["shape"]], *r["job"]["fitness"]) for r in tk],
                              [r["total"]["cpu"] for r in tk], [r["job"]["shape"] for r in tk],
                              "s per FLOP (1 dense layer + LM head + top-k, per token)")
    return laws


def _topk_flops(s: dict, n_seq: int, seq: int, layers: int = 1) -> float:
    return n_seq * seq * (layers * dense_layer_flops(s, seq) + 2 * s["hidden"] * s["vocab"])


# ---- the cost model: work per stage ------------------------------------------------------------


def dense_layer_flops(s: dict, seq: int, keep: float = 1.0, kv_keep: float = 1.0) -> float:
    """FLOPs per token of one decoder layer keeping `keep` of its heads and channels (KV heads:
    `kv_keep`): the projections and causal attention at the mean context seq/2 (`floors.py`)."""
    from floors import layer_flops

    cfg = {"hidden_size": s["hidden"], "head_dim": s["head_dim"], "num_attention_heads": s["heads"],
           "num_key_value_heads": s["kv_heads"]}
    return layer_flops(cfg, keep * s["heads"], keep * s["intermediate"], seq / 2, kv_heads=kv_keep * s["kv_heads"])


def preset() -> dict:
    """config/config.yaml with config/presets/paper.yaml merged over it, as Snakemake would."""
    from common import merged_config

    return merged_config(ROOT / "config" / "config.yaml", ROOT / "config" / "presets" / "paper.yaml")


def supernet_work(s: dict, cfg: dict, iteration: int, cache_bytes: int = 32 << 20) -> dict:
    """One supernet_layer job: FLOPs per piece, the path's features, bytes written."""
    from tyr.supernet.levels import sublayer_levels

    seq, T = cfg["data"]["seq_len"], cfg["data"]["prune_sequences"] * cfg["data"]["seq_len"]
    sn = cfg["supernet"]
    d, m, w_attn = s["hidden"], s["intermediate"], s["heads"] * s["head_dim"]
    delta = sn["delta"] / 2 ** (iteration - 1)
    kept_attn, _ = sublayer_levels(s["heads"], 0.5, delta, sn["levels"], 1)
    kept_mlp, _ = sublayer_levels(m, 0.5, delta, sn["levels"], sn["channels_per_step"])
    # _Calibration caches 1 GiB of a layer's intermediates; beyond it, it recomputes: the attention
    # input 4x, its residual 3x, the MLP input 2x, the MLP residual once per batch.
    cached = T * (2 * d + m) * 4 <= GiB
    mult = (1, 1, 1, 1) if cached else (4, 3, 2, 1)
    attn_in = 2 * d * (w_attn + 2 * s["kv_heads"] * s["head_dim"]) + 2 * seq * w_attn
    fwd = T * (mult[0] * attn_in + mult[1] * 2 * w_attn * d + mult[2] * 4 * d * m + mult[3] * 2 * m * d)
    path = [path_features(w_attn, d, s["head_dim"], sn["heads_per_step"], kept_attn, cache_bytes),
            path_features(m, d, 1, sn["channels_per_step"], kept_mlp, cache_bytes)]
    return {"forward_flops": fwd, "hessian_flops": 2 * T * (w_attn ** 2 + m ** 2),
            "recon_flops": 2 * d * (len(kept_attn) * w_attn ** 2 + len(kept_mlp) * m ** 2),
            "write_bytes": 4 * d * (sum(kept_attn) * s["head_dim"] + sum(kept_mlp)), "path": path,
            "levels": {"attn": kept_attn, "mlp": kept_mlp}}


def recompute_fractions(s: dict, layers: int, cfg: dict, rng_seed: int = 0) -> list:
    """Per selection stage, the mean share of the 2L sublayers a child reruns: from the parent
    cache's boundary before its first change (tyr.search.fitness.ParentCache with the search's 2 GiB),
    changes drawn by tyr.search.evolve.mutate around an all-centre parent."""
    from tyr.search.evolve import mutate
    from tyr.search.fitness import ParentCache

    class Space:  # the part of a SearchSpace that mutate reads: 9 levels, attention/MLP groups
        size = 2 * layers
        kept = [tuple(range(9))] * (2 * layers)
        groups = {"attn": tuple(range(0, 2 * layers, 2)), "mlp": tuple(range(1, 2 * layers, 2))}

        def group_of(self, i):
            return "attn" if i % 2 == 0 else "mlp"

    rng, parent = np.random.default_rng(rng_seed), (4,) * (2 * layers)
    out = []
    for tokens, _ in cfg["search"]["stages"]:
        cache = ParentCache()
        cache.plan(1, 2 * layers, tokens * s["hidden"] * 4, 2 * GiB)
        cache.genome = parent
        children = (mutate(parent, Space(), rng, cfg["search"]["max_swaps"]) for _ in range(400))
        starts = [cache.start(c) for c in children]
        out.append(float(np.mean([(2 * layers - (st or 0)) / (2 * layers) for st in starts if st is not None])))
    return out


def search_work(s: dict, layers: int, cfg: dict, processes: int) -> dict:
    """One generation's work on the busiest process: FLOPs of sublayer forwards and of the head,
    kernel launches (GPU), and bytes of sublayer modules rebuilt: all that a child reruns with the
    search's 1 GiB module cache (far less than one pruned 8B model: an LRU over a longer cycle
    misses every time), or only its changed sublayers with a cache that holds the parent's."""
    seq, sc = cfg["data"]["seq_len"], cfg["search"]
    frac = recompute_fractions(s, layers, cfg)
    per_token_layers = layers * dense_layer_flops(s, seq, keep=0.5)
    head = 2 * s["hidden"] * s["vocab"]
    module_bytes = 2 * 0.5 * layer_params(s) * layers  # pruned model in the bf16 compute dtype
    changed = 2 * sum(n * p for n, p in zip(range(1, 5), (7 / 16, 5 / 16, 3 / 16, 1 / 16)))  # 2·E[min(U,U)] swaps
    w = {"layer_flops": 0.0, "head_flops": 0.0, "rebuilt_bytes": 0.0, "rebuilt_bytes_parent_cache": 0.0,
         "launches": 0.0}
    candidates = sc["offspring"]
    for s_i, ((tokens, keep), f) in enumerate(zip(sc["stages"], frac)):
        mine = math.ceil(candidates / processes)
        last_fixed = s_i == len(sc["stages"]) - 1 and sc.get("fixed_last_stage")
        runs = (f if last_fixed else 1.0) + mine * f  # the parent's forward (its cache kept when fixed) + children
        w["layer_flops"] += tokens * per_token_layers * runs
        w["head_flops"] += tokens * head * (1 + mine)
        w["rebuilt_bytes"] += module_bytes * runs if module_bytes > GiB else 0.0
        # worst case: no child's new level was built before (a search near its parent revisits them)
        w["rebuilt_bytes_parent_cache"] += module_bytes * mine * changed / (2 * layers)
        batches = math.ceil(tokens / (cfg["search"].get("batch_size", 4) * seq))
        # ~30 kernels per sublayer forward and batch, ~10 per 128-row chunk of the head and KL
        w["launches"] += batches * 2 * layers * 30 * runs + (1 + mine) * tokens / 128 * 10
        candidates = keep
    track = sc.get("track_sequences", 0) * seq
    w["layer_flops"] += track * per_token_layers
    w["head_flops"] += track * head
    w["launches"] += math.ceil(track / (4 * seq)) * 2 * layers * 30 + track / 128 * 10
    w.update(recompute=frac, head_elementwise_bytes=(w["head_flops"] / head) * 24 * s["vocab"])
    return w


def layer_params(s: dict) -> int:
    d, hd = s["hidden"], s["head_dim"]
    return d * hd * (2 * s["heads"] + 2 * s["kv_heads"]) + 3 * d * s["intermediate"]


def other_stage_flops(s: dict, layers: int, cfg: dict) -> dict:
    """dense_topk (fitness + selection splits, dense), select_tyr (start + every iteration's best
    on the selection split), attention_share (even split + shares, on share text): full forwards."""
    seq, data = cfg["data"]["seq_len"], cfg["data"]
    head = 2 * s["hidden"] * s["vocab"]
    dense = layers * dense_layer_flops(s, seq) + head
    pruned = layers * dense_layer_flops(s, seq, keep=0.5) + head
    sel = data.get("selection_sequences", 32) * seq
    out = {"dense_topk": (data["fitness_sequences"] * seq + sel) * dense,
           "select_tyr": (cfg["supernet"]["iterations"] + 1) * sel * pruned}
    if cfg["search"].get("attention_kept") == "auto":
        shares = 1 + len(cfg["search"].get("attention_shares", []))
        out["attention_share"] = shares * cfg["search"]["share_sequences"] * seq * pruned
    return out


# ---- the cost model: seconds and bytes --------------------------------------------------------


def _c(laws, name) -> float:
    return laws[name]["constant"] or 0.0


def supernet_seconds(work: dict, laws: dict, where: str) -> dict:
    """One supernet_layer job's seconds per piece: `cpu1` (this CPU, one thread: the fitted
    constants), `host16` (the paper preset's 16 threads, assumed CPU_THREADS_SPEEDUP x), `gpu`
    (the same work on one GPU at the assumed rates; this version runs it on the CPU)."""
    if where in ("cpu1", "host16"):
        c = dict(zip(PATH_TERMS, laws["path"]["constants"]))
        out = {"forward": _c(laws, "supernet_forward") * work["forward_flops"],
               "hessian": _c(laws, "hessian") * work["hessian_flops"],
               "path": sum(c[k] * p[k] for p in work["path"] for k in PATH_TERMS),
               "recon": _c(laws, "recon") * work["recon_flops"],
               "write": _c(laws, "write") * work["write_bytes"]}
        return {k: v / (CPU_THREADS_SPEEDUP if where == "host16" else 1.0) for k, v in out.items()}
    path = 0.0
    for p, k in zip(work["path"], work["path_step_channels"]):
        # per step: ~9 passes over the n×n fp64 H⁻¹ (down-date, subtract, row and column copies),
        # 2·k·n² + 2·k·n·d_out fp64 FLOPs, ~20 kernel launches; plus the start's factorisations.
        path += 72 * p["s2"] / GPU["hbm_bytes"] + (2 * k * (p["s2"] + p["sw"]) + p["init"]) / GPU["fp64_flops"]
        path += 20 * p["steps"] * GPU["launch_s"]
    return {"forward": work["forward_flops"] / GPU["fp32_flops"], "hessian": work["hessian_flops"] / GPU["fp32_flops"],
            "path": path, "recon": work["recon_flops"] / GPU["fp32_flops"],
            "write": _c(laws, "write") * work["write_bytes"]}


def search_seconds(work: dict, laws: dict, where: str, rebuilt: str = "rebuilt_bytes") -> float:
    """One generation on the busiest process, the fitness in bfloat16 (search.dtype auto on
    hardware with native bf16: this CPU and any GPU). `rebuilt`: which module-cache case."""
    if where in ("cpu1", "host16"):
        s = (_c(laws, "fitness_sublayer_bfloat16") * work["layer_flops"] + _c(laws, "fitness_head_bfloat16")
             * work["head_flops"] + _c(laws, "module_build_bfloat16") * work[rebuilt])
        return s / (CPU_THREADS_SPEEDUP if where == "host16" else 1.0)
    # GPU: GEMMs at the bf16 rate, the softmax/KL passes over [tokens, vocab] at HBM speed, kernel
    # launches, and modules rebuilt on the host (measured per byte, GPU["host_threads_speedup"]
    # threads) and copied over.
    rebuild = work[rebuilt] * (_c(laws, "module_build_bfloat16") / GPU["host_threads_speedup"] + 1 / GPU["h2d_bytes"])
    return ((work["layer_flops"] + work["head_flops"]) / GPU["bf16_flops"]
            + work["head_elementwise_bytes"] / GPU["hbm_bytes"] + work["launches"] * GPU["launch_s"] + rebuild)


def forward_seconds(flops: float, laws: dict, where: str, head_share: float, dtype: str = "bfloat16") -> float:
    """A stage of full forwards (dense_topk in the model's float32; select_tyr and attention_share
    through the Evaluator, in bf16) at the fitness rates of that dtype."""
    if where == "gpu":
        return flops / GPU["bf16_flops" if dtype == "bfloat16" else "fp32_flops"]
    a = (1 - head_share) * _c(laws, f"fitness_sublayer_{dtype}") + head_share * _c(laws, f"fitness_head_{dtype}")
    return flops * a / (CPU_THREADS_SPEEDUP if where == "host16" else 1.0)


def predict(model: str, laws: dict, cfg: dict) -> dict:
    """Seconds per stage of one target sparsity. Where: `cpu1` one thread of this CPU (N search
    processes of one thread each); `gpu_node`, a GPU node as this version runs it: supernet and
    dense_topk on 16 host threads, the search (and select_tyr, attention_share) on N GPUs, with
    the 1 GiB module cache (`gpu_node_parent_cache`: one holding the parent's modules);
    `gpu_ported`: the supernet and dense_topk on the GPU too (not implemented)."""
    s, layers, sc = TARGETS[model], TARGETS[model]["layers"], cfg["search"]
    iters = cfg["supernet"]["iterations"]
    gens = sum(sc["generations"][min(i, len(sc["generations"])) - 1] if isinstance(sc["generations"], list)
               else sc["generations"] for i in range(1, iters + 1))
    sn = [supernet_work(s, cfg, i, laws["path"]["cache_bytes"]) for i in range(1, iters + 1)]
    for w in sn:
        w["path_step_channels"] = [cfg["supernet"]["heads_per_step"] * s["head_dim"],
                                   cfg["supernet"]["channels_per_step"]]
    supernet = {w: layers * sum(sum(supernet_seconds(x, laws, w).values()) for x in sn)
                for w in ("cpu1", "host16", "gpu")}
    other = other_stage_flops(s, layers, cfg)
    head_share = 2 * s["hidden"] * s["vocab"] / (layers * dense_layer_flops(s, cfg["data"]["seq_len"])
                                                 + 2 * s["hidden"] * s["vocab"])
    fwd = lambda stage, where: forward_seconds(other[stage], laws, where, head_share,
                                               "float32" if stage == "dense_topk" else "bfloat16")
    out = {"per_layer_iter1": {w: supernet_seconds(sn[0], laws, w) for w in ("cpu1", "host16", "gpu")},
           "supernet_total": supernet, "generations": gens, "other_flops": other,
           "other_stages": {w: {k: fwd(k, w) for k in other} for w in ("cpu1", "host16", "gpu")},
           "per_generation": {}, "totals": {}}
    rest_gpu = sum(fwd(k, "gpu") for k in other if k != "dense_topk")
    for n in (1, 8):
        work = search_work(s, layers, cfg, n)
        gen = {"cpu1": search_seconds(work, laws, "cpu1"), "gpu_node": search_seconds(work, laws, "gpu"),
               "gpu_node_parent_cache": search_seconds(work, laws, "gpu", "rebuilt_bytes_parent_cache")}
        gen["gpu_ported"] = gen["gpu_node_parent_cache"]
        out["per_generation"].update({f"{k}_x{n}": v for k, v in gen.items()})
        out["totals"].update({
            f"cpu1_x{n}": supernet["cpu1"] + sum(fwd(k, "cpu1") for k in other) + gens * gen["cpu1"],
            f"gpu_node_x{n}": supernet["host16"] + fwd("dense_topk", "host16") + rest_gpu + gens * gen["gpu_node"],
            f"gpu_node_parent_cache_x{n}": supernet["host16"] + fwd("dense_topk", "host16") + rest_gpu
            + gens * gen["gpu_node_parent_cache"],
            f"gpu_ported_x{n}": supernet["gpu"] + fwd("dense_topk", "gpu") + rest_gpu + gens * gen["gpu_ported"]})
        out["recompute"], out[f"search_work_x{n}"] = work["recompute"], work
    return out


def memory(model: str, cfg: dict) -> dict:
    """Bytes, from the tensors each stage holds (docs/cost-model.md explains every term)."""
    s, layers = TARGETS[model], TARGETS[model]["layers"]
    d, m, V, seq = s["hidden"], s["intermediate"], s["vocab"], cfg["data"]["seq_len"]
    out = supernet_memory(s, cfg["data"]["prune_sequences"] * seq)
    total_params = layers * layer_params(s) + 2 * V * d  # untied embedding and head
    levels = supernet_work(s, cfg, 1)["write_bytes"]
    tokens = [t for t, _ in cfg["search"]["stages"]]
    # parent caches: the fixed last stage's, kept, and the current stage's; ParentCache.plan keeps as
    # many boundaries as fit in 2 GiB, but always one
    boundary = lambda t: t * d * 4 * max(1, min(2 * layers, 2 * GiB // (t * d * 4)))
    caches = boundary(tokens[-1]) + max(map(boundary, tokens[:-1] or [0]))
    gpu = (V * d * 4 + V * d * 2 + 0.5 * layer_params(s) * layers * 2 + caches
           + max(tokens) * cfg["search"]["topk"] * 12
           + 4 * seq * (m // 2) * 2 * 3 + 128 * V * 4 * 3)
    sel = cfg["data"].get("selection_sequences", 32)
    out.update({
        "search_host_dense_fp32": 4 * total_params,
        "search_host_dense_fp32_x8": 8 * 4 * total_params,  # every process loads the dense model
        "search_gpu_per_process": gpu,
        "supernet_disk_per_iteration": layers * levels,
        "supernet_disk_all_iterations": cfg["supernet"]["iterations"] * layers * levels,
        "topk_store": (cfg["data"]["fitness_sequences"] + sel) * seq * (cfg["search"]["topk"] * 8 + 4),
        "activation_store_per_layer": cfg["data"]["prune_sequences"] * seq * d * 4,
        "model_fp32": 4 * total_params,
    })
    return out


def supernet_memory(s: dict, tokens: int) -> dict:
    """One supernet_layer job: the MLP's m×m fp64 matrices at the start of its path (H, damped H,
    H⁻¹ and two transients of its down-date), its fp64 m×d copies (W, G, their clones), the dense
    layer, and the calibration cache (≤ 1 GiB)."""
    d, m, w = s["hidden"], s["intermediate"], s["heads"] * s["head_dim"]
    hessians = 8 * 5 * m * m
    weights = 8 * 4 * m * d + 4 * layer_params(s)
    cache = min(GiB, 4 * tokens * (w + 2 * d + m))
    return {"supernet_job_peak": hessians + weights + cache, "supernet_hessians": hessians,
            "supernet_hessian_one": 8 * m * m}


# ---- report -----------------------------------------------------------------------------------


def fmt_s(x: float) -> str:
    if x is None:
        return "–"
    for unit, div in (("d", 86400), ("h", 3600), ("min", 60)):
        if x >= 2 * div:
            return f"{x / div:.1f} {unit}"
    return f"{x:.3g} s"


def fmt_b(x: float) -> str:
    for unit, div in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if x >= div:
            return f"{x / div:.3g} {unit}"
    return f"{x:.3g} B"


def measurement_lines(results) -> list:
    lines = ["| measurement | shape | tokens | CPU s | process wall s | peak − start RSS | load 1-min (start→end) |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        j = r["job"]
        what = r["kind"] + (f" {j['dtype']}" if "dtype" in j else "")
        shape = j.get("shape") or f"{j['sublayer']} w={j['width']} d_out={j['d_out']}"
        toks = {"supernet": "prune", "topk": "fitness", "fitness": "fitness"}.get(r["kind"])
        ntok = "–" if toks is None else "×".join(map(str, j[toks]))
        t = r["total"]
        lines.append(f"| {what} | {shape} | {ntok} | {t['cpu']:.2f} | {r['process_wall']:.1f} | "
                     f"{fmt_b(t['peak_delta_bytes'])}{'' if t['peak_above_startup'] else ' (≤ start-up peak)'} | "
                     f"{r['load'][0]:.2f}→{r['load'][1]:.2f} |")
    return lines


def fitness_lines(results) -> list:
    """Per token, the warm fitness pieces as measured: one decoder layer at ~50 % (attention + MLP
    branch) and the LM head with the coarse KL; and a full dense_topk per token."""
    lines = ["| shape | dtype | tokens | layer at 50 % µs/token | LM head + KL µs/token | module build MB/s |",
             "|---|---|---|---|---|---|"]
    for r in _points(results, "fitness"):
        w, c = r["warm"], r["cold"]
        subs = [v for k, v in w.items() if k.startswith("sublayer/")]
        toks = w["head"]["tokens"]
        built = [v for k, v in c.items() if k.startswith("build/")]
        rate = sum(v["bytes"] for v in built) / max(sum(v["cpu"] for v in built), 1e-9) / 1e6
        lines.append(f"| {r['job']['shape']} | {r['job']['dtype']} | {toks:.0f} | "
                     f"{1e6 * sum(v['cpu'] for v in subs) / toks:.1f} | {1e6 * w['head']['cpu'] / toks:.1f} | "
                     f"{rate:.0f} |")
    return lines


def law_lines(laws) -> list:
    lines = ["| law | constant | unit | predicted/measured per point |", "|---|---|---|---|"]
    for name, law in laws.items():
        if name in ("path", "holdout"):
            continue
        pts = ", ".join(f"{p['label']} {p['ratio']:.2f}" for p in law["points"] if p["ratio"] is not None)
        const = "–" if law["constant"] is None else f"{law['constant']:.3e}"
        eff = "" if not law["constant"] or "FLOP" not in law["unit"] else f" ({1e-9 / law['constant']:.1f} GFLOP/s)"
        lines.append(f"| {name} | {const}{eff} | {law['unit']} | {pts} |")
    p = laws["path"]
    if p.get("constants"):
        c = ", ".join(f"{x:.3e}" for x in p["constants"])
        pts = ", ".join(f"{q['label']} {q['ratio']:.2f}" for q in p["points"])
        lines.append(f"| path | {c} | {p['unit']} | {pts} |")
        if "held_out" in p:
            lines.append(f"| path, held out | – | fit without {p['held_out']['label']} | "
                         f"{p['held_out']['label']} {p['held_out']['ratio']:.2f} |")
    return lines


PREDICTION_ROWS = [
    ("supernet layer, iteration 1, 1 CPU thread", lambda p: fmt_s(sum(p["per_layer_iter1"]["cpu1"].values()))),
    ("  of which path / Hessian / forwards", lambda p: " / ".join(
        fmt_s(p["per_layer_iter1"]["cpu1"][k]) for k in ("path", "hessian", "forward"))),
    ("supernet layer, 16 host threads (assumed 10x)", lambda p: fmt_s(sum(p["per_layer_iter1"]["host16"].values()))),
    ("supernet layer, if ported to 1 GPU", lambda p: fmt_s(sum(p["per_layer_iter1"]["gpu"].values()))),
    ("supernet, all layers × iterations, 16 host threads", lambda p: fmt_s(p["supernet_total"]["host16"])),
    ("search generation, 1 CPU thread", lambda p: fmt_s(p["per_generation"]["cpu1_x1"])),
    ("search generation, 1 GPU (1 GiB module cache)", lambda p: fmt_s(p["per_generation"]["gpu_node_x1"])),
    ("search generation, 8 GPUs (1 GiB module cache)", lambda p: fmt_s(p["per_generation"]["gpu_node_x8"])),
    ("search generation, 1 GPU (parent's modules cached)",
     lambda p: fmt_s(p["per_generation"]["gpu_node_parent_cache_x1"])),
    ("search generation, 8 GPUs (parent's modules cached)",
     lambda p: fmt_s(p["per_generation"]["gpu_node_parent_cache_x8"])),
    ("total, 1 CPU thread", lambda p: fmt_s(p["totals"]["cpu1_x1"])),
    ("total, GPU node as coded, 1 GPU", lambda p: fmt_s(p["totals"]["gpu_node_x1"])),
    ("total, GPU node as coded, 8 GPUs", lambda p: fmt_s(p["totals"]["gpu_node_x8"])),
    ("total, supernet on GPU + parent cache, 1 GPU", lambda p: fmt_s(p["totals"]["gpu_ported_x1"])),
    ("total, supernet on GPU + parent cache, 8 GPUs", lambda p: fmt_s(p["totals"]["gpu_ported_x8"])),
]
MEMORY_ROWS = ("supernet_job_peak", "supernet_hessian_one", "search_host_dense_fp32", "search_host_dense_fp32_x8",
               "search_gpu_per_process",
               "supernet_disk_per_iteration", "supernet_disk_all_iterations", "topk_store",
               "activation_store_per_layer")


def prediction_lines(preds: dict, mems: dict) -> list:
    lines = ["| | " + " | ".join(preds) + " |", "|---|" + "---|" * len(preds)]
    for label, f in PREDICTION_ROWS:
        lines.append(f"| {label} | " + " | ".join(f(p) for p in preds.values()) + " |")
    for key in MEMORY_ROWS:
        lines.append(f"| {key} | " + " | ".join(fmt_b(mems[m][key]) for m in preds) + " |")
    return lines


def supernet_memory_check(results) -> list:
    """Measured peaks against the formulas: whole supernet jobs, and prune_levels alone, whose
    8·(5w² + 4w·d_out) is what dominates the 8B and 70B jobs."""
    lines = []
    for r in _points(results, "supernet"):
        j = r["job"]
        pred = supernet_memory(SHAPES[j["shape"]], j["prune"][0] * j["prune"][1])["supernet_job_peak"]
        lines.append(f"- supernet job, {j['shape']}: measured {fmt_b(r['total']['peak_delta_bytes'])}, "
                     f"formula {fmt_b(pred)} (formula/measured {pred / r['total']['peak_delta_bytes']:.2f})")
    for r in _points(results, "path"):
        i = r["info"]
        pred = 8 * (5 * i["width"] ** 2 + 4 * i["width"] * i["d_out"])
        lines.append(f"- prune_levels, w={i['width']} d_out={i['d_out']}: measured "
                     f"{fmt_b(r['total']['peak_delta_bytes'])}, formula {fmt_b(pred)} "
                     f"(formula/measured {pred / r['total']['peak_delta_bytes']:.2f})")
    return lines


def result_stem(tag: str) -> Path:
    date, host = dt.datetime.now().strftime("%Y-%m-%d"), platform.node() or "host"
    return ROOT / "bench" / "results" / f"{date}-{host}-scaling{'-' + tag if tag else ''}"


def environment(quick: bool, loads, cfg: dict) -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"command": " ".join(["OMP_NUM_THREADS=1", "nice -n 19", ".venv/bin/python", *sys.argv]), "quick": quick,
            "date": dt.datetime.now().isoformat(timespec="seconds"), "host": platform.node(), "cpu": cpu,
            "cores": os.cpu_count(), "torch": torch.__version__, "loadavg_start": loads[0], "loadavg_end": loads[1],
            "layers_per_model": 1, "cpu_threads_speedup_assumed": CPU_THREADS_SPEEDUP, "gpu_assumed": GPU,
            "preset": {k: cfg[k] for k in ("data", "supernet", "search")}}


def write_report(stem: Path, env: dict, results, laws, preds, mems) -> None:
    stem.with_suffix(".json").write_text(json.dumps({"environment": env, "measurements": results, "laws": laws,
                                                     "predictions": preds, "memory": mems}, indent=1, default=str))
    loads = (env["loadavg_start"], env["loadavg_end"])
    commands = [f"`{c}`" for c in env.get("sources", [env["command"]])]
    lines = [f"# Cost scaling on this CPU ({'quick smoke run' if env['quick'] else 'full run'})", "",
             "Measured by " + " and ".join(commands)
             + (f"; fitted by `{env['refit_command']}`" if "refit_command" in env else "") + ".", "",
             f"{env['cpu']}, {env['cores']} cores, torch {env['torch']}; every measurement in a fresh process on "
             f"one thread. Load average (1, 5, 15 min) at the start {loads[0]}, at the end {loads[1]}: with both "
             "cores busy the wall clock inflates, CPU seconds much less. Models have ONE decoder layer "
             "(per-layer costs are linear in depth), random weights (tests/tiny_models.py), tied embeddings.", "",
             "## Measurements", "", *measurement_lines(results), "",
             "Search fitness per token (warm module cache; CPU, one thread):", "", *fitness_lines(results), "",
             "## Fitted laws (CPU seconds, one thread)", "", *law_lines(laws), "",
             "Supernet job memory, measured (ru_maxrss over the start) vs the formula:", "",
             *holdout_lines(laws["holdout"]["pieces"], laws["holdout"]["shape"]),
             *supernet_memory_check(results), "",
             "## Paper preset predicted (one target sparsity; GPU columns are extrapolations, not measurements)", "",
             "Recompute share per selection stage (8B): "
             + ", ".join(f"{x:.2f}" for x in preds["Llama-3.1-8B"]["recompute"]) + ".",
             "", *prediction_lines(preds, mems), ""]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one tiny shape and two path points: a < 1 min smoke run")
    ap.add_argument("--full", action="store_true", help="also the 1B shape's supernet layer (~9 CPU-min)")
    ap.add_argument("--shapes", default="135m,360m,1b")
    ap.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip prune_levels at wider widths")
    ap.add_argument("--tag", default="", help="suffix of the result files' names (default: none; quick: quick)")
    ap.add_argument("--refit", metavar="JSON", nargs="+",
                    help="fit and predict again from the measurements of these result files (written as --tag)")
    ap.add_argument("--holdout", metavar="SHAPE", default="1b",
                    help="also predict this shape's supernet layer from laws fitted without it (default 1b)")
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "JOB"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(*args.worker)
    sys.path.insert(0, str(ROOT / "src"))
    cfg = preset()
    if args.refit:
        olds = [json.loads(Path(f).read_text()) for f in args.refit]
        results = [r for old in olds for r in old["measurements"]]
        env = dict(olds[0]["environment"], refit_command=" ".join([".venv/bin/python", *sys.argv]))
        env["sources"] = [o["environment"]["command"] for o in olds]
        env["loadavg_end"] = olds[-1]["environment"]["loadavg_end"]
        stem = result_stem(args.tag) if args.tag else Path(args.refit[0]).with_suffix("")
    else:
        loads = [os.getloadavg()]
        results = measure(args)
        loads.append(os.getloadavg())
        env, stem = environment(args.quick, loads, cfg), result_stem(args.tag or ("quick" if args.quick else ""))
        stem.with_suffix(".json").write_text(json.dumps({"environment": env, "measurements": results}, indent=1))
    laws = fit_all(results, env.setdefault("l3_bytes", l3_bytes()))
    laws["holdout"] = {"shape": args.holdout, "pieces": holdout_check(results, args.holdout, env["l3_bytes"])}
    preds = {m: predict(m, laws, cfg) for m in TARGETS}
    mems = {m: memory(m, cfg) for m in TARGETS}
    write_report(stem, env, results, laws, preds, mems)


if __name__ == "__main__":
    main()

"""One `supernet_layer` job of a full-size layer (issue 24 item 2, "memory bounded by one layer"):
wall time, peak RSS and their split by phase, at a stated fraction of the paper preset's tokens.

    OMP_NUM_THREADS=1 nice -n 19 python bench/layer_scale.py [--shape Llama-3.1-8B] [--tokens 8x2048,2x2048]
    python bench/layer_scale.py --smoke

For each token count (n_seq × seq_len) it builds, in a temporary folder:
  model/        config.json and spec.json of the whole model (`--shape`: L layers, its vocabulary,
                untied) but a model.safetensors holding ONLY layer 0's nine tensors, random
                (tyr.testing.tiny_hf_model's initialisation): build_layer loads its layer by prefix
                (tyr.model.adapter.load_state) and nothing else, so the job reads what it would read
                from the full folder;
  levels.json   what the workflow's `levels` rule writes for iteration 1 at 50 %
                (tyr.supernet.levels.write_levels with the preset's levels, delta, channels_per_step);
  acts0.zarr    the layer's input activations, float32 [n_seq, seq_len, d], unit normal (random
                stand-ins for layer 0's input: no cost depends on their values);
then runs `tyr.supernet.build.build_layer` exactly as `tyr.workflow.steps.supernet_layer` calls it
(the preset's `supernet_layer_options`) in a fresh process on `--threads` threads. The process
reports its phases (load, statistics, pruning path, reconstruction errors, level writes,
propagation: lib.meter spans of the product's own functions) with each phase's peak resident set
(VmHWM, reset per phase through /proc/self/clear_refs, the running maximum kept), and the parent
its wall time, user/system seconds and minor faults (os.wait4). The memory model of
costmodel.model.supernet_memory is checked against the measured peaks, then predicts the
paper's token count and the 70B shape. Writes bench/results/<date>-<host>-layer-scale.{md,json}.
--smoke: the tiny shape, 2 × 64 and 1 × 64 tokens, in seconds, into a temp folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from costmodel import model
from costmodel.shapes import SHAPES, TARGETS, hf_kwargs
from lib import args as cli
from lib import results
from lib.env import ROOT, child_env, setup
from lib.meter import Meter

SCRIPT = ROOT / "bench" / "layer_scale.py"
ALL_SHAPES = {**TARGETS, **{k: dict(v, layers=1) for k, v in SHAPES.items()}}
LAYER0 = "model.layers.0."


def parse(argv):
    ap = cli.parser(__doc__)
    ap.add_argument("--shape", default="Llama-3.1-8B", choices=sorted(ALL_SHAPES))
    ap.add_argument("--tokens", default="8x2048,2x2048", help="n_seq x seq_len per job, comma-separated")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the job (the cost model's: 1)")
    ap.add_argument("--tag", default="", help="suffix of the result files' names after layer-scale")
    ap.add_argument("--worker", help=_suppress())
    return ap.parse_args(argv)


def _suppress():
    import argparse

    return argparse.SUPPRESS


# ---- the job's inputs -------------------------------------------------------------------------


def build_model(d: Path, shape: dict) -> None:
    """model/: the whole model's config and spec, layer 0's tensors alone (random)."""
    from safetensors.torch import save_file

    from tyr.model.families import spec_from_config
    from tyr.testing import tiny_hf_model

    hf = tiny_hf_model(  # vocab 8: no embedding is read, a small one keeps the set-up light
        "llama", **hf_kwargs(shape, num_hidden_layers=1, vocab_size=8, max_position_embeddings=8192, rope_theta=5e5)
    )
    state = {k: v.contiguous() for k, v in hf.state_dict().items() if k.startswith(LAYER0)}
    config = hf.config
    del hf
    config.num_hidden_layers, config.vocab_size = shape["layers"], shape["vocab"]
    config.tie_word_embeddings = False
    (d / "model").mkdir(parents=True)
    config.save_pretrained(d / "model")
    save_file(state, str(d / "model" / "model.safetensors"), metadata={"format": "pt"})
    spec_from_config(config).to_json(d / "model" / "spec.json")


def write_inputs(d: Path, cfg: dict, n_seq: int, seq: int, hidden: int) -> None:
    """levels.json as the `levels` rule writes it (iteration 1, 50 %) and the layer's input."""
    import numpy as np
    import torch

    from tyr.calib import stores
    from tyr.supernet.levels import write_levels

    sn = cfg["supernet"]
    write_levels(
        d / "model" / "spec.json",
        d / "levels.json",
        target_sparsity=0.5,
        delta=sn["delta"],
        n_levels=sn["levels"],
        iteration=1,
        mlp_group=sn["channels_per_step"],
    )
    rng = np.random.default_rng(0)
    chunks = (
        (i, torch.from_numpy(rng.standard_normal((min(stores.CHUNK_SEQS, n_seq - i), seq, hidden), dtype=np.float32)))
        for i in range(0, n_seq, stores.CHUNK_SEQS)
    )
    stores.write_hidden(d / "acts0.zarr", (n_seq, seq, hidden), chunks)


def job_options(cfg: dict) -> dict:
    """The `supernet_layer` rule's options (rules/common.smk: supernet_layer_options)."""
    keys = ("damp", "heads_per_step", "channels_per_step", "batch_size", "compensate", "taylor", "obs")
    return {k: cfg["supernet"][k] for k in (*keys, "accumulate", "refit")}


# ---- the worker: one job in a fresh process ---------------------------------------------------


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


class Peaks:
    """Peak resident set per phase: VmHWM reset before the phase (/proc/self/clear_refs "5"), read
    after it. A reset also resets ru_maxrss, so the process maximum is kept here across them."""

    def __init__(self):
        self.process_max, self.rows, self._patches = _status("VmHWM"), {}, []

    def wrap(self, owner, name: str, key_of) -> None:
        original = getattr(owner, name)

        def peaked(*args, **kwargs):
            self.process_max = max(self.process_max, _status("VmHWM"))
            Path("/proc/self/clear_refs").write_text("5")
            before, cpu, wall = _status("VmRSS"), time.process_time(), time.perf_counter()
            out = original(*args, **kwargs)
            peak = _status("VmHWM")
            self.process_max = max(self.process_max, peak)
            row = self.rows.setdefault(key_of(args), dict(rss_before=before, peak=0, calls=0, cpu=0.0, wall=0.0))
            row["peak"], row["calls"] = max(row["peak"], peak), row["calls"] + 1
            row["cpu"] += time.process_time() - cpu
            row["wall"] += time.perf_counter() - wall
            return out

        self._patches.append((owner, name, original))
        setattr(owner, name, peaked)

    def restore(self) -> None:
        for owner, name, original in reversed(self._patches):
            setattr(owner, name, original)

    def final(self) -> int:
        return max(self.process_max, _status("VmHWM"))


def _wrap_phases(peaks: Peaks, widths: dict) -> None:
    """The job's sequential phases (none calls another): load, statistics per sublayer, then per
    sublayer the pruning path, the reconstruction errors and the level writes, and propagation."""
    from tyr.supernet import build, local_prune
    from tyr.supernet import format as supernet

    peaks.wrap(build, "_load_layer", lambda a: "load")
    peaks.wrap(build._Stream, "statistics", lambda a: f"statistics/{a[1]}")
    peaks.wrap(local_prune, "prune_levels", lambda a: f"path/{widths[a[0].shape[1]]}")
    peaks.wrap(local_prune, "recon_errors", lambda a: f"recon/{widths[a[0].shape[1]]}")
    peaks.wrap(supernet, "write_level", lambda a: f"write/{a[3]}")
    peaks.wrap(build._Stream, "propagate", lambda a: "propagate")


def worker(job: dict) -> dict:
    """build_layer of layer 0 as the supernet_layer rule calls it; phases timed (lib.meter, the
    cost model's spans) and their peaks (Peaks)."""
    import torch
    from costmodel.measure import _time_supernet_pieces
    from costmodel.shapes import spec_of

    from tyr.supernet import build

    torch.set_num_threads(job["threads"])
    d, s = Path(job["dir"]), ALL_SHAPES[job["shape"]]
    spec = spec_of(s)
    widths = {s["heads"] * s["head_dim"]: "attn", s["intermediate"]: "mlp"}
    rss_start = _status("VmRSS")
    peaks = Peaks()
    try:
        _wrap_phases(peaks, widths)
        with Meter() as meter:
            _time_supernet_pieces(meter, spec, job["seq"], s["intermediate"])
            cpu, wall = time.process_time(), time.perf_counter()
            build.build_layer(
                d / "model",
                d / "model" / "spec.json",
                d / "levels.json",
                d / "acts0.zarr",
                0,
                d / "supernet" / "layer000",
                d / "acts1.zarr",
                iteration=1,
                embeddings_zarr=None,
                **job["options"],
            )
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            pieces = meter.take()
    finally:
        peaks.restore()
    peak = peaks.final()
    return {
        "wall": wall,
        "cpu": cpu,
        "rss_start": rss_start,
        "peak_rss": peak,
        "phases": peaks.rows,
        "pieces": pieces,
        "stream": stream_rates(d, job["options"]["batch_size"]),
    }


def stream_rates(d: Path, batch: int) -> dict:
    """The stream's host side, after the job: the layer's input read in the job's batches
    (stores.row_batches, as _Stream reads it) and written back as a store (stores.write_hidden, as
    propagation writes it). On a GPU these stay on the host; costmodel.shapes.STREAM holds them."""
    from tyr.calib import stores

    arr = stores.open_hidden(d / "acts0.zarr")
    t = time.perf_counter()
    rows = list(stores.row_batches(arr, batch))
    read = time.perf_counter() - t
    t = time.perf_counter()
    stores.write_hidden(d / "copy.zarr", arr.shape, iter(rows))
    return {"bytes": arr.size * 4, "read_s": read, "write_s": time.perf_counter() - t}


def worker_main(job_json: str) -> None:
    setup()
    import zarr  # noqa: F401  (imported before the start RSS, as the job's own imports are)

    from tyr.model.adapter import load_config
    from tyr.supernet import build  # noqa: F401

    job = json.loads(job_json)
    load_config(Path(job["dir"]) / "model")
    print("RESULT " + json.dumps(worker(job)))


# ---- the driver ---------------------------------------------------------------------------------


def _busy_seconds() -> float:
    """CPU seconds every core of this machine has spent busy since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def spawn(job: dict, in_process: bool = False) -> dict:
    """One job in a fresh process (`in_process`: this one, for --smoke, whose memory means nothing);
    the child's wall, user and system seconds and faults from os.wait4, and what the rest of the
    machine used meanwhile (the contention)."""
    t0, busy0, load0 = time.perf_counter(), _busy_seconds(), os.getloadavg()
    if in_process:
        out, usage = worker(job), None
    else:
        with tempfile.TemporaryFile("w+") as log:
            env = child_env(OMP_NUM_THREADS=job["threads"], MKL_NUM_THREADS=job["threads"])
            child = subprocess.Popen([sys.executable, str(SCRIPT), "--worker", json.dumps(job)], env=env, stdout=log)
            _, status, ru = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            log.seek(0)
            text = log.read()
        if child.returncode != 0:
            raise RuntimeError(f"job {job['n_seq']}x{job['seq']} failed (exit {child.returncode})")
        out = json.loads(next(x for x in reversed(text.splitlines()) if x.startswith("RESULT "))[len("RESULT ") :])
        usage = {"user": ru.ru_utime, "system": ru.ru_stime, "minor_faults": ru.ru_minflt, "major_faults": ru.ru_majflt}
    wall = time.perf_counter() - t0
    own = (usage["user"] + usage["system"]) if usage else out["cpu"]
    out.update(
        job=job,
        process_wall=wall,
        usage=usage,
        load=[load0[0], os.getloadavg()[0]],
        others_cores=max(0.0, (_busy_seconds() - busy0 - own) / wall),
    )
    print(
        f"  {job['shape']} {job['n_seq']}x{job['seq']}: wall {out['wall']:.0f} s, cpu {out['cpu']:.0f} s, "
        f"peak RSS {out['peak_rss'] / 1e9:.2f} GB; other processes {out['others_cores']:.2f} cores",
        flush=True,
    )
    return out


def run_jobs(args, cfg: dict, tmp: Path) -> list:
    """Every token count's job on one model folder, the largest first."""
    shape = ALL_SHAPES[args.shape]
    counts = sorted((tuple(int(x) for x in t.split("x")) for t in args.tokens.split(",")), reverse=True)
    build_model(tmp, shape)
    out = []
    for k, (n_seq, seq) in enumerate(counts):
        d = tmp / f"t{n_seq}x{seq}"
        d.mkdir()
        (d / "model").symlink_to(tmp / "model")
        write_inputs(d, cfg, n_seq, seq, shape["hidden"])
        job = dict(dir=str(d), shape=args.shape, n_seq=n_seq, seq=seq, threads=args.threads, options=job_options(cfg))
        out.append(spawn(job, in_process=args.smoke and k > 0))
    return out


# ---- what the measurements say ------------------------------------------------------------------

PAPER = "Llama-3.1-8B", "Llama-3.1-70B"
MODELLED = ("statistics/mlp", "path/mlp", "propagate")  # the phases costmodel.model.supernet_memory models
LAWS = ROOT / "bench" / "results" / "2026-11-29-vm-scaling-combined.json"  # the fit docs/cost-model.md quotes


def tokens_of(r: dict) -> int:
    return r["job"]["n_seq"] * r["job"]["seq"]


def memory_check(r: dict) -> dict:
    """Per modelled phase: the measured peak above the job's start RSS against the model."""
    j = r["job"]
    mem = model.supernet_memory(ALL_SHAPES[j["shape"]], tokens_of(r), j["seq"], j["options"]["batch_size"])
    out = {}
    for phase in MODELLED:
        measured = r["phases"][phase]["peak"] - r["rss_start"]
        out[phase] = {"measured": measured, "model": mem["supernet_phase_totals"][phase]}
        out[phase]["ratio"] = out[phase]["model"] / measured
    job = {"measured": r["peak_rss"] - r["rss_start"], "model": mem["supernet_job_peak"]}
    out["job"] = dict(job, ratio=job["model"] / job["measured"], phase=mem["supernet_peak_phase"])
    return out


def split_parts(runs: list) -> dict:
    """Fixed and per-token parts of each phase's wall seconds and peak (two-point line through the
    largest and smallest token counts; None with one count)."""
    if len(runs) < 2:
        return {}
    a, b = runs[0], runs[-1]
    dt = tokens_of(a) - tokens_of(b)
    out = {}
    for phase in a["phases"]:
        pa, pb = a["phases"][phase], b["phases"][phase]
        row = {}
        for key, va, vb in (
            ("wall", pa["wall"], pb["wall"]),
            ("peak", pa["peak"] - a["rss_start"], pb["peak"] - b["rss_start"]),
        ):
            slope = (va - vb) / dt
            row[key] = {"per_token": slope, "fixed": va - slope * tokens_of(a)}
        out[phase] = row
    return out


def predicted_seconds(r: dict, cfg: dict, laws: dict) -> dict:
    """The cost model's one-thread seconds per piece (the laws docs/cost-model.md quotes) for this
    job's shape and tokens: its own prediction, to hold against the measurement."""
    import copy

    j = r["job"]
    c = copy.deepcopy(cfg)
    c["data"]["prune_sequences"], c["data"]["seq_len"] = j["n_seq"], j["seq"]
    work = model.supernet_work(ALL_SHAPES[j["shape"]], c, 1, laws["path"]["cache_bytes"])
    return model.supernet_seconds(work, laws, "cpu1")


def measured_pieces(r: dict) -> dict:
    """The job's CPU seconds in the cost model's pieces (its lib.meter keys, e.g. path/14336, summed by kind)."""
    out = {}
    for key, row in r["pieces"].items():
        kind = key.split("/")[0]
        out[kind] = out.get(kind, 0.0) + row["cpu"]
    return out


def paper_prediction(name: str, cfg: dict, start_rss: int) -> dict:
    """Host and device peak of one paper-preset job of `name` (the memory model; as coded), the
    host's process start (imports: measured) added on the host."""
    s, seq = ALL_SHAPES[name], cfg["data"]["seq_len"]
    mem = model.supernet_memory(s, cfg["data"]["prune_sequences"] * seq, seq, cfg["supernet"]["batch_size"])
    return {
        "model": mem,
        "host_peak": mem["supernet_job_peak"] + start_rss,
        # the device holds the layer, its statistics, the cache and one batch: every term of the
        # model is a tensor the job computes with, so the device needs the same bytes (no imports)
        "device_peak": mem["supernet_job_peak"],
    }


# ---- the report ---------------------------------------------------------------------------------


def gb(x) -> str:
    return "–" if x is None else f"{x / 1e9:.2f} GB"


def job_lines(runs: list, preset_tokens: int) -> list:
    lines = [
        "| tokens | of the preset | wall s | CPU s (user + sys) | minor faults | peak RSS | above start | "
        "other processes (cores) | load 1-min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        u, j = r["usage"] or {}, r["job"]
        cpu = f"{u['user']:.0f} + {u['system']:.0f}" if u else f"{r['cpu']:.0f}"
        lines.append(
            f"| {j['n_seq']} × {j['seq']} | 1/{preset_tokens / tokens_of(r):.0f} | {r['wall']:.1f} | {cpu} | "
            f"{u.get('minor_faults', 0) / 1e6:.1f} M | {gb(r['peak_rss'])} | {gb(r['peak_rss'] - r['rss_start'])} | "
            f"{r['others_cores']:.2f} | {r['load'][0]:.2f}→{r['load'][1]:.2f} |"
        )
    return lines


def phase_lines(runs: list, checks: list) -> list:
    head = " | ".join(f"{r['job']['n_seq']}×{r['job']['seq']}: wall s, peak above start (model)" for r in runs)
    lines = [f"| phase | {head} |", "|---|" + "---|" * len(runs)]
    for phase in runs[0]["phases"]:
        cells = []
        for r, c in zip(runs, checks):
            p = r["phases"][phase]
            model_txt = f" ({gb(c[phase]['model'])}, {c[phase]['ratio']:.2f})" if phase in c else ""
            cells.append(f"{p['wall']:.1f} s, {gb(p['peak'] - r['rss_start'])}{model_txt}")
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    return lines


def parts_lines(parts: dict, preset_tokens: int) -> list:
    if not parts:
        return []
    lines = [
        "Fixed and per-token parts (a line through the two token counts; the per-token peak grows only "
        f"up to one batch of sequences and a full cache), and the wall seconds at the preset's {preset_tokens} "
        "tokens by that line (extrapolated, and too low for the forwards: beyond 1 GiB of cache each "
        "uncached batch reruns its forwards, see the pieces below):",
        "",
        "| phase | wall fixed s | wall µs / token | at the preset s | peak fixed | peak bytes / token |",
        "|---|---|---|---|---|---|",
    ]
    for phase, row in parts.items():
        w, p = row["wall"], row["peak"]
        lines.append(
            f"| {phase} | {w['fixed']:.1f} | {1e6 * w['per_token']:.1f} | "
            f"{w['fixed'] + w['per_token'] * preset_tokens:.0f} | {gb(p['fixed'])} | {p['per_token']:.0f} |"
        )
    return lines


def pieces_lines(runs: list, predictions: list) -> list:
    lines = [
        "The cost model's pieces, CPU seconds: measured (lib.meter spans) and predicted by the laws "
        f"`{LAWS.relative_to(ROOT)}` holds for this shape and token count:",
        "",
        "| tokens | piece | measured CPU s | predicted | predicted / measured |",
        "|---|---|---|---|---|",
    ]
    for r, pred in zip(runs, predictions):
        got = measured_pieces(r)
        for k in ("forward", "hessian", "path", "recon", "write"):
            lines.append(
                f"| {r['job']['n_seq']}×{r['job']['seq']} | {k} | {got.get(k, 0):.1f} | {pred[k]:.1f} | "
                f"{pred[k] / max(got.get(k, 0), 1e-9):.2f} |"
            )
    return lines


def prediction_lines(preds: dict) -> list:
    lines = [
        "| paper preset, one job | host peak RSS | device peak (layer, statistics, cache, batch on it) | "
        "peak phase | of which float64 m×m / m×d | cache |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in preds.items():
        ph = p["model"]["supernet_phases"]["path/mlp"]
        lines.append(
            f"| {name} | {gb(p['host_peak'])} | {gb(p['device_peak'])} | {p['model']['supernet_peak_phase']} | "
            f"{gb(ph['hessians'])} / {gb(ph['weights_f64'])} | {gb(ph['cache'])} |"
        )
    return lines


def environment(args) -> dict:
    import platform

    import torch

    names = [x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name")]
    cpu = names[0].split(":", 1)[1].strip() if names else platform.processor()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "command": " ".join([f"OMP_NUM_THREADS={args.threads}", "python", *sys.argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "commit": commit.stdout.strip(),
        "threads": args.threads,
    }


def report(args, env: dict, cfg: dict, runs: list) -> None:
    laws = json.loads(LAWS.read_text())["laws"]
    preset_tokens = cfg["data"]["prune_sequences"] * cfg["data"]["seq_len"]
    checks = [memory_check(r) for r in runs]
    parts = split_parts(runs)
    predicted = [predicted_seconds(r, cfg, laws) for r in runs]
    preds = {n: paper_prediction(n, cfg, min(r["rss_start"] for r in runs)) for n in PAPER}
    s = ALL_SHAPES[args.shape]
    lines = [
        f"# One supernet_layer job, {args.shape}-shaped layer (d {s['hidden']}, m {s['intermediate']}, "
        f"{s['heads']}/{s['kv_heads']} heads × {s['head_dim']})",
        "",
        f"`{env['command']}` at commit {env['commit']}; {env['cpu']}, {env['cores']} cores, torch {env['torch']}, "
        f"{args.threads} thread(s). Paper preset (config.yaml + presets/paper.yaml: levels, Δ, steps, batch) but a "
        f"fraction of its {preset_tokens} pruning tokens; iteration 1's levels at 50 %; random weights, unit-normal "
        "input activations. Each job in a fresh process; peak RSS = the process's VmHWM maximum; "
        "'above start' subtracts its resident size after imports (what the memory model counts). "
        "'Other processes' is the machine's busy CPU (/proc/stat) beyond the job's own, in cores: the contention.",
        "",
        *job_lines(runs, preset_tokens),
        "",
        "Per phase (wall seconds; peak resident set above the job's start; model = "
        "costmodel.model.supernet_memory, model/measured):",
        "",
        *phase_lines(runs, checks),
        "",
        *[
            f"- {r['job']['n_seq']}×{r['job']['seq']}: job peak above start {gb(c['job']['measured'])}, model "
            f"{gb(c['job']['model'])} in {c['job']['phase']} (model/measured {c['job']['ratio']:.2f})"
            for r, c in zip(runs, checks)
        ],
        "",
        *parts_lines(parts, preset_tokens),
        "",
        *pieces_lines(runs, predicted),
        "",
        *[
            f"- stream, {r['job']['n_seq']}×{r['job']['seq']}: {gb(r['stream']['bytes'])} read at "
            f"{r['stream']['bytes'] / r['stream']['read_s'] / 1e9:.2f} GB/s, written at "
            f"{r['stream']['bytes'] / r['stream']['write_s'] / 1e9:.2f} GB/s (zarr, one thread, after the job)"
            for r in runs
            if "stream" in r
        ],
        "",
        "Predicted by the memory model for the paper preset's tokens (an extrapolation; host adds the "
        f"measured start RSS {gb(min(r['rss_start'] for r in runs))}):",
        "",
        *prediction_lines(preds),
    ]
    data = {
        "environment": env,
        "runs": runs,
        "memory_checks": checks,
        "parts": parts,
        "predicted_seconds": predicted,
        "paper_predictions": preds,
    }
    tag = "layer-scale" + (f"-{args.tag}" if args.tag else "")
    results.write(tag, lines, data, out=args.out)


def smoke_checks(runs: list) -> None:
    """What --smoke holds the run to: every phase ran, both sublayers wrote levels, the model spoke."""
    for r in runs:
        assert {"load", "statistics/attn", "path/mlp", "recon/attn", "write/mlp", "propagate"} <= set(r["phases"])
        assert r["phases"]["write/attn"]["calls"] > 1 and r["peak_rss"] > r["rss_start"], r["phases"]
        assert all(Path(r["job"]["dir"], "supernet", "layer000", "manifest.json").exists() for r in runs)


def main(argv=None):
    args = parse(argv)
    if args.worker:
        return worker_main(args.worker)
    setup(1)
    if args.smoke:
        args.shape, args.tokens = "tiny", "2x64,1x64"
    cfg = model.preset()
    env = environment(args)
    with cli.workspace(args), tempfile.TemporaryDirectory(prefix="tyr-layer-scale-") as tmp:
        runs = run_jobs(args, cfg, Path(tmp))
        if args.smoke:
            smoke_checks(runs)
        report(args, env, cfg, runs)


if __name__ == "__main__":
    main()

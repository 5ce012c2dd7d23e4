"""The recovery loop: distil the dense model into a pruned one, resumable, then write the result
as a plain `from_pretrained` folder beside the pruned one (`recover`).

The dense teacher runs once over the training text, before the first step, and leaves only its
top-k targets (`distill.teacher_targets`). Each step takes `batch` sequences (`text.batch_order`:
a pure function of seed and step), runs the student (bfloat16 autocast where the device
multiplies it natively, float32 master weights and AdamW moments) against their targets, and
updates the trained parameters (`adapters`) at a learning rate with linear warm-up and cosine
decay to zero.
Every `checkpoint_every` steps, and on SIGTERM, the trained parameters, the optimiser's state
and the loss history go to `state_dir` atomically; a rerun with the same inputs and options
continues from there and gives bit-identical weights (tests/recover/test_train.py).
Every `watch_every` steps the student's float32 perplexity on the held-out split (scored, never
trained on, and no decision depends on it) joins the history: the record's `curve`, which the
report plots against training minutes.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from tyr.model.adapter import load_model
from tyr.recover import checkpoint
from tyr.recover.adapters import merged, trainable, trained_parameters
from tyr.recover.distill import Targets, distill_loss, teacher_targets
from tyr.recover.output import write_recovered
from tyr.recover.text import batch_order, recovery_sequences

log = logging.getLogger(__name__)
CADENCE = ("checkpoint_every", "watch_every")  # how often it saves and looks, not what it computes


@dataclass(frozen=True)
class RecoverOptions:
    mode: str = "full"  # full | lora (tyr.recover.adapters)
    steps: int = 130
    batch: int = 8  # sequences per step
    lr: float = 4e-4
    warmup: int = 10  # steps of linear warm-up
    rank: int = 16  # LoRA
    alpha: float = 32.0  # LoRA: the update is (alpha / rank)·B·A
    temperature: float = 1.0
    top_k: int = 128  # the teacher's most likely tokens per position the student fits (tyr.recover.distill)
    text: str = "calibration"  # tyr.recover.text
    sequences: int | None = None
    dtype: str = (
        "auto"  # autocast of the student's and teacher's matmuls: auto (bf16 where native) | float32 | bfloat16
    )
    checkpoint_every: int = 25
    watch_every: int = 25  # steps between held-out perplexity points (0: none)
    seed: int = 0

    def learning_rate(self, step: int) -> float:
        """Linear warm-up over `warmup` steps, then cosine decay to 0 at `steps`."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        span = max(1, self.steps - self.warmup)
        return 0.5 * self.lr * (1 + math.cos(math.pi * (step - self.warmup) / span))


def recover(pruned_dir, dense_dir, tokens_zarr, out_dir, state_dir, *, device="cpu", progress=True, card=None,
            **options) -> dict:  # fmt: skip
    """Train `pruned_dir` toward `dense_dir`; write the recovered folder to `out_dir` and return its
    record (options, loss history, seconds). `state_dir` holds the checkpoint between runs."""
    import torch

    from tyr.core.device import placed, resolve_dtype, threads_from_env

    threads_from_env()
    opts = RecoverOptions(**options)
    seqs = recovery_sequences(tokens_zarr, opts.text, model_dir=dense_dir, sequences=opts.sequences)
    with placed(device, "devices.recover") as dev:
        dtype = getattr(torch, resolve_dtype(opts.dtype, dev.type))
        targets = _teacher_targets(dense_dir, seqs, opts, dtype, dev, progress)
        student = load_model(pruned_dir).to(dev).train()
        torch.manual_seed(opts.seed)  # LoRA's A matrices; a resumed run loads them instead
        model = trainable(student, opts.mode, rank=opts.rank, alpha=opts.alpha)
        params = trained_parameters(model)
        optim = torch.optim.AdamW(params.values(), lr=opts.lr, weight_decay=0.0, foreach=False)
        fingerprint = _fingerprint(opts, pruned_dir, dense_dir, seqs)
        watch = _Watch(tokens_zarr, opts.watch_every)
        heldout_start = watch(model, 0, [], progress)  # before a checkpoint's weights are loaded
        history = checkpoint.load(state_dir, fingerprint, params, optim)
        _train(model, targets, optim, params, seqs, opts, dtype, dev, history, state_dir, fingerprint, progress, watch)
        record = _record(opts, history, seqs, dtype, dev, heldout_start)
        write_recovered(merged(model, opts.mode), pruned_dir, dense_dir, out_dir, record, card or {})
    return record


def _teacher_targets(dense_dir, seqs, opts, dtype, dev, progress) -> Targets:
    """The dense model's top-k targets of every training sequence, [n, seq_len, k] on `dev`, computed
    in batches of opts.batch sequences in order (so a resumed run recomputes the same ones)."""
    import torch

    teacher, parts = load_model(dense_dir).to(dev).eval(), []
    autocast = torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32)
    t0 = time.perf_counter()
    with torch.no_grad(), autocast:
        for start in range(0, len(seqs), opts.batch):
            ids = torch.from_numpy(seqs[start : start + opts.batch]).to(dev)
            parts.append(teacher_targets(teacher(input_ids=ids).logits, opts.top_k, opts.temperature))
    if progress:
        log.info("recover: the dense model's top-%d targets of %d sequences in %.0f s", opts.top_k, len(seqs),
                 time.perf_counter() - t0)  # fmt: skip
    return Targets(*(torch.cat(p) for p in zip(*parts)))


def _train(model, targets, optim, params, seqs, opts, dtype, dev, history, state_dir, fingerprint, progress, watch):
    """Steps from len(history) to opts.steps; a checkpoint every opts.checkpoint_every and at the end.
    `seconds` counts training only: the watch's evaluations are left out."""
    import torch

    from tyr.core import signals

    start, t0, watched = len(history), time.perf_counter(), watch.seconds
    done_before = history[-1]["seconds"] if history else 0.0
    for step in range(start, opts.steps):
        rows = batch_order(len(seqs), opts.batch, step, opts.seed)
        ids = torch.from_numpy(seqs[rows]).to(dev)
        loss = _step(model, Targets(*(t[rows] for t in targets)), optim, params, ids, opts, step, dtype, dev)
        seconds = done_before + time.perf_counter() - t0 - (watch.seconds - watched)
        history.append({"step": step + 1, "loss": loss, "lr": opts.learning_rate(step), "seconds": seconds,
                        "tokens": (step + 1) * ids.numel()})  # fmt: skip
        last = step + 1 == opts.steps
        if watch.due(step + 1, last):
            watch(model, step + 1, history, progress)
        if last or (step + 1) % opts.checkpoint_every == 0 or signals.STOP.is_set():
            checkpoint.save(state_dir, fingerprint, params, optim, history)
        if progress and (last or (step + 1) % 5 == 0):
            _progress(history, opts)
        signals.check(f"recovery continues from step {step + 1} ({state_dir})")


def _step(model, targets, optim, params, ids, opts, step, dtype, dev) -> float:
    import torch

    with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
        logits = model(input_ids=ids).logits
    loss = distill_loss(logits, targets, opts.temperature)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
    for group in optim.param_groups:
        group["lr"] = opts.learning_rate(step)
    optim.step()
    optim.zero_grad(set_to_none=True)
    return float(loss.detach())


class _Watch:
    """The student's held-out perplexity (tyr.evaluate.perplexity, float32), every `every` steps
    and at the end (0, or an empty held-out split: never). Called at step 0 it returns the
    untrained model's perplexity; at a later step it adds `heldout_perplexity` to that step's
    history entry. `seconds`: the time it took, which the training's seconds leave out."""

    def __init__(self, tokens_zarr, every: int):
        from tyr.calib import stores

        self.tokens_zarr, self.seconds = tokens_zarr, 0.0
        self.every = every if every and stores.split_shapes(tokens_zarr).get(stores.HELDOUT, (0,))[0] else 0

    def due(self, step: int, last: bool) -> bool:
        return bool(self.every) and (last or step % self.every == 0)

    def __call__(self, model, step: int, history: list, progress: bool) -> float | None:
        from tyr.evaluate.perplexity import heldout_perplexity

        if not self.every:
            return None
        t0 = time.perf_counter()
        model.eval()
        ppl = heldout_perplexity(model, self.tokens_zarr)["perplexity"]
        model.train()
        self.seconds += time.perf_counter() - t0
        if step:
            history[-1]["heldout_perplexity"] = ppl
        if progress:
            log.info("recover: held-out perplexity %.2f after %d steps (%.0f s)", ppl, step,
                     time.perf_counter() - t0)  # fmt: skip
        return ppl


def _curve(history, heldout_start) -> list[dict]:
    """(step, training seconds, held-out perplexity) at step 0 and every watched step."""
    points = [{"step": 0, "seconds": 0.0, "heldout_perplexity": heldout_start}] if heldout_start else []
    return points + [{k: h[k] for k in ("step", "seconds", "heldout_perplexity")}
                     for h in history if "heldout_perplexity" in h]  # fmt: skip


def _progress(history, opts) -> None:
    """One line: step, loss, tokens/s and seconds left, over the last 5 steps."""
    h, before = history[-1], history[-6] if len(history) > 5 else {"step": 0, "tokens": 0, "seconds": 0.0}
    span = max(h["seconds"] - before["seconds"], 1e-9)
    left = (opts.steps - h["step"]) * span / max(1, h["step"] - before["step"])
    log.info("recover: step %d/%d  loss %.4f  %.0f tokens/s  %.0f s left", h["step"], opts.steps, h["loss"],
             (h["tokens"] - before["tokens"]) / span, left)  # fmt: skip


def _fingerprint(opts, pruned_dir, dense_dir, seqs) -> dict:
    """What a checkpoint must match to be continued: the options that change the weights (not
    how often they are saved) and the exact inputs."""
    from tyr.calib.stores import tokens_digest

    options = {k: v for k, v in asdict(opts).items() if k not in CADENCE}
    return {"options": options, "pruned": _weights_digest(pruned_dir), "dense": _weights_digest(dense_dir),
            "text": tokens_digest(seqs)}  # fmt: skip


def _weights_digest(folder) -> str:
    import hashlib

    from tyr.core.io import sha256_file
    from tyr.model.adapter import weight_files

    return hashlib.sha256("".join(sha256_file(f) for f in weight_files(folder)).encode()).hexdigest()


def _record(opts, history, seqs, dtype, dev, heldout_start) -> dict:
    return {
        "options": asdict(opts),
        "sequences": int(len(seqs)),
        "seq_len": int(seqs.shape[1]),
        "compute_dtype": str(dtype).removeprefix("torch."),
        "device": dev.type,
        "seconds": history[-1]["seconds"] if history else 0.0,
        "tokens": history[-1]["tokens"] if history else 0,
        "final_loss": float(np.mean([h["loss"] for h in history[-10:]])) if history else None,
        "curve": _curve(history, heldout_start),
        "history": history,
    }

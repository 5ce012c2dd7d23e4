"""Does a stage's result on one device agree with the CPU's? One function per stage of
bench/gpu_check.py, each returning its measured differences and `agrees`.

Tolerances (every slice computes in float32; the devices differ only by their kernels' order of
summation, ~1e-6 relative per product):
  choices    identical: kept units of every level, the chosen share and genome, baseline genomes
  WEIGHTS    1e-4 relative (max |a-b| / max |a|): float64 solves on float32 statistics
  VALUES     1e-4 relative: activations, log-probabilities, KL, perplexity
  MASKS      99.9% of an unstructured mask identical (SparseGPT/APT pick inside compensated blocks:
             a near-tie can flip one weight without changing the result)
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS = 1e-4
VALUES = 1e-4
MASKS = 0.999


def rel(a, b) -> float:
    """max |a - b| / max |b| over arrays or tensors (0 when both are zero)."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = float(np.abs(b).max()) if b.size else 0.0
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(a - b).max(initial=0.0))


def _zarr(path, name=None):
    import zarr

    node = zarr.open(str(path), mode="r")
    return (node[name] if name else node)[...]


def tokens(ours, ref) -> dict:
    """Self-sampling: the same host generator draws from float32 distributions that differ by
    rounding only, so the tokens are identical unless a draw lands on a rounding-sized edge."""
    same = float((ours == ref).mean())
    return {"tokens_identical": same, "agrees": same >= MASKS}


def supernet_layer(ours: Path, ref: Path) -> dict:
    from tyr.calib.stores import HIDDEN
    from tyr.core.io import load_safetensors, read_json

    m_ours, m_ref = (read_json(p / "layer000" / "manifest.json") for p in (ours, ref))
    kept_same, weight_rel = True, 0.0
    for sublayer in ("attn", "mlp"):
        for a, b in zip(m_ours[sublayer], m_ref[sublayer], strict=True):
            ta, _ = load_safetensors(ours / "layer000" / a["file"])
            tb, _ = load_safetensors(ref / "layer000" / b["file"])
            for name in tb:
                if name.startswith("kept") or name == "q_to_kv":
                    kept_same &= bool((ta[name] == tb[name]).all())
                else:
                    weight_rel = max(weight_rel, rel(ta[name], tb[name]))
    acts = rel(_zarr(ours / "out000.zarr", HIDDEN), _zarr(ref / "out000.zarr", HIDDEN))
    checks = {"kept_identical": kept_same, "weights_rel": weight_rel, "propagated_rel": acts}
    return {**checks, "agrees": kept_same and weight_rel <= WEIGHTS and acts <= VALUES}


def topk(ours: Path, ref: Path) -> dict:
    import zarr

    a, b = zarr.open_group(str(ours), mode="r"), zarr.open_group(str(ref), mode="r")
    same, logp = 1.0, 0.0
    for split in b.group_keys():
        same = min(same, float((a[split]["index"][...] == b[split]["index"][...]).mean()))
        logp = max(logp, rel(a[split]["logp"][...], b[split]["logp"][...]))
    return {"index_identical": same, "logp_rel": logp, "agrees": same >= MASKS and logp <= VALUES}


def share(ours: dict, ref: dict) -> dict:
    ppl = max(rel(a["perplexity"], b["perplexity"]) for a, b in zip(ours["candidates"], ref["candidates"]))
    same = ours["chosen"] == ref["chosen"]
    return {"chosen_identical": same, "perplexity_rel": ppl, "agrees": same and ppl <= VALUES}


def search(ours: dict, ref: dict) -> dict:
    same = ours["layers"] == ref["layers"]
    fit = rel(ours["fitness"], ref["fitness"])
    return {"genome_identical": same, "fitness_rel": fit, "agrees": same and fit <= VALUES}


def select(ours: dict, ref: dict) -> dict:
    same = ours["chosen"] == ref["chosen"]
    kl = max(rel(ours["selection"]["candidates"][n]["kl"], c["kl"]) for n, c in ref["selection"]["candidates"].items())
    return {"chosen_identical": same, "kl_rel": kl, "agrees": same and kl <= VALUES}


def evaluation(ours: dict, ref: dict) -> dict:
    ppl = rel(ours["perplexity"]["heldout"]["perplexity"], ref["perplexity"]["heldout"]["perplexity"])
    speed = {k: round(ours["speed"][k], 1) for k in ("prefill_tokens_per_s", "decode_tokens_per_s")}  # on the device
    return {"perplexity_rel": ppl, **speed, "agrees": ppl <= VALUES}


def genomes(ours: dict, ref: dict) -> dict:
    same = {m: ours[m] == ref[m] for m in ref}
    return {"genomes_identical": same, "agrees": all(same.values())}


def unstructured(ours: Path, ref: Path) -> dict:
    from tyr.core.io import load_safetensors

    masks, weights = 1.0, 0.0
    for path in sorted(ref.glob("*.safetensors")):
        ta, _ = load_safetensors(ours / path.name)
        tb, _ = load_safetensors(path)
        for name, b in tb.items():
            masks = min(masks, float(((ta[name] != 0) == (b != 0)).float().mean()))
            weights = max(weights, rel(ta[name], b))
    return {"masks_identical": masks, "weights_rel": weights, "agrees": masks >= MASKS and weights <= WEIGHTS}

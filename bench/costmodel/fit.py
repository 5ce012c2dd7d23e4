"""The cost model's laws: the work features of each stage piece and one non-negative constant per
law, fitted by relative least squares, with predicted/measured per point."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from costmodel.shapes import SHAPES, topk_flops

PATH_TERMS = ("s2_in", "s2_out", "sw", "init")


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
    Σn·d_out (the W update), and the start: Cholesky, inverse and H·W, w³ + 2w²·d_out.
    (costmodel.checks holds this count to the real loop.)"""
    alive, f = width // group, {"s2": 0.0, "s2_in": 0.0, "s2_out": 0.0, "sw": 0.0, "steps": 0}
    for target in sorted({int(k) for k in levels}, reverse=True):
        while alive > target:
            n = alive * group
            f["s2"] += n * n
            f["s2_in" if 8 * n * n <= cache_bytes else "s2_out"] += n * n
            f["sw"] += n * d_out
            f["steps"] += 1
            alive -= min(per_step, alive - target)
    f["init"] = float(width) ** 3 + 2.0 * width**2 * d_out
    return f


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


def points(results, kind):
    return [r for r in results if r["kind"] == kind]


def fit_all(results, cache_bytes: int) -> dict:
    """Every law's constant, and per point the predicted/measured ratio."""
    pieces = [(r["job"]["shape"], k.split("/"), v) for r in points(results, "supernet") for k, v in r["pieces"].items()]

    def law(prefix, work_of, unit):
        rows = [(shape, key, v) for shape, key, v in pieces if key[0] == prefix]
        return _law(
            [work_of(key, v) for _, key, v in rows],
            [v["cpu"] for *_, v in rows],
            [f"{shape} {key[1]}" for shape, key, _ in rows],
            unit,
        )

    laws = {
        "hessian": law(
            "hessian",
            lambda key, v: 2 * v["tokens"] * int(key[1]) ** 2,
            "s per FLOP (fp32 XᵀX per batch, summed in fp64)",
        ),
        "supernet_forward": law("forward", lambda key, v: v["flops"], "s per FLOP (fp32 layer forwards)"),
        "recon": law("recon", lambda key, v: v["flops"], "s per FLOP (fp32 H·D per level)"),
        "write": law("write", lambda key, v: v["bytes"], "s per byte written (safetensors + sha256)"),
        "path": _path_law(results, cache_bytes),
    }
    laws.update(_fitness_laws(results))
    return laws


def holdout_check(results, shape: str, cache_bytes: int) -> dict:
    """The supernet layer of `shape` predicted piece by piece from laws fitted without it."""
    held = [r for r in points(results, "supernet") if r["job"]["shape"] == shape]
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


def _law(work, seconds, labels, unit) -> dict:
    if not work:
        return {"unit": unit, "constant": None, "points": []}
    a = ratio_fit(work, seconds)
    pts = [
        {"label": label, "work": w, "cpu_s": s, "ratio": a * w / s if s > 0 else None}
        for label, w, s in zip(labels, work, seconds)
    ]
    return {"unit": unit, "constant": a, "points": pts}


def _path_law(results, cache_bytes: int) -> dict:
    """c_in·Σn²(in cache) + c_out·Σn²(beyond) + c_w·Σn·d_out + c_init·(w³ + 2w²·d_out) over every
    prune_levels call measured; also the widest MLP point predicted by a fit without it."""
    rows = []
    for r in points(results, "supernet"):
        for k, v in r["pieces"].items():
            if k.startswith("path/"):
                rows.append((f"{r['job']['shape']} {'attn' if v['info']['group'] > 1 else 'mlp'}", v["info"], v["cpu"]))
    for r in points(results, "path"):
        rows.append((f"sweep {r['info']['width']}/{r['info']['group']}", r["info"], r["total"]["cpu"]))
    if not rows:
        return {"constants": None, "points": []}
    feats = [
        path_features(i["width"], i["d_out"], i["group"], i["per_step"], i["levels"], cache_bytes) for _, i, _ in rows
    ]
    X = [[f[k] for k in PATH_TERMS] for f in feats]
    y = [s for *_, s in rows]
    coef = fit_nonneg(X, y)
    pts = [
        {"label": label, "width": i["width"], "steps": f["steps"], "cpu_s": s, "ratio": float(np.dot(coef, x) / s)}
        for (label, i, s), f, x in zip(rows, feats, X)
    ]
    out = {
        "unit": "s per element of Σn² in cache, beyond it, per Σn·d_out, per (w³ + 2w²·d_out)",
        "terms": PATH_TERMS,
        "constants": coef.tolist(),
        "cache_bytes": cache_bytes,
        "points": pts,
    }
    mlp = [j for j, (_, i, _) in enumerate(rows) if i["group"] == 1]
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
        fr = [r for r in points(results, "fitness") if r["job"]["dtype"] == dtype]
        sub = [
            (f"{r['job']['shape']} {k[9:]}", v)
            for r in fr
            for k, v in r["warm"].items()
            if k.startswith("sublayer/") and "flops" in v
        ]
        laws[f"fitness_sublayer_{dtype}"] = _law(
            [v["flops"] for _, v in sub],
            [v["cpu"] for _, v in sub],
            [s for s, _ in sub],
            "s per FLOP (pruned sublayer forward)",
        )
        head = [(r["job"]["shape"], r["warm"]["head"]) for r in fr if "head" in r["warm"]]
        laws[f"fitness_head_{dtype}"] = _law(
            [v["flops"] for _, v in head],
            [v["cpu"] for _, v in head],
            [s for s, _ in head],
            "s per FLOP of the LM head (+ softmax, KL)",
        )
        build = [(r["job"]["shape"], v) for r in fr for k, v in r["cold"].items() if k.startswith("build/")]
        laws[f"module_build_{dtype}"] = _law(
            [v["bytes"] for _, v in build],
            [v["cpu"] for _, v in build],
            [s for s, _ in build],
            "s per byte of module built from level files",
        )
    tk = points(results, "topk")
    laws["dense_topk"] = _law(
        [topk_flops(SHAPES[r["job"]["shape"]], *r["job"]["fitness"]) for r in tk],
        [r["total"]["cpu"] for r in tk],
        [r["job"]["shape"] for r in tk],
        "s per FLOP (1 dense layer + LM head + top-k, per token)",
    )
    return laws

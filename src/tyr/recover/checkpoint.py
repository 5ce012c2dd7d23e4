"""A recovery's checkpoint: the trained parameters, AdamW's moments and step counts
(safetensors) and the loss history and fingerprint (state.json), in `state_dir`.

state.json names the weights file it belongs to (one file per saved step), and is replaced
last: a crash between the two writes leaves the previous pair intact. A checkpoint whose
fingerprint differs from the run's (other options, inputs or text) is not continued: the run
starts over and says why.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tyr.core.io import load_safetensors, read_json, save_safetensors, sha256_file, write_json

log = logging.getLogger(__name__)
STATE = "state.json"


def save(state_dir, fingerprint: dict, params: dict, optim, history: list) -> None:
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    step = history[-1]["step"] if history else 0
    weights = state_dir / f"step{step:06d}.safetensors"
    save_safetensors(weights, _tensors(params, optim))
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optim.state_dict()["param_groups"]]
    state = {"fingerprint": fingerprint, "weights": weights.name, "sha256": sha256_file(weights),
             "param_groups": groups, "history": history}  # fmt: skip
    write_json(state_dir / STATE, state)
    for old in state_dir.glob("step*.safetensors"):
        if old != weights:
            old.unlink()


def load(state_dir, fingerprint: dict, params: dict, optim) -> list:
    """Restore the checkpoint into `params` and `optim` and return its history; [] when there is
    none to continue (no checkpoint, another fingerprint, a damaged weights file)."""
    state_dir = Path(state_dir)
    if not (state_dir / STATE).is_file():
        return []
    state = read_json(state_dir / STATE)
    weights = state_dir / state["weights"]
    if state["fingerprint"] != fingerprint:
        log.warning("recover: %s belongs to other options or inputs; starting over", state_dir / STATE)
        return []
    if not weights.is_file() or sha256_file(weights) != state["sha256"]:
        log.warning("recover: %s is missing or damaged; starting over", weights)
        return []
    tensors, _ = load_safetensors(weights)
    _restore(tensors, params, optim, state["param_groups"])
    log.info("recover: continuing from step %d (%s)", state["history"][-1]["step"] if state["history"] else 0, weights)
    return state["history"]


def _tensors(params: dict, optim) -> dict:
    out = {f"param.{name}": p.detach() for name, p in params.items()}
    moments = optim.state_dict()["state"]
    for i, name in enumerate(params):
        for key, value in moments.get(i, {}).items():
            out[f"optim.{name}.{key}"] = value
    return out


def _restore(tensors: dict, params: dict, optim, groups: list) -> None:
    import torch

    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[f"param.{name}"])
    state = {}
    for i, name in enumerate(params):
        prefix = f"optim.{name}."
        entry = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if entry:
            state[i] = entry
    saved = optim.state_dict()
    optim.load_state_dict({"state": state, "param_groups": [dict(g, params=s["params"]) for g, s in
                                                             zip(groups, saved["param_groups"])]})  # fmt: skip

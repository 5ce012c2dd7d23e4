"""Wall time of the default calibration (`data.source: self`): sampling the splits from the model.

    .venv/bin/python bench/self_sampling.py [--model results/<run>/model] [--threads 2] [--repeats 1]

Samples the default calibration sizes (config/config.yaml: prune + fitness + selection +
heldout sequences of seq_len tokens) with `tyr.calib.calibrate.calibrate` into a temporary store and
reports tokens per second. Writes bench/results/<date>-<host>-self-sampling.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import ROOT, write_result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "results" / "smollm2-135m" / "model"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    from tyr.calib.calibrate import calibrate
    from tyr.calib.stores import read_attrs

    torch.set_num_threads(args.threads)
    data = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["data"]
    counts = {k: data[f"{k}_sequences"] for k in ("prune", "fitness", "selection", "heldout")}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        calibrate(args.model, Path(tmp) / "t.zarr", source="self", seq_len=data["seq_len"], n_prune=counts["prune"],
                  n_fitness=counts["fitness"], n_selection=counts["selection"], n_heldout=counts["heldout"],
                  seed=data["seed"], temperature=data.get("temperature", 1.0))
        seconds = time.perf_counter() - t0
        how = read_attrs(Path(tmp) / "t.zarr")["sampling"]
    tokens = sum(counts.values()) * data["seq_len"]
    write_result("self-sampling", [
        "# Self-sampled calibration: wall time", "", f"`{' '.join(sys.argv)}`", "",
        f"{sum(counts.values())} sequences × {data['seq_len']} tokens ({counts}) = {tokens:,} tokens, "
        f"{args.threads} threads, {how['dtype']}, batch {how['batch_size']}: **{seconds:.0f} s** "
        f"({tokens / seconds:.0f} tokens/s), model load included."])


if __name__ == "__main__":
    main()

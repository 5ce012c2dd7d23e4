"""Wall time of the default calibration (`data.source: self`): sampling the splits from the model.

    python bench/self_sampling.py [--model results/<run>/model] [--threads 2]
    python bench/self_sampling.py --smoke

Samples the default calibration sizes (config/config.yaml: prune + fitness + selection +
heldout sequences of seq_len tokens) with `tyr.calib.calibrate.calibrate` into a temporary store and
reports tokens per second. Writes bench/results/<date>-<host>-self-sampling.md. --smoke: the tiny
preset's sizes sampled from a tiny random model.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from lib import args as cli
from lib import results
from lib.config import default_config
from lib.env import ROOT, setup


def main(argv=None):
    ap = cli.parser(__doc__)
    ap.add_argument("--model", default=str(ROOT / "results" / "smollm2-135m" / "model"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    setup(args.threads)
    with cli.workspace(args) as tmp:
        if args.smoke:
            from tyr.testing import save_tiny_model

            args.model = str(save_tiny_model(tmp / "model"))
        data = default_config(smoke=args.smoke)["data"]
        counts = {k: data[f"{k}_sequences"] for k in ("prune", "fitness", "selection", "heldout")}
        seconds, how = sample(args.model, data, counts)
        tokens = sum(counts.values()) * data["seq_len"]
        results.write(
            "self-sampling",
            [
                "# Self-sampled calibration: wall time",
                "",
                f"`{' '.join(sys.argv)}`",
                "",
                f"{sum(counts.values())} sequences × {data['seq_len']} tokens ({counts}) = {tokens:,} tokens, "
                f"{args.threads} threads, {how['dtype']}, batch {how['batch_size']}: **{seconds:.0f} s** "
                f"({tokens / seconds:.0f} tokens/s), model load included.",
            ],
            out=args.out,
        )


def sample(model: str, data: dict, counts: dict) -> tuple[float, dict]:
    """Seconds of `tyr.calib.calibrate.calibrate` (source self) into a temporary store, and how it sampled."""
    from tyr.calib.calibrate import calibrate
    from tyr.calib.stores import read_attrs

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        calibrate(
            model,
            Path(tmp) / "t.zarr",
            source="self",
            seq_len=data["seq_len"],
            n_prune=counts["prune"],
            n_fitness=counts["fitness"],
            n_selection=counts["selection"],
            n_heldout=counts["heldout"],
            seed=data["seed"],
            temperature=data.get("temperature", 1.0),
        )
        return time.perf_counter() - t0, read_attrs(Path(tmp) / "t.zarr")["sampling"]


if __name__ == "__main__":
    main()

"""Every bench script's --smoke mode, one after another, with the seconds each took.

    python bench/smoke.py [--only NAME ...] [--isolated]

A smoke mode runs the script's own code path on a tiny random model (lib.tinyrun) or a tiny
configuration, writes its result files into a temp folder (never bench/results) and fails loudly.
By default the scripts run in this one process (torch, transformers and the tiny run are loaded
and built once: about 5 s of every script's start-up saved); --isolated runs each as its own
`python bench/<name>.py --smoke`, exactly as a user would. Exits 1 when any script failed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
import traceback

from lib.env import ROOT, child_env, setup

BENCH = ROOT / "bench"
SCRIPTS = (
    "floors",
    "scaling",
    "layer_scale",
    "pipeline",
    "quality",
    "structural",
    "unstructured",
    "kill_trials",
    "attention_share",
    "fitness_dtype",
    "iterations",
    "search_budget",
    "search_speed",
    "selection_noise",
    "self_sampling",
    "supernet_ablation",
    "gguf_export",
    "recover",
)


def run_one(name: str, isolated: bool) -> tuple[bool, float, str]:
    """(passed, seconds, the tail of what it said when it failed)."""
    t0 = time.perf_counter()
    if isolated:
        done = subprocess.run(
            [sys.executable, str(BENCH / f"{name}.py"), "--smoke"],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
        )
        return done.returncode == 0, time.perf_counter() - t0, (done.stdout + done.stderr)[-3000:]
    try:
        module = importlib.import_module(name)
        module.main(["--smoke"])
    except SystemExit as e:  # argparse and friends: a zero code is a pass
        return e.code in (0, None), time.perf_counter() - t0, f"SystemExit({e.code})"
    except Exception:
        return False, time.perf_counter() - t0, traceback.format_exc()[-3000:]
    return True, time.perf_counter() - t0, ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=SCRIPTS, help="run these scripts' smoke modes only")
    ap.add_argument("--isolated", action="store_true", help="each script in its own process")
    args = ap.parse_args(argv)
    setup()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    rows, t0 = [], time.perf_counter()
    for name in args.only or SCRIPTS:
        print(f"[smoke] {name} ...", file=sys.stderr, flush=True)
        ok, seconds, tail = run_one(name, args.isolated)
        rows.append((name, ok, seconds))
        if not ok:
            print(f"[smoke] {name} FAILED:\n{tail}", file=sys.stderr, flush=True)
    total = time.perf_counter() - t0
    print("\n| script | smoke | seconds |\n|---|---|---|")
    for name, ok, seconds in rows:
        print(f"| {name} | {'ok' if ok else '**FAILED**'} | {seconds:.1f} |")
    failed = [name for name, ok, _ in rows if not ok]
    print(
        f"\n{len(rows) - len(failed)} of {len(rows)} passed in {total:.1f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The pruned model in llama.cpp: dense vs each method, float and quantized, on the same threads.

    python bench/gguf_export.py [results/<run>] [--target 50] [--methods tyr uniform] [--repeats 5] [--threads 2]
    python bench/gguf_export.py --smoke

Reads the GGUF files and llama.cpp's perplexity checks that `make gguf` wrote (rules/gguf.smk:
<run>/dense/gguf/, <run>/s<target>/<method>/gguf/), and times prefill and greedy decode of every
file in llama.cpp *paired*: all files loaded at once, one untimed warm-up each, then `repeats`
rounds in which every file runs once (the order rotating each round), so a load on the shared
machine hits every model alike; medians over the rounds, and the median of the per-round ratios
to the dense file of the same type. Writes bench/results/<date>-<host>-gguf.{md,json}.
--smoke: a tiny finished run (lib.tinyrun), its GGUF files written and checked with product code.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from lib import args as cli
from lib import results
from lib.env import ROOT, setup
from lib.tinyrun import smoke_run_args

TYPES = ("f32", "Q8_0", "Q4_K_M")


def main(argv=None):
    ap = cli.parser(__doc__)
    cli.add_run_args(ap, perplexity=False)
    ap.add_argument("--methods", nargs="+", default=["tyr", "uniform"])
    ap.add_argument("--types", nargs="+", default=list(TYPES))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=64)
    args = ap.parse_args(argv)
    setup(args.threads)
    with cli.workspace(args) as tmp:
        if args.smoke:
            run = smoke_run_args(args, tmp)
            args.repeats, args.prompt_tokens, args.new_tokens = 2, 16, 4
            build_smoke_files(run, args)
        run = Path(args.run_dir or ROOT / "results" / "smollm2-135m")
        results_ = {"dense": "dense"} | {m: f"s{args.target}/{m}" for m in args.methods}
        files = {
            (name, t): run / folder / "gguf" / f"model-{t}.gguf"
            for name, folder in results_.items()
            for t in args.types
        }
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            sys.exit(f"missing GGUF files (run `make gguf` first): {missing[:3]}")
        timing = paired_speed(files, run / "model", args)
        rows = table_rows(files, timing, run, results_)
        data = {
            "run": str(run),
            "target": args.target,
            "threads": args.threads,
            "repeats": args.repeats,
            "prompt_tokens": args.prompt_tokens,
            "new_tokens": args.new_tokens,
            "rows": rows,
            "llama_cpp_python": _version(),
            "command": " ".join(sys.argv),
        }
        results.write("gguf", markdown(data), data, out=args.out)


def paired_speed(files: dict, dense_model: Path, args) -> dict:
    """{key: [(prefill s, decode s) per round]}: every file once per round, order rotating."""
    from tyr.evaluate import llamacpp

    prompt = llamacpp.prompt(dense_model, args.prompt_tokens, 0)
    keys = list(files)
    llms = {
        k: llamacpp.load(files[k], n_ctx=args.prompt_tokens + args.new_tokens, threads=args.threads, logits_all=False)
        for k in keys
    }
    try:
        for k in keys:
            llamacpp.generate_times(llms[k], prompt, 2)  # warm-up
        runs = {k: [] for k in keys}
        for r in range(args.repeats):
            for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
                runs[k].append(llamacpp.generate_times(llms[k], prompt, args.new_tokens))
    finally:
        for llm in llms.values():
            llm.close()
    return runs


def table_rows(files, timing, run: Path, results_: dict) -> list[dict]:
    from tyr.core.io import read_json

    rows = []
    for (name, t), path in files.items():
        check = read_json(path.parent / f"check-{t}.json")
        runs, dense = timing[(name, t)], timing[("dense", t)]
        rows.append(
            {
                "model": name,
                "type": t,
                "bytes": path.stat().st_size,
                "perplexity": {k: v["perplexity"] for k, v in check["perplexity"].items()},
                "prefill_s": statistics.median(a for a, _ in runs),
                "decode_s": statistics.median(b for _, b in runs),
                "decode_ratio_median": statistics.median(d[1] / r[1] for r, d in zip(runs, dense)),
                "prefill_ratio_median": statistics.median(d[0] / r[0] for r, d in zip(runs, dense)),
                "runs": [[round(a, 5), round(b, 5)] for a, b in runs],
            }
        )
    return rows


def markdown(data: dict) -> list[str]:
    p, n = data["prompt_tokens"], data["new_tokens"]
    sets = sorted({k for r in data["rows"] for k in r["perplexity"]})
    lines = [
        "# The pruned model in llama.cpp (GGUF)",
        "",
        f"`{data['command']}`",
        "",
        f"llama-cpp-python {data['llama_cpp_python']}, CPU, {data['threads']} threads; {p}-token prompt, {n} greedy "
        f"tokens; median of {data['repeats']} paired rounds (every file once per round, order rotating); speed-ups are "
        "the median of the per-round ratios to the dense file of the same type. Perplexity: llama.cpp's, on the "
        "run's evaluation windows (`make gguf`'s check files).",
        "",
        "| model | type | file MB | "
        + " | ".join(f"ppl {s}" for s in sets)
        + " | prefill tok/s | × dense | decode tok/s | × dense |",
        "|---|---|---:|" + "---:|" * len(sets) + "---:|---:|---:|---:|",
    ]
    for r in data["rows"]:
        ppl = " | ".join(f"{r['perplexity'][s]:.2f}" if s in r["perplexity"] else "n/a" for s in sets)
        lines.append(
            f"| {r['model']} | {r['type']} | {r['bytes'] / 1e6:.1f} | {ppl} | {p / r['prefill_s']:.0f} | "
            f"{r['prefill_ratio_median']:.2f} | {(n - 1) / r['decode_s']:.1f} | {r['decode_ratio_median']:.2f} |"
        )
    return lines


def build_smoke_files(run: Path, args) -> None:
    """The tiny run's GGUF files and checks, by the product's functions (what `make gguf` runs)."""
    from tyr.core.io import write_json
    from tyr.evaluate.llamacpp import check
    from tyr.export.gguf import export_gguf
    from tyr.export.quantize import quantize

    plan = {"perplexity": {"heldout": {"source": "heldout", "label": "held-out"}}}
    for folder in ["model"] + [f"s{args.target}/{m}/pruned" for m in args.methods]:
        src = run / folder
        out = (run / "dense" if folder == "model" else src.parent) / "gguf"
        export_gguf(src, out / "model-f32.gguf", tokenizer_source=src)
        for t in args.types:
            if t != "f32":
                quantize(out / "model-f32.gguf", out / f"model-{t}.gguf", t)
            write_json(
                out / f"check-{t}.json",
                check(
                    out / f"model-{t}.gguf",
                    model_dir=src,
                    plan=plan,
                    tokens_zarr=run / "calib" / "tokens.zarr",
                    threads=1,
                ),
            )


def _version() -> str:
    import llama_cpp

    return llama_cpp.__version__


if __name__ == "__main__":
    main()

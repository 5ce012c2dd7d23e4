"""The model card (`gguf/README.md`) of a result's GGUF files: how to run them where users run
models (llama-cli, llama-server, Ollama), what llama.cpp measured, and with which version."""

from __future__ import annotations

from pathlib import Path

from tyr.core.io import atomic_write_text
from tyr.evaluate.gguf_table import markdown


def write_card(table: dict, out_md) -> None:
    rows = table["rows"]
    files = [Path(r["file"]).name for r in rows]
    run = files[1] if len(files) > 1 else files[0]  # a quantized file is what most people run
    export = table.get("export", {})
    lines = [
        "---",
        "tags: [gguf, llama.cpp, pruned, structured-pruning, tyr]",
        "---",
        "",
        f"# {table['result']}: GGUF for llama.cpp",
        "",
        "Structurally pruned with tyr (Týr-the-Pruner): every layer keeps its own number of attention heads, "
        "KV heads and MLP channels, written as llama.cpp's `deci` architecture (per-layer "
        "`deci.attention.head_count`, `head_count_kv` and `feed_forward_length` arrays). Any recent "
        "llama.cpp build runs it; no custom code.",
        "",
        f"Files: {', '.join(f'`{f}`' for f in files)} (the float file was written by tyr, the others by "
        "llama.cpp's own quantizer from it).",
        "",
        "```bash",
        f'llama-cli -m {run} -p "The capital of France is" -n 32 -t 2',
        f"llama-server -m {run} --port 8080 -t 2   # OpenAI-compatible API on http://localhost:8080",
        "```",
        "",
        "Ollama (`Modelfile` beside the file, then `ollama create tyr-pruned -f Modelfile && ollama run tyr-pruned`):",
        "",
        "```",
        f"FROM ./{run}",
        "PARAMETER temperature 0.7",
        "```",
        "",
        "## Measured by llama.cpp",
        "",
        f"llama-cpp-python {table['llama_cpp_python']} (its vendored llama.cpp), CPU; perplexity on the same token "
        "windows as the PyTorch evaluation; speed: median of the runs, prefill of the prompt and greedy decode "
        "on the KV cache.",
        "",
        *markdown(table),
    ]
    if export:
        lines += ["", f"Tokenizer: {export['tokenizer']['kind']} ({export['tokenizer'].get('note', 'exact')})."]
        padded = [i for i, x in enumerate(export["layers"]) if x["zero_head"] or x["zero_channels"]]
        if padded:
            lines.append(
                f"Layers {padded} carry exact zero padding (a zero head in a layer 0 without attention, or zero MLP "
                "channels in a layer that keeps attention without MLP), which llama.cpp's deci needs."
            )
    atomic_write_text(out_md, "\n".join(lines) + "\n")

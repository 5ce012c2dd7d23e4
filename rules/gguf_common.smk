# Paths and input functions of rules/gguf.smk (GGUF for llama.cpp, issue 25).
GGUF_FLOAT = config["gguf"]["float"]
GGUF_TYPES = [GGUF_FLOAT] + config["gguf"]["quantize"]


def gguf_model(wildcards):
    """The HF folder a result's GGUF is written from: the prepared dense model or the export."""
    return MODEL if wildcards.result == "dense" else f"{RUN}/{wildcards.result}/pruned"


def gguf_pytorch_eval(wildcards):
    """PyTorch's evaluation of the same folder (the float GGUF's perplexity must match it)."""
    if wildcards.result == "dense":
        return run_path("dense/eval.json")
    return f"{RUN}/{wildcards.result}/eval/pruned.json"


def gguf_tables():
    """Every result's table: the dense model and each method at each target."""
    return [run_path("dense/gguf/table.json")] + [f"{RUN}/s{t}/{m}/gguf/table.json" for t, m in COMPARED]

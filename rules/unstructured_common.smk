# Paths, wildcards and input functions of rules/unstructured.smk (issue 14). Light imports only.
from tyr.methods import unstructured as tyr_unstructured
from tyr.methods.unstructured.patterns import Pattern

try:
    tyr_unstructured.check_config(config["unstructured"])
except tyr_unstructured.UnstructuredConfigError as e:
    raise WorkflowError(f"invalid configuration: {e}")


UNSTRUCTURED = f"{RUN}/{{usource}}+{{umethod}}{{upattern}}"  # e.g. results/run/s25/tyr+apt50


wildcard_constraints:
    usource=r"dense|s\d+(\.\d+)?/[a-z][a-z0-9_]*",
    umethod="|".join(tyr_unstructured.METHODS),
    upattern=r"\d+(\.\d+)?|\d+of\d+",


def unstructured_source(wildcards):
    """The dense prepared model, or the export of a structural result (s25/tyr -> s25/tyr/pruned)."""
    return MODEL if wildcards.usource == "dense" else f"{RUN}/{wildcards.usource}/pruned"


def unstructured_source_eval(wildcards):
    if wildcards.usource == "dense":
        return run_path("dense/eval.json")
    return f"{RUN}/{wildcards.usource}/eval/pruned.json"


def unstructured_layer_input(wildcards):
    """Layer 0 reads the embeddings (a structural export keeps the dense ones); layer l the
    output of the pruned layer l-1."""
    layer = int(wildcards.layer)
    if layer == 0:
        return EMBEDDINGS
    return f"{RUN}/{wildcards.usource}+{wildcards.umethod}{wildcards.upattern}/acts/out{layer - 1:03d}.zarr"


def unstructured_layers(wildcards):
    base = f"{RUN}/{wildcards.usource}+{wildcards.umethod}{wildcards.upattern}"
    return [f"{base}/layers/layer{layer:03d}.safetensors" for layer in range(N_LAYERS)]


def unstructured_summaries():
    u = config["unstructured"]
    return expand(f"{UNSTRUCTURED}/eval/summary.json", usource=u["sources"], umethod=u["methods"],
                  upattern=[Pattern.parse(p).tag for p in u["patterns"]])

# Unstructured and N:M pruning (issue 14): every projection of every layer, one job per layer,
# in order (layer l is calibrated on the outputs of the already pruned layer l-1), on the dense
# model or stacked after a structural result. Not part of `rule all`: `snakemake unstructured`
# builds the configured table, and any single result can be asked for by path, e.g.
#   results/<run>/dense+apt50/eval/summary.json   results/<run>/s25/tyr+sparsegpt2of4/pruned
include: "unstructured_common.smk"


localrules:
    unstructured_summary,
    unstructured,


rule unstructured_layer:
    input:
        model=unstructured_source,
        acts=unstructured_layer_input,
    output:
        layer=f"{UNSTRUCTURED}/layers/layer{{layer}}.safetensors",
        acts=temp(directory(f"{UNSTRUCTURED}/acts/out{{layer}}.zarr")),
    params:
        options={k: config["unstructured"][k] for k in ("blocksize", "damp", "batch_size")},  # not the lists
    log:
        run_path("logs/{usource}+{umethod}{upattern}/layer{layer}.log"),
    benchmark:
        run_path("benchmarks/{usource}+{umethod}{upattern}/layer{layer}.tsv")
    threads: THREADS
    run:
        step(steps.unstructured_layer, input, output, params, wildcards, threads, log, runtime=runtime("unstructured"))


rule unstructured_export:
    input:
        model=unstructured_source,
        layers=unstructured_layers,
    output:
        pruned=directory(f"{UNSTRUCTURED}/pruned"),
    log:
        run_path("logs/{usource}+{umethod}{upattern}/export.log"),
    benchmark:
        run_path("benchmarks/{usource}+{umethod}{upattern}/export.tsv")
    threads: THREADS
    run:
        step(steps.unstructured_export, input, output, params, wildcards, threads, log)


rule unstructured_evaluate:
    input:
        model=f"{UNSTRUCTURED}/pruned",
        tokens=TOKENS,
    output:
        eval=f"{UNSTRUCTURED}/eval/pruned.json",
    params:
        evaluate=evaluate_settings(),
        plan=EVAL_PLAN,
    log:
        run_path("logs/{usource}+{umethod}{upattern}/evaluate.log"),
    benchmark:
        run_path("benchmarks/{usource}+{umethod}{upattern}/evaluate.tsv")
    threads: THREADS
    run:
        step(steps.evaluate, input, output, params, wildcards, threads, log, runtime=runtime("evaluate"))


rule unstructured_summary:
    input:
        dense=run_path("dense/eval.json"),
        source=unstructured_source_eval,
        pruned=f"{UNSTRUCTURED}/eval/pruned.json",
        model=MODEL,
        tokens=TOKENS,
    output:
        summary=f"{UNSTRUCTURED}/eval/summary.json",
    log:
        run_path("logs/{usource}+{umethod}{upattern}/summary.log"),
    run:
        step(steps.unstructured_summary, input, output, params, wildcards, 1, log)


rule unstructured:
    input:
        summaries=unstructured_summaries(),
    output:
        table=run_path("unstructured/table.md"),
        json=run_path("unstructured/table.json"),
    log:
        run_path("logs/unstructured_table.log"),
    run:
        step(steps.unstructured_table, input, output, params, wildcards, 1, log)

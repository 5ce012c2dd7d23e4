# GGUF for llama.cpp (issue 25): every structural result (and the dense model) as a `deci` GGUF,
# quantized by llama.cpp, and checked by llama.cpp (perplexity on the evaluation plan's data,
# prefill/decode speed). Not part of the default run: `snakemake gguf` (or `make gguf`) builds them
# for every result; with `gguf.enabled: true` each eval/summary.json and the report carry the table.
# Any single file can be asked for by path, e.g. results/<run>/s50/tyr/gguf/model-Q8_0.gguf
include: "gguf_common.smk"


wildcard_constraints:
    result=r"dense|s\d+(\.\d+)?/[a-z][a-z0-9_]*",
    ftype=r"f32|f16|bf16",
    qtype=r"Q8_0|Q4_K_M|Q4_0",
    gtype=r"f32|f16|bf16|Q8_0|Q4_K_M|Q4_0",


localrules:
    gguf_table,
    gguf,


rule export_gguf:
    input:
        model=gguf_model,
    output:
        gguf=run_path("{result}/gguf/model-{ftype}.gguf"),
        manifest=run_path("{result}/gguf/model-{ftype}.json"),
    params:
        source=config["model"]["source"],
        pad=config["gguf"]["pad"],
        run=config["run"],
    log:
        run_path("logs/{result}/gguf/export-{ftype}.log"),
    benchmark:
        run_path("benchmarks/{result}/gguf/export-{ftype}.tsv")
    run:
        step(steps.export_gguf, input, output, params, wildcards, 1, log)


rule quantize_gguf:
    input:
        gguf=run_path(f"{{result}}/gguf/model-{GGUF_FLOAT}.gguf"),
    output:
        gguf=run_path("{result}/gguf/model-{qtype}.gguf"),
    log:
        run_path("logs/{result}/gguf/quantize-{qtype}.log"),
    benchmark:
        run_path("benchmarks/{result}/gguf/quantize-{qtype}.tsv")
    threads: THREADS
    run:
        step(steps.quantize_gguf, input, output, params, wildcards, threads, log, runtime={"threads": threads})


rule check_gguf:
    input:
        gguf=run_path("{result}/gguf/model-{gtype}.gguf"),
        model=gguf_model,
        tokens=TOKENS,
    output:
        check=run_path("{result}/gguf/check-{gtype}.json"),
    params:
        plan=EVAL_PLAN,
        evaluate={k: config["evaluate"][k] for k in ("seq_len", "max_windows")},
        speed=config["gguf"]["speed"],
        threads=THREADS,
    log:
        run_path("logs/{result}/gguf/check-{gtype}.log"),
    benchmark:
        run_path("benchmarks/{result}/gguf/check-{gtype}.tsv")
    threads: THREADS
    run:
        step(steps.check_gguf, input, output, params, wildcards, threads, log)


rule gguf_table:
    input:
        checks=expand(run_path("{{result}}/gguf/check-{gtype}.json"), gtype=GGUF_TYPES),
        dense_checks=expand(run_path("dense/gguf/check-{gtype}.json"), gtype=GGUF_TYPES),
        manifest=run_path(f"{{result}}/gguf/model-{GGUF_FLOAT}.json"),
        pytorch=gguf_pytorch_eval,
    output:
        table=run_path("{result}/gguf/table.json"),
        card=run_path("{result}/gguf/README.md"),
    log:
        run_path("logs/{result}/gguf/table.log"),
    run:
        step(steps.gguf_table, input, output, params, wildcards, 1, log)


rule gguf:
    input:
        gguf_tables(),

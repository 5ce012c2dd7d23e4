rule evaluate_dense:
    input:
        model=MODEL,
        tokens=TOKENS,
    output:
        eval=run_path("dense/eval.json"),
    params:
        evaluate=evaluate_settings(),
        plan=EVAL_PLAN,
    log:
        run_path("logs/evaluate_dense.log"),
    benchmark:
        run_path("benchmarks/evaluate_dense.tsv")
    threads: THREADS
    run:
        step(steps.evaluate, input, output, params, wildcards, threads, log, runtime=runtime("evaluate"))


rule evaluate_pruned:
    input:
        model=target_path("{method}/pruned"),
        tokens=TOKENS,
    output:
        eval=target_path("{method}/eval/pruned.json"),
    params:
        evaluate=evaluate_settings(),
        plan=EVAL_PLAN,
    log:
        run_path("logs/s{target}/{method}/evaluate.log"),
    benchmark:
        run_path("benchmarks/s{target}/{method}/evaluate.tsv")
    threads: THREADS
    run:
        step(steps.evaluate, input, output, params, wildcards, threads, log, runtime=runtime("evaluate"))


rule summarize:
    input:
        dense=run_path("dense/eval.json"),
        pruned=target_path("{method}/eval/pruned.json"),
        genome=method_genome,
        model=MODEL,
        tokens=TOKENS,
        gguf_table=gguf_summary_input,
    output:
        summary=target_path("{method}/eval/summary.json"),
    log:
        run_path("logs/s{target}/{method}/summarize.log"),
    run:
        step(steps.summarize, input, output, params, wildcards, 1, log)


rule report:
    input:
        summaries=expand(target_path("{method}/eval/summary.json"), target=TARGETS, method=config["methods"]),
        genomes=[genome_of(t, m) for t in TARGETS for m in config["methods"]],
        generations=search_logs(),
        shares=share_files(),
    output:
        markdown=report(run_path("report/report.md"), category="Report"),
        plots=report(directory(run_path("report/plots")), patterns=["{name}.png"], category="Plots"),
    log:
        run_path("logs/report.log"),
    run:
        step(steps.report, input, output, params, wildcards, 1, log)

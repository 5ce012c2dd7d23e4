rule export:
    input:
        model=MODEL,
        genome=target_path("{method}/genome.json"),
        tokens=TOKENS,
    output:
        pruned=directory(target_path("{method}/pruned")),
    params:
        plan=EVAL_PLAN,
    log:
        run_path("logs/s{target}/{method}/export.log"),
    benchmark:
        run_path("benchmarks/s{target}/{method}/export.tsv")
    threads: THREADS
    run:
        step("export", input, output, params, wildcards, threads, log)

rule export:
    input:
        model=MODEL,
        genome=target_path("{method}/genome.json"),
        tokens=TOKENS,
    output:
        pruned=directory(target_path("{method}/pruned")),
    params:
        prompts=config["evaluate"]["prompts"],
        new_tokens=config["evaluate"]["new_tokens"],
    log:
        run_path("logs/s{target}/{method}/export.log"),
    benchmark:
        run_path("benchmarks/s{target}/{method}/export.tsv")
    threads: THREADS
    run:
        step(steps.export, input, output, params, wildcards, threads, log)

rule export:
    input:
        model=MODEL,
        genome=target_path("{method}/genome.json"),
        tokens=TOKENS,
    output:
        pruned=directory(target_path("{method}/pruned")),
    wildcard_constraints:
        method=BASE_METHOD,  # a `+recover` folder is rules/recover.smk's
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

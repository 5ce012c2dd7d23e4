rule calibrate:
    input:
        model=MODEL,
    output:
        tokens=directory(TOKENS),
    params:
        data=config["data"],
    log:
        run_path("logs/calibrate.log"),
    benchmark:
        run_path("benchmarks/calibrate.tsv")
    threads: THREADS
    run:
        step(steps.calibrate, input, output, params, wildcards, threads, log, runtime=runtime("calibrate"))


rule embed:
    input:
        model=MODEL,
        tokens=TOKENS,
    output:
        embeddings=directory(EMBEDDINGS),
    log:
        run_path("logs/embed.log"),
    benchmark:
        run_path("benchmarks/embed.tsv")
    threads: THREADS
    run:
        step(steps.embed, input, output, params, wildcards, threads, log)

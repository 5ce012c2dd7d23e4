rule prepare_model:
    output:
        model=directory(MODEL),
    params:
        model=config["model"],
    log:
        run_path("logs/prepare_model.log"),
    benchmark:
        run_path("benchmarks/prepare_model.tsv")
    threads: THREADS
    run:
        step(steps.prepare_model, input, output, params, wildcards, threads, log)

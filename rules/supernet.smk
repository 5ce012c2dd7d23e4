# Supernet of iteration {iter}: levels per sublayer, then one job per layer, in order
# (layer l's calibration input is layer l-1's expected output), then the index.


rule levels:
    input:
        model=MODEL,
        previous=previous_best,
    output:
        levels=target_path("iter{iter}/levels.json"),
    params:
        levels=config["supernet"]["levels"],
        delta=config["supernet"]["delta"],
        mlp_group=config["supernet"]["channels_per_step"],
    log:
        run_path("logs/s{target}/iter{iter}/levels.log"),
    run:
        step(steps.levels, input, output, params, wildcards, 1, log)


rule supernet_layer:
    input:
        model=MODEL,
        levels=target_path("iter{iter}/levels.json"),
        acts=layer_input,
        embeddings=EMBEDDINGS,
    output:
        manifest=target_path("iter{iter}/supernet/layer{layer}/manifest.json"),
        acts=temp(directory(target_path("iter{iter}/acts/out{layer}.zarr"))),
    params:
        options=supernet_layer_options(),
    log:
        run_path("logs/s{target}/iter{iter}/supernet_layer{layer}.log"),
    benchmark:
        run_path("benchmarks/s{target}/iter{iter}/supernet_layer{layer}.tsv")
    threads: THREADS
    run:
        step(steps.supernet_layer, input, output, params, wildcards, threads, log, runtime=runtime("supernet"))


rule supernet:
    input:
        manifests=layer_manifests,
    output:
        supernet=target_path("iter{iter}/supernet/supernet.json"),
    log:
        run_path("logs/s{target}/iter{iter}/supernet.log"),
    run:
        step(steps.supernet, input, output, params, wildcards, 1, log)

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


# supernet.keep_levels: chosen (issue 24). Once the jobs that read iteration {iter}'s whole
# supernet are done (its search; in iteration 1 attention_share and the uniform genome), only the
# levels its genomes name stay (tyr.supernet.release): one iteration's supernet on disk at a time,
# a 70B peak of 0.68 TB instead of 1.74 TB (docs/cost-model.md, Disk). The key is in no params, and this
# rule adds jobs without changing any other: switching it reruns no finished job.
rule release_levels:
    input:
        genomes=released_genomes,
        readers=whole_supernet_readers,
    output:
        record=target_path("iter{iter}/supernet/released.json"),
    log:
        run_path("logs/s{target}/iter{iter}/release_levels.log"),
    priority: 10  # ahead of the next iteration's first layer, which starts filling the disk again
    run:
        step(steps.release_levels, input, output, params, wildcards, 1, log)

rule dense_topk:
    input:
        model=MODEL,
        tokens=TOKENS,
    output:
        topk=directory(TOPK),
    params:
        topk=config["search"]["topk"],
    log:
        run_path("logs/dense_topk.log"),
    benchmark:
        run_path("benchmarks/dense_topk.tsv")
    threads: THREADS
    run:
        step(steps.dense_topk, input, output, params, wildcards, threads, log, runtime=runtime("dense_topk"))


rule attention_share:
    input:
        supernet=target_path("iter1/supernet/supernet.json"),
        model=MODEL,
    output:
        share=target_path("share.json"),
    params:
        shares=config["search"]["attention_shares"],
        text=config["search"]["share_text"],
        sequences=config["search"]["share_sequences"],
        seq_len=config["data"]["seq_len"],
        seed=config["data"]["seed"],
        dtype=config["search"]["dtype"],
    log:
        run_path("logs/s{target}/attention_share.log"),
    benchmark:
        run_path("benchmarks/s{target}/attention_share.tsv")
    threads: THREADS
    run:
        step(steps.attention_share, input, output, params, wildcards, threads, log, runtime=runtime("attention_share"))


rule search:
    input:
        unpack(share_input),
        supernet=target_path("iter{iter}/supernet/supernet.json"),
        topk=TOPK,
        tokens=TOKENS,
        model=MODEL,
    output:
        best=target_path("iter{iter}/search/best.json"),
        generations=target_path("iter{iter}/search/generations.tsv"),
    params:
        search=search_settings,
    log:
        run_path("logs/s{target}/iter{iter}/search.log"),
    benchmark:
        run_path("benchmarks/s{target}/iter{iter}/search.tsv")
    threads: THREADS
    run:
        step(steps.search, input, output, params, wildcards, threads, log, runtime=runtime("search", threads))


rule select_tyr:
    input:
        bests=expand(target_path("iter{iter}/search/best.json"), iter=range(1, ITERATIONS + 1), allow_missing=True),
        topk=TOPK,
        tokens=TOKENS,
        model=MODEL,
    output:
        genome=target_path("tyr/genome.json"),
    params:
        dtype=config["search"]["dtype"],
    log:
        run_path("logs/s{target}/select_tyr.log"),
    benchmark:
        run_path("benchmarks/s{target}/select_tyr.tsv")
    threads: THREADS
    run:
        step(steps.select_tyr, input, output, params, wildcards, threads, log, runtime=runtime("select"))


rule genome_uniform:
    input:
        supernet=target_path("iter1/supernet/supernet.json"),
        model=MODEL,
    output:
        genome=target_path("uniform/genome.json"),
    log:
        run_path("logs/s{target}/genome_uniform.log"),
    run:
        step(steps.genome_uniform, input, output, params, wildcards, 1, log)

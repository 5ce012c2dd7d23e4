# Recovery (issue 28): optional, after export. `<method>+recover/pruned` is `<method>/pruned` trained
# toward the dense model (tyr.recover); evaluation, summary and the comparison table treat it as one
# more result. Its checkpoint lives beside the output (`<method>+recover/checkpoint/`, not an output:
# a failed or stopped job keeps it, and the rerun continues from it).


rule recover:
    input:
        pruned=target_path("{method}/pruned"),
        model=MODEL,
        tokens=TOKENS,
    output:
        pruned=directory(target_path("{method}+recover/pruned")),
    params:
        options=recover_options(),
        prompts=config["evaluate"]["prompts"],
        new_tokens=config["evaluate"]["new_tokens"],
    wildcard_constraints:
        method=BASE_METHOD,
    log:
        run_path("logs/s{target}/{method}+recover/recover.log"),
    benchmark:
        run_path("benchmarks/s{target}/{method}+recover/recover.tsv")
    threads: THREADS
    run:
        step(steps.recover, input, output, params, wildcards, threads, log, runtime=recover_runtime())

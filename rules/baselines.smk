# Baselines (issue 6): each writes a one-level supernet + genome from the same calibration
# tokens, then shares export, evaluation and the summary with Týr. The methods are the
# registry tyr.methods.registry; each job gets only its own `baselines.<method>` options.
from tyr.methods import registry as tyr_methods


rule baseline:
    input:
        model=MODEL,
        tokens=TOKENS,
    output:
        genome=target_path("{method}/genome.json"),
    params:
        options=lambda wildcards: config["baselines"][wildcards.method],
    wildcard_constraints:
        method="|".join(tyr_methods.baselines()),
    log:
        run_path("logs/s{target}/{method}/baseline.log"),
    benchmark:
        run_path("benchmarks/s{target}/{method}/baseline.tsv")
    threads: THREADS
    run:
        step(steps.baseline, input, output, params, wildcards, threads, log, runtime=runtime("baselines"))


rule compare:
    input:
        summaries=[run_path(f"s{t}/{m}/eval/summary.json") for t, m in COMPARED],
        dense=run_path("dense/eval.json"),
    output:
        table=f"results/compare/{config['run']}/table.md",
        json=f"results/compare/{config['run']}/table.json",
        plot=report(f"results/compare/{config['run']}/comparison.png", category="Comparison"),
    params:
        benchmarks=[method_benchmarks(t, m) for t, m in COMPARED],
    log:
        run_path("logs/compare.log"),
    run:
        step(steps.compare, input, output, params, wildcards, 1, log)

"""Entry points of the workflow's rules: map a rule's input/output/params to a tyr call.

One small function per rule, named after it. They hold no algorithm: each only picks
paths and options and calls the module that implements the stage.
"""

from __future__ import annotations

import os

from tyr.workflow import config as tyrconf


def _spec(input) -> str:
    return os.path.join(input.model, "spec.json")


def prepare_model(input, output, params, wildcards):
    from tyr.model.prepare import prepare_model

    m = params.model
    prepare_model(m["source"], output.model, trust_remote_code=m["trust_remote_code"], dtype=m["dtype"])


def calibrate(input, output, params, wildcards, runtime):
    from tyr.calib.calibrate import calibrate

    d = params.data
    calibrate(
        input.model,
        output.tokens,
        source=d["source"],
        seq_len=d["seq_len"],
        n_prune=d["prune_sequences"],
        n_fitness=d["fitness_sequences"],
        n_selection=d["selection_sequences"],
        n_heldout=d["heldout_sequences"],
        seed=d["seed"],
        temperature=d["temperature"],
        text_field=d["text_field"],
        device=runtime["device"],
    )


def embed(input, output, params, wildcards):
    from tyr.calib.calibrate import embed

    embed(input.model, input.tokens, output.embeddings)


def levels(input, output, params, wildcards):
    from tyr.supernet.levels import write_levels

    write_levels(
        _spec(input),
        output.levels,
        target_sparsity=tyrconf.tag_target(wildcards.target),
        delta=params.delta,
        n_levels=params.levels,
        iteration=int(wildcards.iter),
        previous_genome=input.previous[0] if input.previous else None,
        mlp_group=params.mlp_group,
    )


def supernet_layer(input, output, params, wildcards, runtime):
    from tyr.supernet.build import build_layer

    build_layer(
        input.model,
        _spec(input),
        input.levels,
        input.acts,
        int(wildcards.layer),
        os.path.dirname(output.manifest),
        output.acts,
        iteration=int(wildcards.iter),
        embeddings_zarr=input.embeddings,
        device=runtime["device"],
        **params.options,
    )


def supernet(input, output, params, wildcards):
    from tyr.supernet.format import assemble

    assemble(list(input.manifests), output.supernet)


def release_levels(input, output, params, wildcards):
    from tyr.supernet.release import release

    release(
        os.path.join(os.path.dirname(output.record), "supernet.json"),
        list(input.genomes),
        output.record,
        with_start=int(wildcards.iter) == 1,  # the only start genome the final choice scores
    )


def dense_topk(input, output, params, wildcards, runtime):
    from tyr.search.reference import dense_topk

    dense_topk(input.model, input.tokens, output.topk, k=params.topk, device=runtime["device"])


def attention_share(input, output, params, wildcards, runtime):
    from tyr.search.split import choose_share

    choose_share(
        input.supernet,
        input.model,
        _spec(input),
        output.share,
        target_sparsity=tyrconf.tag_target(wildcards.target),
        shares=params.shares,
        text=params.text,
        sequences=params.sequences,
        seq_len=params.seq_len,
        seed=params.seed,
        dtype=params.dtype,
        device=runtime["device"],
    )


def _attention_kept(s: dict, input):
    """The search's attention share: a number, None (even split), or auto's measured choice."""
    if s["attention_kept"] != "auto":
        return s["attention_kept"]
    from tyr.core.io import read_json

    return read_json(input.share)["chosen"]


def search(input, output, params, wildcards, runtime):
    from tyr.search import launch
    from tyr.search.evolve import run_search

    s, i = params.search, int(wildcards.iter)
    kwargs = dict(
        supernet_json=input.supernet,
        topk_zarr=input.topk,
        tokens_zarr=input.tokens,
        model_dir=input.model,
        spec_json=_spec(input),
        out_dir=os.path.dirname(output.best),
        target_sparsity=tyrconf.tag_target(wildcards.target),
        iteration=i,
        offspring=s["offspring"],
        generations=s["generations"],
        stages=s["stages"],
        seed=s["seed"] + 1000 * i,
        max_swaps=s["max_swaps"],
        trade_attn_mlp=s["trade_attn_mlp"],
        dtype=s["dtype"],
        device=runtime["device"],
        track_sequences=s["track_sequences"],
        fixed_last_stage=s["fixed_last_stage"],
        attention_kept=_attention_kept(s, input),
        progress=False,  # its log lines already reach the job's log (tyr.workflow.runner); no copy on stderr
    )
    if runtime["processes"] > 1:
        launch.launch(kwargs, runtime["processes"], runtime["threads"], os.path.dirname(output.best))
    else:
        run_search(**kwargs)


def select_tyr(input, output, params, wildcards, runtime):
    from tyr.search.select import select_genome

    select_genome(
        list(input.bests),
        input.model,
        input.topk,
        input.tokens,
        output.genome,
        dtype=params.dtype,
        device=runtime["device"],
    )


def genome_uniform(input, output, params, wildcards):
    from tyr.search.budget import uniform_genome

    uniform_genome(input.supernet, _spec(input), output.genome, target_sparsity=tyrconf.tag_target(wildcards.target))


def export(input, output, params, wildcards):
    from tyr.export.hf import export

    export(
        input.model,
        _spec(input),
        input.genome,
        output.pruned,
        method=wildcards.method,
        card={"tokens_zarr": input.tokens, "prompts": params.prompts, "new_tokens": params.new_tokens},
    )


def recover(input, output, params, wildcards, runtime):
    from tyr.recover.train import recover

    state = os.path.join(os.path.dirname(output.pruned), "checkpoint")  # not an output: a stopped job keeps it
    recover(
        input.pruned,
        input.model,
        input.tokens,
        output.pruned,
        state,
        device=runtime["device"],
        card={"prompts": params.prompts, "new_tokens": params.new_tokens},
        checkpoint_every=runtime["checkpoint_every"],
        watch_every=runtime["watch_every"],
        **params.options,
    )


def evaluate(input, output, params, wildcards, runtime):
    from tyr.evaluate.measure import evaluate_model

    e = params.evaluate
    evaluate_model(
        input.model,
        output.eval,
        plan=params.plan,
        tokens_zarr=input.tokens,
        seq_len=e["seq_len"],
        max_windows=e["max_windows"],
        limit=e["zeroshot_limit"],
        speed=e["speed"],
        prompts=e["prompts"],
        new_tokens=e["new_tokens"],
        device=runtime["device"],
    )


def summarize(input, output, params, wildcards):
    from tyr.evaluate.summary import summarize

    gguf = list(input.gguf_table)  # [] unless gguf.enabled (rules/gguf.smk)
    summarize(
        input.dense,
        input.pruned,
        _spec(input),
        input.genome,
        output.summary,
        tokens_zarr=input.tokens,
        gguf_json=gguf[0] if gguf else None,
    )


def report(input, output, params, wildcards):
    from tyr.evaluate.report import write_report

    write_report(
        list(input.summaries),
        output.markdown,
        genomes=list(input.genomes),
        generations=list(input.generations),
        shares=list(input.shares),
        plots_dir=output.plots,
    )


def baseline(input, output, params, wildcards, runtime):
    from tyr.methods import baselines

    baselines.run(
        wildcards.method,
        input.model,
        input.tokens,
        os.path.dirname(output.genome),
        target_sparsity=tyrconf.tag_target(wildcards.target),
        device=runtime["device"],
        **params.options,
    )


def compare(input, output, params, wildcards):
    from tyr.evaluate.compare import compare_table

    compare_table(list(input.summaries), params.benchmarks, input.dense, output.table, output.json, output.plot)


# ---- unstructured and N:M pruning (issue 14): tyr.methods.unstructured ------------------------------


def unstructured_layer(input, output, params, wildcards, runtime):
    from tyr.methods.unstructured.layer import prune_layer

    u = params.options
    prune_layer(
        input.model,
        input.acts,
        int(wildcards.layer),
        output.layer,
        output.acts,
        method=wildcards.umethod,
        pattern=wildcards.upattern,
        blocksize=u["blocksize"],
        damp=u["damp"],
        batch_size=u["batch_size"],
        device=runtime["device"],
    )


def unstructured_export(input, output, params, wildcards):
    from tyr.methods.unstructured.export import export

    export(
        input.model,
        list(input.layers),
        output.pruned,
        method=wildcards.umethod,
        pattern=wildcards.upattern,
        source=wildcards.usource,
    )


def unstructured_summary(input, output, params, wildcards):
    from tyr.methods.unstructured.summary import summarize

    summarize(input.dense, input.source, input.pruned, _spec(input), output.summary, tokens_zarr=input.tokens)


def unstructured_table(input, output, params, wildcards):
    from tyr.methods.unstructured.summary import table

    table(list(input.summaries), output.table, output.json)


# ---- GGUF for llama.cpp (issue 25): tyr.export.gguf, tyr.export.quantize, tyr.evaluate.llamacpp -----


def export_gguf(input, output, params, wildcards):
    from tyr.core.io import write_json
    from tyr.export.gguf import export_gguf
    from tyr.model.prepare import resolve_source

    source = resolve_source(params.source)  # a GGUF source lends its tokenizer keys verbatim
    tokenizer = str(source) if source.kind == "gguf" else input.model
    record = export_gguf(
        input.model,
        output.gguf,
        tokenizer_source=tokenizer,
        ftype=wildcards.ftype,
        pad=params.pad,
        name=f"{params.run}/{wildcards.result}",
    )
    write_json(output.manifest, record)


def quantize_gguf(input, output, params, wildcards, runtime):
    from tyr.export.quantize import quantize

    quantize(input.gguf, output.gguf, wildcards.qtype, threads=runtime["threads"])


def check_gguf(input, output, params, wildcards):
    from tyr.core.io import write_json
    from tyr.evaluate.llamacpp import check

    e = params.evaluate
    result = check(
        input.gguf,
        model_dir=input.model,
        plan=params.plan,
        tokens_zarr=input.tokens,
        seq_len=e["seq_len"],
        max_windows=e["max_windows"],
        speed_options=params.speed,
        threads=params.threads,
    )
    write_json(output.check, result)


def gguf_table(input, output, params, wildcards):
    from tyr.evaluate.gguf_table import gguf_table
    from tyr.export.gguf_card import write_card

    table = gguf_table(
        list(input.checks),
        list(input.dense_checks),
        input.pytorch,
        output.table,
        result=wildcards.result,
        export=input.manifest,
    )
    write_card(table, output.card)

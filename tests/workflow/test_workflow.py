"""The whole workflow on a tiny random model: it runs, it resumes after kill -9, it reuses work.

These run the real Snakefile with the `tiny` preset in a temporary working directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from helpers.data import mount_as_root
from helpers.runs import (
    ROOT,
    RUN,
    artifacts,
    digest,
    planned_rules,
    prepare,
    rule_counts,
    run,
    snakemake_cmd,
    workflow_env,
)
from tyr.testing import incomplete_outputs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted tiny run, shared by the tests below."""
    from tyr.testing import tiny_hf_model, tiny_tokenizer

    base = tmp_path_factory.mktemp("workflow")
    model_dir = base / "tiny-llama"
    model = tiny_hf_model("llama")
    model.save_pretrained(model_dir)
    tiny_tokenizer(model.config.vocab_size).save_pretrained(model_dir)
    run_dir = prepare(base / "ref", model_dir)
    t0 = time.perf_counter()
    run(base / "ref")
    return {"model_dir": model_dir, "run_dir": run_dir, "base": base, "seconds": time.perf_counter() - t0}


def test_full_run_produces_models_and_summaries(reference):
    run_dir = reference["run_dir"]
    for method in ("tyr", "uniform"):
        summary = json.loads((run_dir / "s50" / method / "eval" / "summary.json").read_text())
        assert abs(summary["sparsity"] - 0.5) < 0.1
        assert (run_dir / "s50" / method / "pruned" / "config.json").exists()
    assert (run_dir / "report" / "report.md").exists()
    # The attention/MLP split was measured (the default) and the report shows it.
    share = json.loads((run_dir / "s50" / "share.json").read_text())
    assert share["candidates"][0]["attention_kept"] is None and share["chosen"] in [
        c["attention_kept"] for c in share["candidates"]
    ]
    assert "## Attention/MLP split: Týr @ 50%" in (run_dir / "report" / "report.md").read_text()
    # Two coarse-to-fine iterations in the tiny preset, each with its own levels and search.
    for i in (1, 2):
        assert (run_dir / "s50" / f"iter{i}" / "search" / "best.json").exists()
    # Týr's genome was chosen on the selection split among the start and both iterations.
    genome = json.loads((run_dir / "s50" / "tyr" / "genome.json").read_text())
    assert set(genome["selection"]["candidates"]) == {"start", "iter1", "iter2"}
    assert genome["chosen"] in {"start", "iter1", "iter2"}


def test_an_offline_run_names_the_data_set_of_every_figure(reference):
    """The default evaluate section offline with no $TYR_DATA_DIR, as a newcomer's first run: the
    held-out perplexity under its name, every skip with its reason, in summaries, cards and report."""
    run_dir = reference["run_dir"]
    for method in ("tyr", "uniform"):
        summary = json.loads((run_dir / "s50" / method / "eval" / "summary.json").read_text())
        assert set(summary["perplexity"]) == {"heldout"}, summary["perplexity"]
        assert "held-out split" in summary["perplexity"]["heldout"]["label"]
        assert {"wikitext2", "zeroshot:arc_easy"} <= set(summary["skipped"]), summary["skipped"]
        assert "zeroshot" not in summary and summary["continuations"] and summary["speed"]["decode_speedup"] > 0
        card = (run_dir / "s50" / method / "pruned" / "README.md").read_text()
        assert "greedy continuations" in card
    report = (run_dir / "report" / "report.md").read_text()
    assert "ppl heldout" in report and "**skipped**" in report and "greedy continuations" in report


def test_rerun_does_nothing(reference):
    before = artifacts(reference["run_dir"])
    out = run(reference["run_dir"].parents[1], "-n")
    assert "Nothing to be done" in out.stdout + out.stderr
    assert artifacts(reference["run_dir"]) == before


# A supernet layer job (Snakemake's incomplete markers, temporary activations) and a search inside
# the workflow (its checkpoint). A later iteration's layer adds nothing the first kill does not
# cover; search resume is also checked bit for bit in process (tests/search/test_evolve.py) and
# at 20 random points by bench/kill_trials.py.
@pytest.mark.parametrize("marker", ["iter1/supernet/layer001/manifest.json", "iter1/search/state.json"])
def test_kill_and_resume_is_bit_identical(reference, tmp_path, marker):
    """kill -9 the whole run when `marker` appears; the same command finishes it without
    redoing finished artifacts and yields the same genome and model as an uninterrupted run."""
    workdir = tmp_path / "killed"
    run_dir = prepare(workdir, reference["model_dir"])
    env = workflow_env()
    proc = subprocess.Popen(
        snakemake_cmd(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "s50" / marker).exists():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before the kill point was reached"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = artifacts(run_dir, incomplete_outputs(workdir))
    run(workdir)
    after = artifacts(run_dir)
    for name, mtime in done_before.items():
        if name in after:
            assert after[name] == mtime, f"{name} was recomputed"
    ref = reference["run_dir"]
    for rel in ("s50/tyr/genome.json", "s50/uniform/genome.json"):
        assert json.loads((run_dir / rel).read_text())["layers"] == json.loads((ref / rel).read_text())["layers"]
    for method in ("tyr", "uniform"):
        ours = sorted((run_dir / "s50" / method / "pruned").glob("*.safetensors"))
        theirs = sorted((ref / "s50" / method / "pruned").glob("*.safetensors"))
        assert [digest(p) for p in ours] == [digest(p) for p in theirs]


def test_settings_rerun_only_what_they_change(reference, tmp_path):
    """Each rule gets only the settings that change its output: a third iteration plans only its
    own jobs and what depends on them; a new generation count reruns the searches, and of the
    supernet only iteration 2's (its levels are centred on iteration 1's new result), never the
    dense top-k, the calibration or iteration 1's supernet."""
    workdir = reference["run_dir"].parents[1]
    (tmp_path / "iters.yaml").write_text("supernet: {iterations: 3}\n")
    planned = planned_rules(workdir, tmp_path / "iters.yaml")
    assert planned.get("supernet_layer") == 3 and planned.get("search") == 1 and planned.get("levels") == 1
    assert not {"prepare_model", "calibrate", "embed", "dense_topk", "genome_uniform"} & set(planned)
    assert {"select_tyr", "export", "evaluate_pruned"} <= set(planned)
    (tmp_path / "gens.yaml").write_text("search: {generations: 4}\n")
    planned = planned_rules(workdir, tmp_path / "gens.yaml")
    assert planned.get("search") == 2 and not {"dense_topk", "calibrate", "embed"} & set(planned)
    assert planned.get("levels") == 1 and planned.get("supernet_layer") == 3  # iteration 2 only


def test_the_gguf_target_plans_every_result_of_the_table_and_reuses_the_finished_run(reference):
    """`snakemake gguf` on a finished run: the dense model and every (target, method) of the
    comparison table, each written once, quantized to each type and checked in llama.cpp per
    file; no pruning job and no PyTorch evaluation (the table reads the finished ones)."""
    workdir = reference["run_dir"].parents[1]
    planned = planned_rules(workdir, target=("gguf",))
    results, types = 3, 3  # dense, s50/tyr, s50/uniform; f32 + Q8_0 + Q4_K_M (config.yaml gguf)
    expected = {"export_gguf": results, "quantize_gguf": results * (types - 1), "check_gguf": results * types}
    assert planned == {**expected, "gguf_table": results, "gguf": 1, "total": 1 + results * (2 * types + 1)}, planned


def test_attention_share_settings_rerun_the_split_and_the_searches_only(reference, tmp_path):
    """The share candidates act through share.json: they rerun the attention_share step and what
    follows it (searches, iteration 2's supernet), never iteration 1's supernet, which the step
    reads. The even split (attention_kept: null) plans no attention_share job."""
    workdir = reference["run_dir"].parents[1]
    (tmp_path / "shares.yaml").write_text("search: {attention_shares: [0.9]}\n")
    planned = planned_rules(workdir, tmp_path / "shares.yaml")
    assert planned.get("attention_share") == 1 and planned.get("search") == 2
    assert planned.get("supernet_layer") == 3 and planned.get("levels") == 1  # iteration 2 only
    assert not {"calibrate", "dense_topk", "genome_uniform"} & set(planned)
    (tmp_path / "even.yaml").write_text("search: {attention_kept: null}\n")
    planned = planned_rules(workdir, tmp_path / "even.yaml")
    assert "attention_share" not in planned and planned.get("search") == 2


def test_new_target_reuses_model_and_calibration(reference, tmp_path):
    workdir = reference["run_dir"].parents[1]
    (tmp_path / "targets.yaml").write_text("target_sparsity: [0.5, 0.25]\n")
    planned = planned_rules(workdir, tmp_path / "targets.yaml")
    assert "prepare_model" not in planned and "calibrate" not in planned and "embed" not in planned
    # only the new target's work: 3 layers x 2 iterations of supernet jobs, one search per iteration
    assert planned["supernet_layer"] == 6 and planned["search"] == 2 and planned["attention_share"] == 1


def test_where_a_step_runs_reruns_nothing(reference, tmp_path):
    """search.processes gives the same genome by design, and a device or a thread count says
    where a step runs, not what it writes: none of them plans a finished job (tyr.workflow.runplan)."""
    workdir = reference["run_dir"].parents[1]
    stages = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["devices"]
    where = {"search": {"processes": 2}, "threads": 1, "devices": {stage: "cpu" for stage in stages}}
    (tmp_path / "where.yaml").write_text(yaml.safe_dump(where))
    assert planned_rules(workdir, tmp_path / "where.yaml") == {}


def test_new_evaluation_data_reruns_the_evaluations_not_the_exports(reference, tmp_path):
    """$TYR_DATA_DIR set after an offline run (here a folder with a WikiText-2 test file of its
    own): the plan says what changed before any job, and exactly the evaluations, summaries and
    the report are planned; no export of weights."""
    workdir = reference["run_dir"].parents[1]
    (tmp_path / "wikitext-2").mkdir()
    text = " = Valkyria Chronicles = \n The game began development in 2010 .\n"
    (tmp_path / "wikitext-2" / "test.txt").write_text(text)
    out = run(workdir, "-n", "--quiet", "rules", env={"TYR_DATA_DIR": str(tmp_path)})
    assert "plan: evaluation.perplexity.wikitext2" in out.stderr, out.stderr[-3000:]
    planned = rule_counts(out.stdout + out.stderr)
    assert planned == {"all": 1, "evaluate_dense": 1, "evaluate_pruned": 2, "summarize": 2, "report": 1, "total": 7}, (
        planned
    )


def test_the_plan_is_frozen_for_the_jobs(reference):
    """plan.json holds what the main process resolved: the model's source and depth, and the
    evaluation plan the summaries report; the summaries carry the calibration digest."""
    from tyr.calib.stores import calibration_digest
    from tyr.workflow import runplan

    run_dir = reference["run_dir"]
    plan = runplan.load(run_dir)
    assert plan["model"] == {"source": str(reference["model_dir"]), "num_layers": 3}
    summary = json.loads((run_dir / "s50" / "tyr" / "eval" / "summary.json").read_text())
    assert set(plan["evaluation"]["perplexity"]) == set(summary["perplexity"]) == {"heldout"}
    assert summary["calibration_digest"] == calibration_digest(run_dir / "calib" / "tokens.zarr")
    assert summary["calibration_digest"] in (run_dir / "report" / "report.md").read_text()
    assert summary["calibration_digest"] in (run_dir / "s50" / "tyr" / "pruned" / "README.md").read_text()


def test_a_folder_of_another_model_is_refused_at_parse_time(reference, tmp_path):
    """model.source changed under the same run name: refused before any job, naming the folder
    and both sources, never unrolled for the old model's depth (tests/workflow/test_runplan.py:
    a folder without plan.json, by the depth of its prepared model)."""
    from tyr.testing import tiny_hf_model

    other = tmp_path / "other-llama"
    tiny_hf_model("llama", num_hidden_layers=4).save_pretrained(other)
    workdir = reference["run_dir"].parents[1]
    (tmp_path / "other.yaml").write_text(f"model: {{source: {other}}}\n")
    out = run(
        workdir,
        "-n",
        "--configfile",
        str(ROOT / "config/presets/tiny.yaml"),
        str(workdir / "test.yaml"),
        str(tmp_path / "other.yaml"),
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert f"results/{RUN} holds a run of model '{reference['model_dir']}'" in text, text[-2000:]
    assert f"model.source is '{other}'" in text and "remove results/" in text


def test_second_run_in_same_directory_is_refused(reference, tmp_path):
    """The kernel lock that replaces Snakemake's lock files still keeps two runs apart, while
    read-only commands (dry run, lint) work during a run, as with Snakemake's own locks."""
    import fcntl

    workdir = reference["run_dir"].parents[1]
    with open(workdir / ".snakemake" / f"tyr-{RUN}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        out = run(workdir, "--forcerun", "report", check=False)
        for read_only in (["-n", "--forcerun", "report"], ["--lint"]):
            assert run(workdir, *read_only, check=False).returncode == 0, read_only
        # Another results folder is another run: it may go on beside this one.
        (tmp_path / "other.yaml").write_text("run: other\n")
        other = run(
            workdir,
            "results/other/model",
            "--configfile",
            str(ROOT / "config" / "presets" / "tiny.yaml"),
            str(workdir / "test.yaml"),
            str(tmp_path / "other.yaml"),
            check=False,
        )
        assert other.returncode == 0 and (workdir / "results" / "other" / "model" / "spec.json").exists()
    assert out.returncode != 0
    assert f"another Snakemake run of results/{RUN} is active" in out.stdout + out.stderr


def test_validate_remove_rerun_restores_the_same_result(reference, tmp_path):
    """A flipped byte in a level file and in the exported model: `tyr.workflow.validate --remove` finds
    both by their content hashes; Snakemake, given the removed artifacts as targets, restores
    them byte for byte, and the run then ends with the uninterrupted run's genome and weights."""
    import shutil

    import torch

    from tyr.workflow import validate

    workdir = tmp_path / "copy"
    shutil.copytree(reference["run_dir"].parents[1], workdir, symlinks=True)
    run_dir = workdir / "results" / RUN
    level = sorted((run_dir / "s50" / "iter1" / "supernet" / "layer001" / "mlp").glob("*.safetensors"))[1]
    weights = run_dir / "s50" / "uniform" / "pruned" / "model.safetensors"
    for path in (level, weights):
        data = bytearray(path.read_bytes())
        data[-5] ^= 0x40
        path.write_bytes(bytes(data))
    assert set(validate.problems(run_dir)) == {level, weights.parent}
    assert validate.main([str(run_dir), "--remove"]) == 0
    manifest = level.parents[1] / "manifest.json"
    assert not manifest.exists() and not weights.parent.exists()
    run(workdir, "--", str(manifest.relative_to(workdir)), str(weights.parent.relative_to(workdir)))
    assert validate.problems(run_dir) == {}
    from tyr.supernet.format import load_level

    # Restored exactly (the safetensors header's metadata order varies between processes).
    (got, meta), (want, ref_meta) = load_level(level), load_level(reference["run_dir"] / level.relative_to(run_dir))
    assert meta == ref_meta and got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    run(workdir)
    ref = reference["run_dir"]
    for method in ("tyr", "uniform"):
        rel = f"s50/{method}/genome.json"
        assert json.loads((run_dir / rel).read_text())["layers"] == json.loads((ref / rel).read_text())["layers"]
        assert digest(run_dir / "s50" / method / "pruned" / "model.safetensors") == digest(
            ref / "s50" / method / "pruned" / "model.safetensors"
        )


def test_compare_counts_exactly_each_methods_own_jobs(reference, tmp_path):
    """`snakemake compare` on the finished run: the rule hands the table the benchmark files of
    each method's own jobs (rules/common.smk), so Týr's cost is its 2 x 3 supernet layers, the
    attention/MLP split, 2 searches and the selection, and uniform's is iteration 1's layers."""
    import csv
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(reference["run_dir"].parents[1], workdir, symlinks=True)
    run(workdir, "--", "compare")
    table = json.loads((workdir / "results" / "compare" / RUN / "table.json").read_text())
    bench = workdir / "results" / RUN / "benchmarks" / "s50"

    def seconds(files):
        assert files and all(f.is_file() for f in files), files
        return sum(float(next(csv.DictReader(open(f), delimiter="\t"))["s"]) for f in files)

    def layers(it):
        return [bench / f"iter{it}" / f"supernet_layer{layer:03d}.tsv" for layer in range(3)]

    want = {
        "tyr": seconds(
            layers(1)
            + layers(2)
            + [
                bench / "iter1" / "search.tsv",
                bench / "iter2" / "search.tsv",
                bench / "attention_share.tsv",
                bench / "select_tyr.tsv",
            ]
        ),
        "uniform": seconds(layers(1)),
    }
    got = {r["method"]: r["seconds"] for r in table["rows"]}
    assert got == pytest.approx(want), (got, want)


def test_read_only_results_folder_is_refused_by_name(reference, tmp_path):
    """A finished run on a read-only mount: read-only commands work, a run with jobs to do stops
    before any job with a message naming the folder, and nothing there changes."""
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(reference["run_dir"].parents[1], workdir, symlinks=True)
    run_dir = workdir / "results" / RUN
    mount_as_root("--bind", str(run_dir), str(run_dir), what="a bind mount")
    try:
        mount_as_root("-o", "remount,ro,bind", str(run_dir), what="remounting read-only")
        before = artifacts(run_dir)
        dry = run(workdir, "-n")
        assert "Nothing to be done" in dry.stdout + dry.stderr
        # Rewriting a finished output: Snakemake itself refuses, naming the files.
        out = run(workdir, "--forcerun", "report", check=False)
        text = out.stdout + out.stderr
        assert out.returncode != 0 and "Write-protected output files for rule report" in text, text[-3000:]
        # New outputs (a new target): tyr refuses before any job, naming the folder.
        (tmp_path / "targets.yaml").write_text("target_sparsity: [0.5, 0.25]\n")
        out = run(
            workdir,
            "--configfile",
            str(ROOT / "config" / "presets" / "tiny.yaml"),
            str(workdir / "test.yaml"),
            str(tmp_path / "targets.yaml"),
            "--",
            f"results/{RUN}/s25/iter1/levels.json",
            check=False,
        )
        text = out.stdout + out.stderr
        assert out.returncode != 0 and f"results/{RUN} is not writable (Read-only file system)" in text, text[-3000:]
        assert "Error in rule" not in text  # stopped before any job started
        assert artifacts(run_dir) == before
    finally:
        subprocess.run(["umount", str(run_dir)], check=True)


def test_keep_levels_chosen_releases_read_supernets_and_reruns_nothing(reference, tmp_path):
    """`supernet.keep_levels: chosen` on the finished run plans only the release jobs; each
    iteration then keeps exactly the levels its genomes name (iteration 1: its best, its start and
    the uniform genome) and no finished artifact is redone. The final choice and its export, forced
    again, read what is left and give the reference's genome and model. Switching the key
    either way then plans nothing; an added iteration rebuilds no released supernet, a longer last
    iteration rebuilds its own first (its search reads all of it: docs/cost-model.md, Disk)."""
    import shutil

    import yaml

    ref = reference["run_dir"]
    workdir = tmp_path / "copy"
    shutil.copytree(ref.parents[1], workdir, symlinks=True)
    run_dir = workdir / "results" / RUN
    cfg = yaml.safe_load((workdir / "test.yaml").read_text())
    (workdir / "test.yaml").write_text(yaml.safe_dump({**cfg, "supernet": {"keep_levels": "chosen"}}))
    assert planned_rules(workdir) == {"release_levels": 2, "all": 1, "total": 3}

    def named(i, genomes, with_start):
        index = json.loads((ref / f"s50/iter{i}/supernet/supernet.json").read_text())
        files = {(m["layer"], s, v["kept"]): v["file"] for m in index["layers"] for s in ("attn", "mlp") for v in m[s]}
        docs = [json.loads((ref / "s50" / g).read_text()) for g in genomes]
        records = [d["layers"] for d in docs] + ([docs[0]["start"]["layers"]] if with_start else [])
        return {
            f"s50/iter{i}/supernet/{files[(l, s, layer[s])]}"
            for r in records
            for l, layer in enumerate(r)
            for s in layer
        }

    before = artifacts(run_dir)
    run(workdir)
    for i, genomes in ((1, ["iter1/search/best.json", "uniform/genome.json"]), (2, ["iter2/search/best.json"])):
        sn = run_dir / f"s50/iter{i}/supernet"
        left = {str(p.relative_to(run_dir)) for p in sn.glob("layer*/*/*.safetensors")}
        built = list((ref / sn.relative_to(run_dir)).glob("layer*/*/*.safetensors"))
        assert left == named(i, genomes, with_start=i == 1) and len(left) < len(built)
        assert not (sn / "supernet.json").exists() and not list(sn.glob("layer*/manifest.json"))
    after = artifacts(run_dir)
    assert after and all(after[name] == before[name] for name in after), "a finished artifact was redone"
    # The final choice reads both released iterations, its export the chosen one (the genome's
    # workflow-relative supernet path, resolved to kept.json): the reference's scores and weights.
    run(workdir, "--forcerun", "select_tyr")
    ours, theirs = (json.loads((d / "s50/tyr/genome.json").read_text()) for d in (run_dir, ref))
    assert ours["layers"] == theirs["layers"] and ours["selection"] == theirs["selection"]
    assert digest(run_dir / "s50/tyr/pruned/model.safetensors") == digest(ref / "s50/tyr/pruned/model.safetensors")
    (tmp_path / "all.yaml").write_text("supernet: {keep_levels: all}\n")
    assert planned_rules(workdir) == {} and planned_rules(workdir, tmp_path / "all.yaml") == {}
    (tmp_path / "iters.yaml").write_text("supernet: {iterations: 3}\n")
    planned = planned_rules(workdir, tmp_path / "iters.yaml")
    assert planned.get("supernet_layer") == 3 and planned.get("release_levels") == 1 and planned.get("search") == 1
    (tmp_path / "longer.yaml").write_text("search: {generations: [3, 6]}\n")
    planned = planned_rules(workdir, tmp_path / "longer.yaml")
    assert planned.get("supernet_layer") == 3 and planned.get("supernet") == 1 and planned.get("search") == 1
    assert not {"levels", "attention_share", "genome_uniform"} & set(planned)


def test_a_recovered_result_reuses_the_finished_run_and_joins_the_table(reference, tmp_path):
    """`uniform+recover` in methods on a finished run: one recover job on uniform's export, its
    evaluation and summary, the report and the table; nothing of the pruning. Its checkpoint
    and watch cadences are not params (a rerun with another plans nothing); the summary carries the
    recovery's record and the table's cost counts uniform's jobs plus the recovery."""
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(reference["run_dir"].parents[1], workdir, symlinks=True)
    recover = {"methods": ["tyr", "uniform", "uniform+recover"],
               "recover": {"steps": 3, "batch": 2, "checkpoint_every": 2}}  # fmt: skip
    (tmp_path / "recover.yaml").write_text(yaml.safe_dump(recover))
    planned = planned_rules(workdir, tmp_path / "recover.yaml")
    assert planned == {"recover": 1, "evaluate_pruned": 1, "summarize": 1, "report": 1, "all": 1, "total": 5}, planned
    tiny = ROOT / "config" / "presets" / "tiny.yaml"
    run(workdir, "--configfile", str(tiny), str(workdir / "test.yaml"), str(tmp_path / "recover.yaml"), "--", "all",
        "compare")  # fmt: skip
    s50 = workdir / "results" / RUN / "s50"
    summary = json.loads((s50 / "uniform+recover" / "eval" / "summary.json").read_text())
    assert summary["method"] == "uniform+recover" and summary["recovery"]["steps"] == 3
    assert summary["sparsity"] == json.loads((s50 / "uniform" / "eval" / "summary.json").read_text())["sparsity"]
    assert (s50 / "uniform+recover" / "checkpoint" / "state.json").is_file()
    assert [p["step"] for p in summary["recovery"]["curve"]] == [0, 3]  # watch_every 25: the start and the end
    report = (workdir / "results" / RUN / "report" / "report.md").read_text()
    assert "## Recovery: held-out perplexity during training" in report and "| uniform+recover @ 50% | 3 |" in report
    table = json.loads((workdir / "results" / "compare" / RUN / "table.json").read_text())
    cost = {r["method"]: r["seconds"] for r in table["rows"]}
    assert cost["uniform+recover"] > cost["uniform"]
    (tmp_path / "cadence.yaml").write_text(
        yaml.safe_dump({**recover, "recover": {**recover["recover"], "checkpoint_every": 1, "watch_every": 1}})
    )
    assert planned_rules(workdir, tmp_path / "recover.yaml", tmp_path / "cadence.yaml") == {}

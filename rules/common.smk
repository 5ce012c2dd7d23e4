# Paths, wildcards and input functions shared by all rules. Light imports only.
import sys

from snakemake.exceptions import WorkflowError

from tyr.core import signals
from tyr.workflow import config as tyrconf
from tyr.workflow import hooks, runplan, steps
from tyr.evaluate import plan as evalplan
from tyr.methods import registry as tyr_methods
from tyr.recover.train import CADENCE as RECOVER_CADENCE


RUN = f"results/{config['run']}"

# tyr.workflow.runplan: the checks, the model's depth and where every evaluation input comes
# from are resolved once, here in the main process, and frozen in results/<run>/plan.json by
# onstart; a SLURM job's own parse reads that file instead of resolving them on its node.
try:
    if workflow.is_main_process:
        PLAN = runplan.resolve(config, RUN)
    else:
        PLAN = runplan.load(RUN)
except (tyrconf.ConfigError, evalplan.PlanError, runplan.StaleFolder, FileNotFoundError) as e:
    raise WorkflowError(f"invalid configuration: {e}")
if workflow.is_main_process:
    print(tyrconf.describe_calibration(config["data"]), file=sys.stderr)
    print(evalplan.describe(PLAN["evaluation"]), file=sys.stderr)
    for change in runplan.differences(runplan.read(RUN), PLAN):
        print(f"plan: {change} (since {runplan.path(RUN)}; the jobs it touches rerun)", file=sys.stderr)
EVAL_PLAN = PLAN["evaluation"]
N_LAYERS = PLAN["model"]["num_layers"]


# tyr.workflow.hooks: the run lock, a writable results folder, no SLURM jobs left from an
# interrupted run; on error or Ctrl-C the jobs this run submitted are cancelled. Then the
# plan is frozen for the jobs.
onstart:
    try:
        hooks.on_start(config["run"], RUN)
    except hooks.HookError as e:
        raise WorkflowError(str(e))
    runplan.freeze(RUN, PLAN)
    signals.install()  # SIGTERM (SLURM's time limit, preemption): a search stops at its checkpoint


onerror:
    hooks.on_error(log)


def run_path(path):
    return f"{RUN}/{path}"


def target_path(path):
    """Under the folder of one target sparsity: results/<run>/s<percent>/."""
    return f"{RUN}/s{{target}}/{path}"


MODEL = run_path("model")
TOKENS = run_path("calib/tokens.zarr")
EMBEDDINGS = run_path("calib/embeddings.zarr")
TOPK = run_path("dense/topk.zarr")
TARGETS = [tyrconf.target_tag(t) for t in tyrconf.targets(config)]
ITERATIONS = config["supernet"]["iterations"]
MEASURED_SPLIT = config["search"]["attention_kept"] == "auto"  # the attention_share step chooses it (tyr.search.split)
THREADS = config["threads"]
BASE_METHODS = tyrconf.base_methods(config)  # what `methods` needs computed: `tyr+recover` needs `tyr`


wildcard_constraints:
    target=r"\d+(\.\d+)?",
    iter=r"\d+",
    layer=r"\d{3}",
    method=r"[a-z][a-z0-9_]*(\+recover)?",  # tyr.methods.registry.result_names()


def step(entry, input, output, params, wildcards, threads, log, runtime=None):
    """Run the rule's entry point (a function of tyr.workflow.steps: torch is imported there, inside the job)."""
    from tyr.workflow.runner import step as run_step

    return run_step(entry, input, output, params, wildcards, threads, log, runtime=runtime)


def runtime(stage, threads=None):
    """Where and how fast a step runs, never what it writes: passed beside the params, not in
    them, so moving a run to a GPU or to more processes reruns no finished job (a result is
    kept where it was computed; `search.processes` gives the same genome by design).
    `stage`: its key in config `devices`."""
    return {"device": config["devices"][stage], "processes": config["search"]["processes"], "threads": threads}


def layer_input(wildcards):
    """Layer 0 reads the embeddings; layer l the expected output of layer l-1 (paper Eq. 5)."""
    layer = int(wildcards.layer)
    if layer == 0:
        return EMBEDDINGS
    return f"{RUN}/s{wildcards.target}/iter{wildcards.iter}/acts/out{layer - 1:03d}.zarr"


def previous_best(wildcards):
    """Iteration i > 1 recentres its levels on iteration i-1's best genome."""
    i = int(wildcards.iter)
    return [] if i == 1 else [f"{RUN}/s{wildcards.target}/iter{i - 1}/search/best.json"]


def supernet_layer_options():
    """The settings that change a supernet layer's files: not `iterations`, `levels` or `delta`
    (those act through levels.json), so more iterations or other levels reuse finished layers."""
    keys = ("damp", "heads_per_step", "channels_per_step", "batch_size", "compensate", "taylor", "obs",
            "accumulate", "refit")
    return {k: config["supernet"][k] for k in keys}


SEARCH_KEYS = ("offspring", "stages", "seed", "max_swaps", "trade_attn_mlp", "dtype", "track_sequences",
               "fixed_last_stage", "attention_kept")  # not the share candidates: they act through share.json


def search_settings(wildcards):
    """What changes iteration {iter}'s genome: its own generation count (a longer iteration 3
    leaves iterations 1 and 2 finished) and the keys above; not `devices.search` or `processes` (runtime)."""
    settings = {k: config["search"][k] for k in SEARCH_KEYS}
    settings["generations"] = tyrconf.generations(config["search"], int(wildcards.iter))
    return settings


def evaluate_settings():
    """What changes an evaluation: the plan (which data sets, from where) and these keys."""
    keys = ("seq_len", "max_windows", "zeroshot_limit", "speed", "prompts", "new_tokens")
    return {k: config["evaluate"][k] for k in keys}


def recover_options():
    """What changes a recovered model: every `recover` key but how often it checkpoints and looks
    at the held-out split (tyr.recover.train.CADENCE: changing those reruns nothing)."""
    return {k: v for k, v in config["recover"].items() if k not in RECOVER_CADENCE}


def recover_runtime():
    return dict(runtime("recover"), **{k: config["recover"][k] for k in RECOVER_CADENCE})


def share_input(wildcards):
    """`attention_kept: auto`: every search of a target holds the split its attention_share step chose."""
    if MEASURED_SPLIT:
        return {"share": f"{RUN}/s{wildcards.target}/share.json"}
    return {}


COMPARED = [(t, m) for t in TARGETS for m in config["methods"]]  # the comparison table's rows
BASE_METHOD = r"[a-z][a-z0-9_]*"  # a structural method's own result (not `+recover`): its genome, its export


def genome_of(target, method):
    """The genome file behind a result: `tyr+recover` is `tyr`'s genome, recovered."""
    return f"{RUN}/s{target}/{tyr_methods.base_method(method)}/genome.json"


def method_genome(wildcards):
    return genome_of(wildcards.target, wildcards.method)


def method_benchmarks(target, method):
    """Benchmark files of the jobs that produced `method`'s genome at `target` (its cost in the
    comparison table); the steps every method shares are left out."""
    base = f"{RUN}/benchmarks/s{target}"
    if tyr_methods.is_recovered(method):
        return method_benchmarks(target, tyr_methods.base_method(method)) + [f"{base}/{method}/recover.tsv"]

    def layers(it):
        return [f"{base}/iter{it}/supernet_layer{layer:03d}.tsv" for layer in range(N_LAYERS)]

    if method == "tyr":
        iterations = [p for it in range(1, ITERATIONS + 1) for p in layers(it) + [f"{base}/iter{it}/search.tsv"]]
        share = [f"{base}/attention_share.tsv"] if MEASURED_SPLIT else []
        return iterations + share + [f"{base}/select_tyr.tsv"]
    if method == "uniform":
        return layers(1)
    return [f"{base}/{method}/baseline.tsv"]


def released_genomes(wildcards):
    """The genome files that name levels of iteration {iter}'s supernet (tyr.supernet.release
    keeps exactly those): its search's best (and start); in iteration 1 the uniform genome."""
    files = [f"{RUN}/s{wildcards.target}/iter{wildcards.iter}/search/best.json"] if "tyr" in BASE_METHODS else []
    if int(wildcards.iter) == 1 and "uniform" in BASE_METHODS:
        files.append(f"{RUN}/s{wildcards.target}/uniform/genome.json")
    return files


def whole_supernet_readers(wildcards):
    """Outputs of the other jobs that read iteration {iter}'s whole supernet: attention_share's."""
    if int(wildcards.iter) == 1 and "tyr" in BASE_METHODS and MEASURED_SPLIT:
        return [f"{RUN}/s{wildcards.target}/share.json"]
    return []


def released_records():
    """`supernet.keep_levels: chosen`: every iteration's supernet is released once read (rule release_levels)."""
    if config["supernet"]["keep_levels"] == "all":
        return []
    if "tyr" in BASE_METHODS:
        iterations = range(1, ITERATIONS + 1)
    else:
        iterations = [1] if "uniform" in BASE_METHODS else []  # genome_uniform's supernet
    return expand(target_path("iter{iter}/supernet/released.json"), target=TARGETS, iter=iterations)


def layer_manifests(wildcards):
    base = f"{RUN}/s{wildcards.target}/iter{wildcards.iter}/supernet"
    return [f"{base}/layer{layer:03d}/manifest.json" for layer in range(N_LAYERS)]


def search_logs():
    """Per-generation logs of every search (all targets and iterations), for the report."""
    if "tyr" not in BASE_METHODS:
        return []
    return expand(target_path("iter{iter}/search/generations.tsv"), target=TARGETS,
                  iter=range(1, ITERATIONS + 1))


def share_files():
    """Týr's attention/MLP split record of every target, for the report."""
    if "tyr" not in BASE_METHODS or not MEASURED_SPLIT:
        return []
    return expand(target_path("share.json"), target=TARGETS)


def gguf_summary_input(wildcards):
    """`gguf.enabled`: a result's summary carries its llama.cpp table (rules/gguf.smk)."""
    if not config["gguf"]["enabled"]:
        return []
    return [f"{RUN}/s{wildcards.target}/{wildcards.method}/gguf/table.json"]


def final_outputs():
    summaries = expand(target_path("{method}/eval/summary.json"), target=TARGETS, method=config["methods"])
    return summaries + [run_path("report/report.md")] + released_records()

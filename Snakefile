# tyr: Týr-the-Pruner (Li et al., NeurIPS 2025) as a Snakemake workflow.
# Thin on purpose: rules live in rules/<stage>.smk and call src/tyr; nothing heavy is
# imported here, because every SLURM job parses this file again.
import os

from snakemake.utils import min_version, validate

from tyr.workflow.config import refuse_moved_keys

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


refuse_moved_keys(config)
validate(config, "config/config.schema.yaml")


include: "rules/common.smk"
include: "rules/model.smk"
include: "rules/calibrate.smk"
include: "rules/supernet.smk"
include: "rules/search.smk"
include: "rules/export.smk"
include: "rules/recover.smk"
include: "rules/evaluate.smk"
include: "rules/baselines.smk"
include: "rules/unstructured.smk"
include: "rules/gguf.smk"


# Seconds-long bookkeeping jobs stay off the cluster queue.
localrules:
    all,
    levels,
    supernet,
    release_levels,
    genome_uniform,
    summarize,
    report,
    compare,


rule all:
    input:
        final_outputs(),
    default_target: True

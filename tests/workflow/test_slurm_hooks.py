"""tyr.workflow.slurm without a cluster: which job ids a Snakemake log says were submitted.
(The hooks themselves run on the CI cluster: tests/workflow/test_slurm.py.)"""

from tyr.workflow import slurm

# Lines as Snakemake 9 + snakemake-executor-plugin-slurm 2.8 write them (tests/workflow/test_slurm.py's run).
LOG = """\
Job 3 has been submitted with SLURM jobid 47 (log: /w/.snakemake/slurm_logs/rule_prepare_model/47.log).
[Sat Nov 28 16:59:45 2026] Group job layers_s50_i1 (jobs in lexicogr. order):
Job f2315a61-cb7e-587a-8520-ed4b8864eb43 has been submitted with SLURM jobid 52 (log: /w/x/52.log).
    output: results/tiny/s50/iter1/search/best.json
Job 8 has been submitted with SLURM jobid 153 (log: /w/.snakemake/slurm_logs/rule_search/50_1/153.log).
"""


def test_submitted_ids_in_order_including_group_jobs():
    assert slurm.submitted(LOG) == ["47", "52", "153"]


def test_message_names_every_job_and_the_command():
    text = slurm.leftover_message(["52", "153"], "results/tiny")
    assert "2 SLURM job(s)" in text and "scancel 52 153" in text and "results/tiny" in text

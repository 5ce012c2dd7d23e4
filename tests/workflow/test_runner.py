"""`tyr.workflow.runner.step`: how every rule runs a job inside the Snakemake process."""

import threading

import pytest
import torch

from tyr.workflow import runner as workflow

SEEN = []


def probe_ok(input, output, params, wildcards):
    SEEN.append((threading.get_ident(), torch.get_num_threads()))
    return "ok"


def probe_fail(input, output, params, wildcards):
    raise RuntimeError("bad input")


@pytest.fixture
def probe():
    SEEN.clear()
    return SEEN


def test_each_job_runs_in_a_fresh_thread_with_its_threads(probe, tmp_path):
    log = tmp_path / "job.log"
    for threads in (1, 2):
        assert workflow.step(probe_ok, {}, {}, {}, {}, threads, [str(log)]) == "ok"
    # A thread of its own per job (so OpenMP teams die with their jobs), never the caller's.
    idents = [ident for ident, _ in probe]
    assert threading.get_ident() not in idents
    assert [n for _, n in probe] == [1, 2]
    text = log.read_text()
    assert "start probe_ok" in text and "probe_ok done" in text


def test_errors_reach_the_caller_and_the_log(probe, tmp_path):
    log = tmp_path / "job.log"
    with pytest.raises(RuntimeError, match="bad input"):
        workflow.step(probe_fail, {}, {}, {}, {}, 1, [str(log)])
    assert "probe_fail failed" in log.read_text() and "RuntimeError: bad input" in log.read_text()


# Two jobs side by side in a fresh interpreter, as the Snakemake process runs them: transformers
# is imported by the first job (after the runner has wrapped stderr), as in a real run.
SIDE_BY_SIDE = r"""
import sys, threading, warnings
from tyr.workflow import runner

barrier = threading.Barrier(2)

def job(input, output, params, wildcards):
    from transformers.utils import logging as hf_logging
    import logging
    name = params["name"]
    barrier.wait()
    print(f"progress of {name}")
    warnings.warn(f"a warning of {name}")
    hf_logging.get_logger("transformers.modeling_utils").warning(f"transformers says {name}")
    logging.getLogger("lm-eval").warning(f"lm-eval says {name}")
    barrier.wait()

threads = [threading.Thread(target=runner.step, args=(job, {}, {}, {"name": n}, {}, 1, [sys.argv[i + 1]]))
           for i, n in enumerate(("alpha", "beta"))]
[t.start() for t in threads]
[t.join() for t in threads]
print("console line")
"""


def test_each_jobs_whole_output_goes_to_its_own_log(tmp_path):
    import subprocess
    import sys

    logs = [tmp_path / "alpha.log", tmp_path / "beta.log"]
    out = subprocess.run(
        [sys.executable, "-c", SIDE_BY_SIDE, *map(str, logs)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    console = out.stdout + out.stderr
    assert "console line" in out.stdout
    for log, mine, other in ((logs[0], "alpha", "beta"), (logs[1], "beta", "alpha")):
        text = log.read_text()
        for line in (
            f"progress of {mine}",
            f"a warning of {mine}",
            f"transformers says {mine}",
            f"lm-eval says {mine}",
        ):
            assert line in text, (log.name, line, text)
            assert line not in console
        assert other not in text

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

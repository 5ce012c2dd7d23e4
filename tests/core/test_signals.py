"""tyr.core.signals: SIGTERM sets STOP and still reaches the handler that was there before."""

from __future__ import annotations

import os
import signal

import pytest

from tyr.core import signals


def test_sigterm_sets_stop_and_chains_the_previous_handler():
    seen = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        signals.install()
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.STOP.is_set() and seen == [signal.SIGTERM]
        with pytest.raises(signals.Stopped, match="stopped by SIGTERM; the checkpoint resumes it"):
            signals.check("the checkpoint resumes it")
    finally:
        signal.signal(signal.SIGTERM, before)
        signals.STOP.clear()
    signals.check("nothing to stop")  # STOP cleared: no raise

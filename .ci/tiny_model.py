"""Save a tiny random Llama and its tokenizer to the folder given (CI's fresh-clone run prunes it)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_models import save_tiny_model  # noqa: E402

save_tiny_model(sys.argv[1])

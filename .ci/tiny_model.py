"""Save a tiny random Llama and its tokenizer to the folder given (CI's fresh-clone run prunes it)."""

import sys

from tyr.testing import save_tiny_model

save_tiny_model(sys.argv[1])

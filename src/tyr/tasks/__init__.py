"""lm-evaluation-harness task configs that score standard benchmarks from local files.

`tyr_*.yaml` are read by `tyr.evaluate.zeroshot`, which points their `data_files` at the
data folder it is given; `ai2.py` converts AI2 jsonl rows to the hub datasets' layout.
"""

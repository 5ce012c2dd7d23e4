"""The per-stage cost model of docs/cost-model.md, in four parts (the command line is bench/scaling.py):

shapes   the model shapes measured and predicted, as ModelSpecs (parameter counts from
         tyr.model.sparsity, FLOPs from bench/floors.py), and the assumed GPU rates
measure  the measurement workers (each in a fresh single-thread process) and their driver
fit      the laws' features and their non-negative fits, with predicted/measured per point
model    the paper preset's work per stage for Llama-3.1-8B/70B, and its seconds and bytes
report   the markdown and JSON result
checks   what --smoke verifies about the model itself (formerly tests/test_bench_scaling.py)
"""

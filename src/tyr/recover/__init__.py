"""Recovery after pruning (issue 28): an optional step that trains a pruned model toward the dense one.

The pruned model learns the dense model's next-token distribution (knowledge distillation,
`distill`) on text the run owns (`text`: the calibration splits the method used, never the
held-out split, or the user's file), through LoRA adapters merged at the end or by updating
every kept weight (`adapters`). `train` is the resumable loop; the result is the same plain
`from_pretrained` folder as export's (`tyr.recover.train.recover`).
"""

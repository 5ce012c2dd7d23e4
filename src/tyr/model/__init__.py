"""Stage *model* (`rules/model.smk`): the source model as a plain Hugging Face folder (`prepare`),
the canonical Llama layout every stage computes with (`modeling_tyr`, `families`, `adapter`),
and the one home of parameter counting (`sparsity`)."""

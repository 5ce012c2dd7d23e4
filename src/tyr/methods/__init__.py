"""Every pruning method besides Týr's search: the one registry (`registry`), the structural
`baselines` (`rules/baselines.smk`) and `unstructured` / N:M pruning (`rules/unstructured.smk`)."""

"""Stage *supernet* (`rules/supernet.smk`): the levels of each sublayer (`levels`), their local
pruning (`local_prune`), one job per layer (`build`, with the expectation propagation of
`accumulate`), and the supernet's files (`format`)."""

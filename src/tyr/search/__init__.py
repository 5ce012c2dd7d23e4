"""Stages *attention/MLP split*, *search* and *final choice* (`rules/search.smk`): the dense
reference and the KL fitness (`fitness`), the evolutionary search (`evolve`) on one or several
processes (`distributed`), the split (`split`) and the choice among iterations (`select`)."""

"""What several test modules share: factories of tiny runs, supernets and exports, and the
helpers that drive Snakemake. No tests live here."""

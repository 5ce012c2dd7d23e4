"""Stage *export* (`rules/export.smk`): a genome as a smaller model folder (`hf`)."""

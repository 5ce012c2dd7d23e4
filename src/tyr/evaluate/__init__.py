"""Stage *evaluation* (`rules/evaluate.smk`): what each input is (`plan`), the numbers of one
model (`measure`, `speed`, `tasks`), dense beside pruned (`summary`), the report and the
comparison of methods (`report`, `compare`)."""

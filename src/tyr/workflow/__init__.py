"""Running the stages: each rule's entry point (`steps`), the job runner (`runner`), parse-time
configuration checks (`config`), SLURM leftovers (`slurm`) and the results checker (`validate`)."""

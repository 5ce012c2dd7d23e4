"""Shared by every stage: atomic, checksummed files (`io`), where a job computes and in which
dtype (`device`), and handing freed memory back to the OS (`memory`)."""

"""The search on several devices: the offspring of a selection stage scored in parallel.

Every process (a rank of `torch.distributed`, launched by `torch.distributed.run`) holds the
model, the supernet's module cache and the parent cache of the current stage, and runs the
same seeded random stream, so all ranks mutate and select identically; only the scoring of a
stage's candidates is split (rank r scores candidates r, r + W, ...) and the scores are
gathered. The decisions, and so the genome, are those of the single-process search whenever
a candidate's score does not depend on which process computed it (same code, data and thread
count per process: tested with 2 CPU processes on the gloo backend). Rank 0 alone writes
the checkpoint and the outputs.

`tyr.search.launch` starts the ranks. They talk over gloo (the gathered scores are a few
floats); each computes its fitness on its own device (`devices.search`: cuda:LOCAL_RANK when
torch sees GPUs, else the CPU).
"""

from __future__ import annotations


def rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def score(fitness, candidates) -> list[float]:
    """fitness(c) of every candidate, each computed by one rank, known to all."""
    rank, world = rank_and_world()
    if world == 1:
        return [fitness(c) for c in candidates]
    import torch.distributed as dist

    mine = {i: fitness(c) for i, c in enumerate(candidates) if i % world == rank}
    gathered = [None] * world
    dist.all_gather_object(gathered, mine)
    merged = {i: v for part in gathered for i, v in part.items()}
    return [merged[i] for i in range(len(candidates))]


def is_writer() -> bool:
    """Only rank 0 writes files (checkpoints, logs, results)."""
    return rank_and_world()[0] == 0

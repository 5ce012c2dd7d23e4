"""The search on several devices: the offspring of a selection stage scored in parallel.

Every process (a rank of `torch.distributed`, launched by `torch.distributed.run`) holds the
model, the supernet's module cache and the parent cache of the current stage, and runs the
same seeded random stream, so all ranks mutate and select identically; only the scoring of a
stage's candidates is split (rank r scores candidates r, r + W, ...) and the scores are
gathered. The decisions, and so the genome, are those of the single-process search whenever
a candidate's score does not depend on which process computed it (same code, data and thread
count per process: tested with 2 CPU processes on the gloo backend). Rank 0 alone writes
the checkpoint and the outputs.

A search job with `search.processes: N` (N > 1) runs
    python -m torch.distributed.run --nproc_per_node N -m tyr.search.distributed <arguments.json>
with the rule's threads divided among the processes. The ranks talk over gloo (the gathered
scores are a few floats); the fitness itself runs where `tyr.search.fitness.Evaluator` runs (the CPU).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


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


def launch(kwargs: dict, processes: int, threads: int, workdir) -> None:
    """Run `tyr.search.evolve.run_search(**kwargs)` in `processes` ranks on this machine; raises if one fails."""
    args = Path(workdir) / "distributed_args.json"
    args.parent.mkdir(parents=True, exist_ok=True)
    args.write_text(json.dumps(kwargs, default=str))
    env = dict(os.environ, TYR_THREADS=str(max(1, threads // processes)), OMP_NUM_THREADS=str(max(1, threads // processes)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "tyr.search.distributed", str(args)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"distributed search failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    sys.stderr.write(done.stderr[-6000:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> None:
    """A rank's entry point: join the process group and run the search."""
    import torch
    import torch.distributed as dist

    from tyr.search.evolve import run_search

    argv = sys.argv[1:] if argv is None else argv
    kwargs = json.loads(Path(argv[0]).read_text())
    torch.set_num_threads(int(os.environ.get("TYR_THREADS", "1")))
    dist.init_process_group("gloo")
    try:
        run_search(**kwargs)
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""The search on several processes: `search.processes: N` (N > 1) runs

    python -m torch.distributed.run --nproc_per_node N -m tyr.search.launch <arguments.json>

with the rule's threads divided among the processes; each rank runs `run_search` with the same
arguments (tyr.search.distributed says how they share the work).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def launch(kwargs: dict, processes: int, threads: int, workdir) -> None:
    """Run `tyr.search.evolve.run_search(**kwargs)` in `processes` ranks on this machine; raises if one fails."""
    args = Path(workdir) / "distributed_args.json"
    args.parent.mkdir(parents=True, exist_ok=True)
    args.write_text(json.dumps(kwargs, default=str))
    env = dict(
        os.environ, TYR_THREADS=str(max(1, threads // processes)), OMP_NUM_THREADS=str(max(1, threads // processes))
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(processes),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "tyr.search.launch",
        str(args),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"distributed search failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
        )
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

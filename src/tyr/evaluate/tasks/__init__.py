"""lm-evaluation-harness task configs that score standard benchmarks from local files.

`tyr_*.yaml` are read by `tyr.evaluate.zeroshot.zeroshot`, which points their `data_files` at the
data folder it is given; `ai2.py` converts AI2 jsonl rows to the hub datasets' layout.
`LOCAL` maps each standard task name to its local task; `task_files` names the files it reads.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).parent
LOCAL = {"arc_easy": "tyr_arc_easy", "arc_challenge": "tyr_arc_challenge", "openbookqa": "tyr_openbookqa"}


def task_files(task: str) -> list[str]:
    """The data files (relative to the data folder) that the local version of `task` reads."""
    import yaml

    class Loader(yaml.SafeLoader):  # lm-eval's `!function` tags are not needed to read data_files
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    cfg = yaml.load((FOLDER / f"{LOCAL[task]}.yaml").read_text(), Loader=Loader)
    return sorted(cfg["dataset_kwargs"]["data_files"].values())

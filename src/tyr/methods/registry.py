"""The one registry of pruning methods: Týr, its no-search baseline, every related structural
pruner, and the unstructured / N:M methods.

Everything that lists methods derives from `METHODS`: the configuration check of `methods`
(`tyr.workflow.config`) and of `unstructured.methods`, the `method` and `umethod` wildcards of
`rules/baselines.smk` and `rules/unstructured.smk`, the dispatch of `tyr.methods.baselines.run`
and `tyr.methods.unstructured.method`, and the table of `docs/baselines.md` (`markdown_table`,
checked by the tests). The Snakefile imports this module at parse time, so it imports nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str  # the value in `methods:` (`unstructured.methods:`) and its results folder
    module: str | None  # its module: run(...) of a baseline, prune(...) of an unstructured method;
    #                     None: built from Týr's own supernet
    summary: str  # one line: what the method does, as implemented here
    reference: str  # the paper it follows
    kind: str = "structural"  # structural (whole heads and channels) | unstructured (single weights, N:M)


METHODS = (
    Method(
        "tyr",
        None,
        "evolutionary search of one level per sublayer in a multi-level supernet",
        "Li et al., NeurIPS 2025",
    ),
    Method(
        "uniform",
        None,
        "near-uniform: each sublayer at one of the two levels of Týr's supernet bracketing the target (no search)",
        "Li et al., NeurIPS 2025",
    ),
    Method(
        "shortgpt", "tyr.methods.baselines.shortgpt", "drop whole layers of lowest Block Influence", "Men et al., 2024"
    ),
    Method(
        "wanda_sp",
        "tyr.methods.baselines.wanda_sp",
        "structured Wanda (abs(W)·‖X‖), uniform, layer by layer on the pruned model",
        "An et al., AAAI 2024 (Wanda-sp)",
    ),
    Method(
        "flap",
        "tyr.methods.baselines.flap",
        "fluctuation scores, global adaptive structure, bias compensation",
        "An et al., AAAI 2024",
    ),
    Method(
        "llm_pruner",
        "tyr.methods.baselines.llm_pruner",
        "first-order Taylor group importance, uniform in a layer range, no LoRA",
        "Ma et al., NeurIPS 2023",
    ),
    Method(
        "search_llm",
        "tyr.methods.baselines.search_llm",
        "evolutionary mask search from OBS importance, ADMM reformation",
        "Shen et al., NeurIPS 2024",
    ),
    Method(
        "numerical",
        "tyr.methods.baselines.numerical",
        "Newton-method mask scores, global ranking, least-squares compensation",
        "Shen et al., AAAI 2025",
    ),
    Method(
        "llm_bip",
        "tyr.methods.baselines.llm_bip",
        "block-output influence bounds from one forward pass, uniform in a layer range",
        "Wu et al., 2024",
    ),
    Method(
        "nirvana",
        "tyr.methods.baselines.nirvana",
        "NTK output saliency, attention/MLP-balanced global allocation, KL-selected calibration",
        "Ai et al., 2025",
    ),
    Method(
        "adapruner",
        "tyr.methods.baselines.adapruner",
        "Bayesian optimisation of calibration subset × importance metric",
        "Kong et al., AAAI 2025",
    ),
    Method(
        "apt",
        "tyr.methods.unstructured.apt",
        "the optimal update for removing several weights of a row at once, per block",
        "Zhao et al., EMNLP Findings 2024",
        "unstructured",
    ),
    Method(
        "sparsegpt",
        "tyr.methods.unstructured.sparsegpt",
        "single-weight OBS, column by column, lazy block updates",
        "Frantar & Alistarh, ICML 2023",
        "unstructured",
    ),
    Method(
        "wanda",
        "tyr.methods.unstructured.wanda",
        "abs(W)·‖X‖ per output row, no update",
        "Sun et al., ICLR 2024",
        "unstructured",
    ),
    Method(
        "magnitude",
        "tyr.methods.unstructured.magnitude",
        "abs(W), one threshold per matrix, no update",
        "the classic baseline",
        "unstructured",
    ),
    Method(
        "refit",
        "tyr.methods.unstructured.refit",
        "APT's mask, then the exact least-squares fit of every row (the bound of any method that keeps that mask)",
        "this project",
        "unstructured",
    ),
)


def names() -> list[str]:
    """The structural methods: what `methods:` may name."""
    return [m.name for m in METHODS if m.kind == "structural"]


RECOVERED = "+recover"  # `<structural method>+recover`: that method's result after the recovery step (tyr.recover)


def base_method(name: str) -> str:
    """The structural method a result name starts from: `tyr+recover` -> `tyr`, `tyr` -> `tyr`."""
    return name.removesuffix(RECOVERED)


def is_recovered(name: str) -> bool:
    return name.endswith(RECOVERED)


def result_names() -> list[str]:
    """What `methods:` may name: every structural method, and each with the recovery step."""
    return names() + [n + RECOVERED for n in names()]


def baselines() -> list[str]:
    """Structural methods computed by a module of tyr.methods.baselines (one `baseline` job each)."""
    return [m.name for m in METHODS if m.kind == "structural" and m.module is not None]


def unstructured() -> list[str]:
    """What `unstructured.methods:` may name (tyr.methods.unstructured)."""
    return [m.name for m in METHODS if m.kind == "unstructured"]


def get(name: str) -> Method:
    for m in METHODS:
        if m.name == name:
            return m
    raise KeyError(f"unknown method {name!r}; expected one of {names()}")


def markdown_table() -> str:
    """The methods table of docs/baselines.md (the tests check that the page contains it)."""
    rows = ["| method | what it does here | reference |", "|---|---|---|"]
    rows += [f"| `{m.name}` | {m.summary} | {m.reference} |" for m in METHODS if m.kind == "structural"]
    return "\n".join(rows) + "\n"

"""The layout move of issue 26: flat `src/tyr/*.py` -> one package per pipeline stage.

    python dev/relayout.py            # git mv every module, then rewrite every reference

It maps each old module path to its new one (MOVES), `git mv`s the files (src and tests),
writes each new package's `__init__.py` (a docstring naming the stage, no re-exports), and
rewrites, in every tracked text file, the references to the old paths: `from tyr import a,
b as c` statements (split per new package, local names kept), dotted names
(`tyr.search.run_search`, `"tyr.baselines.flap"`, `-m tyr.validate`), file paths
(`src/tyr/search.py`, `tests/test_search.py`) and the package data of pyproject.toml. Every
reference is rewritten once: a name the first pass produced is marked until the last, so a
new path that starts with an old one (`tyr.model` -> `tyr.model.adapter`) is never rewritten
twice.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# old module (relative to tyr) -> new module. A package maps all its submodules.
MOVES = {
    "accumulate": "supernet.accumulate",
    "baselines": "methods.baselines",
    "compare": "evaluate.compare",
    "config": "workflow.config",
    "construct": "supernet.build",
    "data": "calib.sources",
    "distributed": "search.distributed",
    "embedded": "model.embedded",
    "evalplan": "evaluate.plan",
    "evaluate": "evaluate.measure",
    "export": "export.hf",
    "families": "model.families",
    "fitness": "search.fitness",
    "hardware": "core.device",
    "io": "core.io",
    "levels": "supernet.levels",
    "local_prune": "supernet.local_prune",
    "memory": "core.memory",
    "methods": "methods.registry",
    "model": "model.adapter",
    "modeling_tyr": "model.modeling_tyr",
    "prepare": "model.prepare",
    "report": "evaluate.report",
    "sampling": "calib.sampling",
    "search": "search.evolve",
    "select": "search.select",
    "share": "search.split",
    "slurm": "workflow.slurm",
    "sparsity": "model.sparsity",
    "speed": "evaluate.speed",
    "steps": "workflow.steps",
    "summary": "evaluate.summary",
    "supernet": "supernet.format",
    "tasks": "evaluate.tasks",
    "unstructured": "methods.unstructured",
    "validate": "workflow.validate",
    "workflow": "workflow.runner",
}
PACKAGE_DOCS = {
    "core": "Shared by every stage: atomic, checksummed files (`io`), where a job computes and in which\n"
    "dtype (`device`), and handing freed memory back to the OS (`memory`).",
    "model": "Stage *model* (`rules/model.smk`): the source model as a plain Hugging Face folder (`prepare`),\n"
    "the canonical Llama layout every stage computes with (`modeling_tyr`, `families`, `adapter`),\n"
    "and the one home of parameter counting (`sparsity`).",
    "calib": "Stage *calibration* (`rules/calibrate.smk`): the calibration token splits, from text\n"
    "(`sources`) or sampled from the model itself (`sampling`), and layer 0's input.",
    "supernet": "Stage *supernet* (`rules/supernet.smk`): the levels of each sublayer (`levels`), their local\n"
    "pruning (`local_prune`), one job per layer (`build`, with the expectation propagation of\n"
    "`accumulate`), and the supernet's files (`format`).",
    "search": "Stages *attention/MLP split*, *search* and *final choice* (`rules/search.smk`): the dense\n"
    "reference and the KL fitness (`fitness`), the evolutionary search (`evolve`) on one or several\n"
    "processes (`distributed`), the split (`split`) and the choice among iterations (`select`).",
    "export": "Stage *export* (`rules/export.smk`): a genome as a smaller model folder (`hf`).",
    "evaluate": "Stage *evaluation* (`rules/evaluate.smk`): what each input is (`plan`), the numbers of one\n"
    "model (`measure`, `speed`, `tasks`), dense beside pruned (`summary`), the report and the\n"
    "comparison of methods (`report`, `compare`).",
    "methods": "Every pruning method besides Týr's search: the one registry (`registry`), the structural\n"
    "`baselines` (`rules/baselines.smk`) and `unstructured` / N:M pruning (`rules/unstructured.smk`).",
    "workflow": "Running the stages: each rule's entry point (`steps`), the job runner (`runner`), parse-time\n"
    "configuration checks (`config`), SLURM leftovers (`slurm`) and the results checker (`validate`).",
}
# old test file -> new test file (tests mirror the modules they test)
TEST_MOVES = {
    "test_accumulate.py": "supernet/test_accumulate.py",
    "test_adapruner.py": "methods/test_adapruner.py",
    "test_baselines.py": "methods/test_baselines.py",
    "test_compare.py": "evaluate/test_compare.py",
    "test_config.py": "workflow/test_config.py",
    "test_construct.py": "supernet/test_build.py",
    "test_data.py": "calib/test_sources.py",
    "test_evalplan.py": "evaluate/test_plan.py",
    "test_evaluate.py": "evaluate/test_measure.py",
    "test_export.py": "export/test_hf.py",
    "test_families.py": "model/test_families.py",
    "test_fitness.py": "search/test_fitness.py",
    "test_hardware.py": "core/test_device.py",
    "test_levels.py": "supernet/test_levels.py",
    "test_llm_bip.py": "methods/test_llm_bip.py",
    "test_local_prune.py": "supernet/test_local_prune.py",
    "test_memory.py": "core/test_memory.py",
    "test_methods.py": "methods/test_registry.py",
    "test_model.py": "model/test_adapter.py",
    "test_nirvana.py": "methods/test_nirvana.py",
    "test_numerical.py": "methods/test_numerical.py",
    "test_prepare.py": "model/test_prepare.py",
    "test_report.py": "evaluate/test_report.py",
    "test_sampling.py": "calib/test_sampling.py",
    "test_search.py": "search/test_evolve.py",
    "test_search_llm.py": "methods/test_search_llm.py",
    "test_select.py": "search/test_select.py",
    "test_share.py": "search/test_split.py",
    "test_slurm.py": "workflow/test_slurm.py",
    "test_slurm_hooks.py": "workflow/test_slurm_hooks.py",
    "test_speed.py": "evaluate/test_speed.py",
    "test_summary.py": "evaluate/test_summary.py",
    "test_unstructured.py": "methods/test_unstructured.py",
    "test_unstructured_workflow.py": "methods/test_unstructured_workflow.py",
    "test_validate.py": "workflow/test_validate.py",
    "test_workflow.py": "workflow/test_workflow.py",
    "test_workflow_step.py": "workflow/test_runner.py",
}
# Paths a moved file computes from its own location (one folder deeper now).
FIXUPS = {
    "src/tyr/export/hf.py": [
        (
            'Path(__file__).with_name("modeling_tyr.py")',
            'Path(__file__).resolve().parents[1] / "model" / "modeling_tyr.py"',
        )
    ]
}
TEXT_SUFFIXES = {".py", ".smk", ".md", ".yaml", ".yml", ".toml", ".txt", ".sh", ".cfg", ""}


def git(*args) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def move_files() -> None:
    # Decided before any move: `evaluate.py` is a file, not the new package `evaluate/`.
    sources = {old: ROOT / "src" / "tyr" / old for old in MOVES}
    sources = {old: p if p.is_dir() else p.with_suffix(".py") for old, p in sources.items()}
    for old, src in sources.items():
        dest = ROOT / "src" / "tyr" / Path(*MOVES[old].split("."))
        dest = dest if src.is_dir() else dest.with_suffix(".py")
        dest.parent.mkdir(parents=True, exist_ok=True)
        git("mv", str(src.relative_to(ROOT)), str(dest.relative_to(ROOT)))
    for package, doc in PACKAGE_DOCS.items():
        (ROOT / "src" / "tyr" / package / "__init__.py").write_text(f'"""{doc}"""\n')
        git("add", f"src/tyr/{package}/__init__.py")
    for old, new in TEST_MOVES.items():
        (ROOT / "tests" / new).parent.mkdir(parents=True, exist_ok=True)
        git("mv", f"tests/{old}", f"tests/{new}")


# ---- references --------------------------------------------------------------------------------

OLD = sorted(MOVES, key=len, reverse=True)
NEW = "tyr\x01"  # marks names already rewritten, so the dotted pass leaves them alone
FROM_TYR = re.compile(
    r"^(?P<indent>[ \t]*)from tyr import (?P<names>\([^)]*\)|[^\n#]*[^\s#])(?P<comment>[ \t]*#[^\n]*)?$", re.M
)
SRC_PATH = re.compile(r"(?<![\w/])(src/)?tyr/(" + "|".join(OLD) + r")(\.py|/)")
TEST_PATH = re.compile(r"(?<![\w/])tests/(" + "|".join(re.escape(t) for t in TEST_MOVES) + r")")
DOTTED = re.compile(r"(?<![\w.])tyr\.(" + "|".join(OLD) + r")(?![\w])")


def from_tyr(match: re.Match) -> str:
    """`from tyr import a, b as c` -> one statement per new parent package, local names kept."""
    names = [n.strip() for n in match.group("names").strip("()").replace("\n", " ").split(",") if n.strip()]
    by_parent: dict[str, list[str]] = {}
    for item in names:
        name, _, alias = item.partition(" as ")
        name, alias = name.strip(), alias.strip() or name.strip()
        parent, _, leaf = MOVES.get(name, name).rpartition(".")
        module = f"{NEW}.{parent}" if parent else NEW
        by_parent.setdefault(module, []).append(leaf if leaf == alias else f"{leaf} as {alias}")
    lines = [f"{match.group('indent')}from {m} import {', '.join(items)}" for m, items in by_parent.items()]
    lines[0] += match.group("comment") or ""
    return "\n".join(lines)


def src_path(match: re.Match) -> str:
    prefix, old, end = match.group(1) or "", match.group(2), match.group(3)
    return f"{prefix}tyr/{MOVES[old].replace('.', '/')}{end}"


def rewrite(text: str) -> str:
    text = FROM_TYR.sub(from_tyr, text)
    text = SRC_PATH.sub(src_path, text)
    text = TEST_PATH.sub(lambda m: "tests/" + TEST_MOVES[m.group(1)], text)
    text = DOTTED.sub(lambda m: f"{NEW}.{MOVES[m.group(1)]}", text)
    return text.replace(NEW, "tyr")


def rewrite_tree() -> list[str]:
    changed = []
    for rel in git("ls-files").split():
        path = ROOT / rel
        if rel.startswith(("bench/results/", "dev/")) or path.suffix not in TEXT_SUFFIXES or not path.is_file():
            continue
        text = path.read_text()
        new = rewrite(text)
        for old, fixed in FIXUPS.get(rel, ()):
            new = new.replace(old, fixed)
        if rel.removeprefix("tests/") in TEST_MOVES.values():
            new = new.replace(".resolve().parents[1]", ".resolve().parents[2]")  # a test one folder deeper
        if rel == "pyproject.toml":
            new = new.replace('tyr = ["tasks/*.yaml"]', 'tyr = ["evaluate/tasks/*.yaml"]')
        if new != text:
            path.write_text(new)
            changed.append(rel)
    return changed


def main() -> int:
    if git("status", "--porcelain", "--untracked-files=no").strip():
        print("commit or stash your changes first: the move must be one clean commit", file=sys.stderr)
        return 1
    move_files()
    changed = rewrite_tree()
    git("add", "-u")
    print(f"moved {len(MOVES)} modules and {len(TEST_MOVES)} test files; rewrote references in {len(changed)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())

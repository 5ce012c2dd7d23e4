"""Release an iteration's supernet once nothing reads it whole any more (`supernet.keep_levels:
chosen`): only the level files its genomes chose stay on disk.

Iteration i's supernet is read whole by its search and, in iteration 1, by `attention_share`
and `genome_uniform`. After them only `select_tyr` and `export` read it, and they read just the
levels a genome names: iteration i's best, iteration 1's start genome (the only start the final
choice scores, `tyr.search.select.candidates`) and the uniform genome. The release keeps those
(their index is `kept.json`, in the format of `supernet.json`, which `format.read_supernet` reads
in its place) and removes every other level file, the layers' manifests and `supernet.json`.

Removing the two index files is what keeps a later rerun correct: a job that must read the whole
supernet again (its search with more generations, say) finds it missing, and Snakemake rebuilds
it before that job runs. A missing intermediate is rebuilt only when a job that needs it has to
run, so a finished run with released iterations reruns nothing.

A release interrupted at any point, or run again, finds its kept index and finishes the same way.
"""

from __future__ import annotations

from pathlib import Path

from tyr.core.io import read_json, write_json
from tyr.model.spec import SUBLAYERS
from tyr.supernet.format import KEPT_INDEX


class ReleaseError(ValueError):
    pass


def chosen_levels(genome_files, *, with_start: bool = False) -> set[tuple[int, str, int]]:
    """(layer, sublayer, kept units) of every level the genome files name (`layers`, and with
    `with_start` a search's `start.layers` too)."""
    chosen = set()
    for path in genome_files:
        genome = read_json(path)
        records = [genome["layers"]]
        if with_start and genome.get("start"):
            records.append(genome["start"]["layers"])
        for layers in records:
            chosen |= {(l, s, int(layer[s])) for l, layer in enumerate(layers) for s in SUBLAYERS}
    return chosen


def kept_index(index: dict, chosen: set) -> dict:
    """`index` (a supernet.json) reduced to the chosen levels; every chosen level must be in it."""
    present = {(m["layer"], s, lvl["kept"]) for m in index["layers"] for s in SUBLAYERS for lvl in m[s]}
    missing = sorted(chosen - present)
    if missing:
        raise ReleaseError(f"genomes name levels this supernet lacks (layer, sublayer, kept): {missing[:5]}")

    def reduced(m):
        return {**m, **{s: [lvl for lvl in m[s] if (m["layer"], s, lvl["kept"]) in chosen] for s in SUBLAYERS}}

    return {**index, "layers": [reduced(m) for m in index["layers"]]}


def release(supernet_json, genome_files, record_json, *, with_start: bool = False) -> dict:
    """Keep the levels of `genome_files` of the supernet `supernet_json`, remove the rest and its
    index files; write and return the record (`record_json`: the levels and bytes kept, and those
    this call removed)."""
    supernet_json = Path(supernet_json)
    root, kept_json = supernet_json.parent, supernet_json.with_name(KEPT_INDEX)
    # From the full index while there is one (a rebuilt supernet replaces an old kept index), else
    # from the kept index of an interrupted or earlier release, which must hold every named level.
    source = supernet_json if supernet_json.exists() else kept_json
    if not source.exists():
        raise ReleaseError(f"{root}: neither {supernet_json.name} nor {KEPT_INDEX}: nothing says which levels to keep")
    index = kept_index(read_json(source), chosen_levels(genome_files, with_start=with_start))
    write_json(kept_json, index)
    keep = {(root / lvl["file"]).resolve() for m in index["layers"] for s in SUBLAYERS for lvl in m[s]}
    lost = sorted(str(f) for f in keep if not f.exists())
    if lost:
        raise ReleaseError(f"{KEPT_INDEX} names level files that are gone: {lost[:3]}")
    removed = [f for f in sorted(root.glob("layer*/*/*.safetensors")) if f.resolve() not in keep]
    record = {
        "iteration": index["iteration"],
        "genomes": [str(p) for p in genome_files],
        "levels_kept": len(keep),
        "bytes_kept": sum(f.stat().st_size for f in keep),
        "levels_removed": len(removed),
        "bytes_removed": sum(f.stat().st_size for f in removed),
    }
    for f in removed:
        f.unlink()
    for f in root.glob("layer*/manifest.json"):
        f.unlink()
    supernet_json.unlink(missing_ok=True)  # last: until here a rerun starts from the full index
    write_json(record_json, record)
    return record

"""Releasing a read supernet (`supernet.keep_levels: chosen`): exactly the levels its genomes name
stay, its index files go, and the readers that come after (the final choice, export) still get
the same numbers and the same model from what is left."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from helpers.runs import digest
from helpers.supernet_factory import make_run
from tyr.core.io import read_json, write_json
from tyr.export.hf import export
from tyr.model.spec import SUBLAYERS
from tyr.search import select
from tyr.search.budget import uniform_genome
from tyr.search.space import load_space
from tyr.supernet.format import KEPT_INDEX
from tyr.supernet.release import ReleaseError, release

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A 3-layer supernet (5 levels per sublayer), a uniform genome and a search-like best.json
    whose best and start differ from each other and from the uniform genome."""
    root = tmp_path_factory.mktemp("release")
    run = make_run(root, n_layers=3)
    sn = run["supernet"]
    uniform_genome(sn, run["spec"], root / "uniform.json", target_sparsity=0.5, iteration=1)
    space = load_space(sn, run["spec"], 0.5)
    rng = np.random.default_rng(1)
    best, start = (tuple(int(rng.integers(len(k))) for k in space.kept) for _ in range(2))
    write_json(
        root / "best.json",
        {
            "iteration": 1,
            "supernet": str(sn),
            "sparsity": space.sparsity(best),
            "generations": 3,
            "layers": space.to_layers(best),
            "start": {"layers": space.to_layers(start), "sparsity": space.sparsity(start)},
        },
    )
    return {**run, "root": root, "genomes": [root / "best.json", root / "uniform.json"]}


def _copy(built, tmp_path):
    """The supernet folder copied (a test may release it); the genome files name the copy."""
    sn_dir = tmp_path / "iter1" / "supernet"
    shutil.copytree(built["supernet"].parent, sn_dir)
    genomes = []
    for path in built["genomes"]:
        genome = read_json(path)
        genome["supernet"] = str(sn_dir / "supernet.json")
        write_json(tmp_path / path.name, genome)
        genomes.append(tmp_path / path.name)
    return sn_dir, genomes


def _named_files(sn_dir, genomes) -> set:
    """The level files the genomes name, looked up in the full index (before any release)."""
    index = read_json(sn_dir / "supernet.json")
    records = [g["layers"] for g in map(read_json, genomes)] + [read_json(genomes[0])["start"]["layers"]]
    files = {(m["layer"], s, lvl["kept"]): lvl["file"] for m in index["layers"] for s in SUBLAYERS for lvl in m[s]}
    return {sn_dir / files[(l, s, layer[s])] for layers in records for l, layer in enumerate(layers) for s in SUBLAYERS}


def test_release_keeps_exactly_the_named_levels_and_is_idempotent(built, tmp_path):
    sn_dir, genomes = _copy(built, tmp_path)
    before = set(sn_dir.glob("layer*/*/*.safetensors"))
    named = _named_files(sn_dir, genomes)
    assert named < before  # the genomes leave something to release
    record = release(sn_dir / "supernet.json", genomes, tmp_path / "released.json", with_start=True)
    assert set(sn_dir.glob("layer*/*/*.safetensors")) == named
    assert not (sn_dir / "supernet.json").exists() and not list(sn_dir.glob("layer*/manifest.json"))
    assert record["levels_kept"] == len(named) and record["levels_removed"] == len(before - named)
    assert record == read_json(tmp_path / "released.json")
    # Again (a release interrupted and resumed, or rerun): from the kept index, the same files.
    again = release(sn_dir / "supernet.json", genomes, tmp_path / "again.json", with_start=True)
    assert again["levels_kept"] == len(named) and again["levels_removed"] == 0
    assert set(sn_dir.glob("layer*/*/*.safetensors")) == named


def test_without_the_start_only_the_genomes_layers_stay(built, tmp_path):
    sn_dir, genomes = _copy(built, tmp_path)
    index = read_json(sn_dir / "supernet.json")
    files = {(m["layer"], s, lvl["kept"]): lvl["file"] for m in index["layers"] for s in SUBLAYERS for lvl in m[s]}
    layers = read_json(genomes[0])["layers"]
    release(sn_dir / "supernet.json", genomes[:1], tmp_path / "released.json")
    assert set(sn_dir.glob("layer*/*/*.safetensors")) == {
        sn_dir / files[(l, s, layer[s])] for l, layer in enumerate(layers) for s in SUBLAYERS
    }


def test_a_genome_of_another_supernet_releases_nothing(built, tmp_path):
    sn_dir, genomes = _copy(built, tmp_path)
    genome = read_json(genomes[1])
    genome["layers"][0]["mlp"] += 1  # no level keeps this many channels
    write_json(genomes[1], genome)
    before = {p: digest(p) for p in sn_dir.rglob("*") if p.is_file()}
    with pytest.raises(ReleaseError, match="genomes name levels this supernet lacks"):
        release(sn_dir / "supernet.json", genomes, tmp_path / "released.json", with_start=True)
    assert {p: digest(p) for p in sn_dir.rglob("*") if p.is_file()} == before


def test_a_released_supernet_refuses_a_genome_naming_a_removed_level(built, tmp_path):
    """Released again with genomes that name a level no longer on disk (only a rebuilt supernet
    has it): refused, and the kept levels stay."""
    sn_dir, genomes = _copy(built, tmp_path)
    index = read_json(sn_dir / "supernet.json")
    release(sn_dir / "supernet.json", genomes[1:], tmp_path / "released.json")
    kept = {p: digest(p) for p in sn_dir.rglob("*") if p.is_file()}
    genome = read_json(genomes[1])
    levels = [lvl["kept"] for lvl in index["layers"][0]["mlp"]]
    genome["layers"][0]["mlp"] = next(k for k in levels if k != genome["layers"][0]["mlp"])
    write_json(genomes[1], genome)
    with pytest.raises(ReleaseError, match="genomes name levels this supernet lacks"):
        release(sn_dir / "supernet.json", genomes[1:], tmp_path / "again.json")
    assert {p: digest(p) for p in sn_dir.rglob("*") if p.is_file()} == kept


def test_the_final_choice_and_export_read_a_released_supernet_unchanged(built, tmp_path):
    """select_tyr's scores (iteration 1's start and best) and the exported uniform model are the
    same before and after the release, read through the kept index (format.read_supernet)."""
    sn_dir, genomes = _copy(built, tmp_path)
    run = built

    def score():
        kl = select.score(select.candidates([genomes[0]]), run["model"], run["topk"], run["tokens"])
        return {name: values.tolist() for name, values in kl.items()}

    def exported(out):
        export(run["model"], run["spec"], genomes[1], out, method="uniform")
        return digest(out / "model.safetensors")

    scores, model = score(), exported(tmp_path / "before")
    release(sn_dir / "supernet.json", genomes, tmp_path / "released.json", with_start=True)
    assert (sn_dir / KEPT_INDEX).exists() and not (sn_dir / "supernet.json").exists()
    assert score() == scores and set(scores) == {"start", "iter1"}
    assert exported(tmp_path / "after") == model

import json

import pytest

from tyr.model.spec import ModelSpec
from tyr.supernet.levels import write_levels


def smollm2_like(tmp_path, layers=2):
    spec = ModelSpec(
        architecture="LlamaForCausalLM",
        model_type="llama",
        num_layers=layers,
        hidden_size=576,
        num_heads=9,
        num_kv_heads=3,
        head_dim=64,
        intermediate_size=[1536, 1024][:layers],
        vocab_size=49152,
        tie_word_embeddings=True,
    )
    path = tmp_path / "spec.json"
    spec.to_json(path)
    return spec, path


def test_first_iteration_spans_the_target(tmp_path):
    spec, path = smollm2_like(tmp_path)
    lv = write_levels(path, tmp_path / "levels.json", target_sparsity=0.5, delta=0.125, n_levels=9, iteration=1)
    assert lv == json.loads((tmp_path / "levels.json").read_text())
    # 9 heads at 0, .125, ..., 1 sparsity: removed = round-half-up(s * 9) = 0,1,2,3,5,6,7,8,9.
    assert lv["layers"][0]["attn"] == {"kept": [9, 8, 7, 6, 4, 3, 2, 1, 0], "centre": 4}
    assert lv["layers"][0]["mlp"] == {"kept": [1536 - 192 * k for k in range(9)], "centre": 768}
    # Layer 1 has its own width: 1024 = 64 groups of 16, 1/8 of which is 8 groups.
    assert lv["layers"][1]["mlp"]["kept"] == [1024 - 128 * k for k in range(9)]
    assert lv["iteration"] == 1 and lv["delta"] == 0.125


def test_levels_are_clipped_deduplicated_and_snapped(tmp_path):
    spec, path = smollm2_like(tmp_path)
    lv = write_levels(path, tmp_path / "l.json", target_sparsity=0.8, delta=0.05, n_levels=11, iteration=1)
    for layer, entry in enumerate(lv["layers"]):
        for sub, units in (("attn", 9), ("mlp", spec.intermediate_size[layer])):
            kept = entry[sub]["kept"]
            assert kept == sorted(set(kept), reverse=True) and entry[sub]["centre"] in kept
            assert all(0 <= k <= units for k in kept)
            if sub == "mlp":
                assert all(k % 16 == 0 for k in kept)
    # 0.8 ± 0.25 reaches past 100%: clipped, so the sparsest level is the empty sublayer.
    assert lv["layers"][0]["mlp"]["kept"][-1] == 0
    # 9 heads cannot resolve 5% steps: duplicates collapse.
    assert len(lv["layers"][0]["attn"]["kept"]) < 11


def test_second_iteration_recentres_on_the_previous_genome(tmp_path):
    spec, path = smollm2_like(tmp_path)
    genome = tmp_path / "best.json"
    genome.write_text(json.dumps({"layers": [{"attn": 6, "mlp": 1152}, {"attn": 2, "mlp": 320}]}))
    lv = write_levels(
        path, tmp_path / "l2.json", target_sparsity=0.5, delta=0.125, n_levels=9, iteration=2, previous_genome=genome
    )
    assert lv["delta"] == 0.0625
    l0, l1 = lv["layers"]
    # Sparsity 1 - 6/9 ± k/16, snapped to heads: 9 levels collapse to 5.
    assert l0["attn"] == {"kept": [8, 7, 6, 5, 4], "centre": 6}
    # 1152/1536 = .75 kept; 1/16 of 96 groups = 6 groups = 96 channels per step.
    assert l0["mlp"] == {"kept": [1536, 1440, 1344, 1248, 1152, 1056, 960, 864, 768], "centre": 1152}
    # 320/1024 kept: 64 channels a step, clipped at 0.
    assert l1["mlp"] == {"kept": [576, 512, 448, 384, 320, 256, 192, 128, 64], "centre": 320}
    assert l1["attn"]["centre"] == 2 and l1["attn"]["kept"] == [4, 3, 2, 1, 0]
    with pytest.raises(ValueError, match="previous"):
        write_levels(path, tmp_path / "x.json", target_sparsity=0.5, delta=0.125, n_levels=9, iteration=2)


def test_levels_are_deterministic(tmp_path):
    _, path = smollm2_like(tmp_path)
    for name in ("a.json", "b.json"):
        write_levels(path, tmp_path / name, target_sparsity=0.37, delta=0.1, n_levels=7, iteration=1)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()

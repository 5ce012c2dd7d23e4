import pytest
import torch

from helpers.supernet_layer import hidden, levels_of, prepare, rope
from tyr.core.io import read_json
from tyr.model import adapter
from tyr.supernet import format as supernet
from tyr.supernet.accumulate import expected_projection, level_weights
from tyr.supernet.local_prune import Hessian, prune_levels


def test_level_weights_are_normalised_densities():
    assert level_weights([8, 6, 2, 0], 8) == pytest.approx([0.5, 0.375, 0.125, 0.0])
    assert level_weights([0], 8) == [0.0]


def test_expected_projection_scatters_the_weighted_levels():
    w1, w2 = torch.randn(3, 4), torch.randn(3, 2)
    levels = [(torch.tensor([0, 1]), w1), (torch.tensor([1]), w2), (torch.tensor([], dtype=torch.long), w1[:, :0])]
    W = expected_projection(levels, [0.6, 0.4, 0.0], d_in=6, group=2)
    ref = torch.zeros(3, 6)
    ref[:, :4] += 0.6 * w1
    ref[:, 2:4] += 0.4 * w2
    assert torch.allclose(W, ref)


def variant_average(variants, x, pos):
    """Σ_e w_e · (output of the real pruned layer e on x)."""
    return sum(w * layer(x, pos) for layer, w in variants)


@pytest.mark.parametrize(
    "model_type,overrides", [("llama", {"attention_bias": True, "mlp_bias": True}), ("qwen2", {}), ("qwen3", {})]
)
def test_expected_output_is_the_average_of_real_pruned_layers(tmp_path, tiny_model_dir, model_type, overrides):
    s = prepare(tmp_path, tiny_model_dir, model_type, **overrides)
    layer = 1  # a middle layer, fed layer 0's expected output
    s.build(tmp_path / "l0", 0)
    x = hidden(tmp_path / "l0" / "next.zarr")
    manifest = s.build(tmp_path / "l1", layer, inputs=tmp_path / "l0" / "next.zarr")
    dense = adapter.load_state(s.model_dir, adapter.layer_prefix(layer))
    config = adapter.load_config(s.model_dir)
    attn, mlp = levels_of(tmp_path / "l1" / "layer", "attn"), levels_of(tmp_path / "l1" / "layer", "mlp")
    pos = rope(s.model_dir, x)

    def pruned(a, m):
        return supernet.pruned_layer(s.spec, config, layer, dense, a, m)

    # Attention variants alone (MLP empty): x + attn_e(x), then MLP variants alone on that expectation.
    h = variant_average([(pruned(attn[e["kept"]], mlp[0]), e["weight"]) for e in manifest["attn"]], x, pos)
    y = variant_average([(pruned(attn[0], mlp[e["kept"]]), e["weight"]) for e in manifest["mlp"]], h, pos)
    out = hidden(tmp_path / "l1" / "next.zarr")
    assert torch.allclose(out, y, atol=1e-4, rtol=1e-4)
    dense_layer = adapter.decoder_layer(config, layer, dense)
    assert not torch.allclose(out, dense_layer(x, pos), atol=1e-3)  # the expectation is not the dense output

    # The MLP was calibrated on the expected attention output h (it sees attention pruning).
    H = Hessian(s.spec.intermediate_size[layer])
    H.add(adapter.down_proj_input(dense_layer, h))
    kept = [e["kept"] for e in manifest["mlp"]]
    ref = prune_levels(dense["mlp.down_proj.weight"], H.mean(), kept, per_step=16)
    for k in kept:
        assert torch.equal(ref[k][0], mlp[k]["kept_channels"])
        assert torch.allclose(ref[k][1], mlp[k]["down_proj.weight"], atol=1e-4)


def test_dense_accumulation_propagates_dense_outputs(tmp_path, tiny_model_dir):
    s = prepare(tmp_path, tiny_model_dir)
    s.build(tmp_path, 0, accumulate="dense")
    x = hidden(s.inputs)
    dense = adapter.load_layer(s.model_dir, 0)
    assert torch.allclose(hidden(tmp_path / "next.zarr"), dense(x, rope(s.model_dir, x)), atol=1e-5)
    with pytest.raises(ValueError, match="accumulate"):
        s.build(tmp_path / "bad", 0, accumulate="sum")


def test_centre_accumulation_propagates_the_centre_level(tmp_path, tiny_model_dir):
    s = prepare(tmp_path, tiny_model_dir)
    manifest = s.build(tmp_path, 0, accumulate="centre")
    x = hidden(s.inputs)
    levels = read_json(s.levels_json)["layers"][0]
    for sub in ("attn", "mlp"):
        assert [e["weight"] for e in manifest[sub]] == [
            float(e["kept"] == levels[sub]["centre"]) for e in manifest[sub]
        ]
    config = adapter.load_config(s.model_dir)
    dense = adapter.load_state(s.model_dir, adapter.layer_prefix(0))
    attn, mlp = levels_of(tmp_path / "layer", "attn"), levels_of(tmp_path / "layer", "mlp")
    centre = supernet.pruned_layer(
        s.spec, config, 0, dense, attn[levels["attn"]["centre"]], mlp[levels["mlp"]["centre"]]
    )
    assert torch.allclose(hidden(tmp_path / "next.zarr"), centre(x, rope(s.model_dir, x)), atol=1e-4)

"""Baselines (ShortGPT, Wanda-sp, FLAP, LLM-Pruner): each method's defining property against a
brute-force computation from its definition; every baseline: the sparsity budget and the
written supernet. The five related pruners have their own files (test_<method>.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers.baseline_factory import chosen_levels, dense_pass, flat, layer_pieces, prune_tokens, rebuild, spec_of, top
from tyr.methods import baselines
from tyr.methods.baselines import flap, llm_pruner, wanda_sp
from tyr.methods.baselines.common import budget
from tyr.model import adapter, sparsity
from tyr.model.spec import ModelSpec
from tyr.supernet.local_prune import channels

pytestmark = pytest.mark.usefixtures("single_thread")

METHODS = sorted(baselines.METHODS)
# Small search budgets for the searching methods: these tests check format and budget, not search quality.
FAST = {
    "search_llm": {"population": 4, "parents": 2, "mutations": 2, "crossovers": 1, "epochs": 1},
    "nirvana": {"candidates": 2},
    "adapruner": {"trials": 3},
}


# ---- ShortGPT ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target, n_removed", [(0.5, 3), (0.2, 1)])
def test_shortgpt_removes_whole_layers_in_block_influence_order(prepared, tmp_path, target, n_removed):
    model_dir, tokens_zarr = prepared(num_hidden_layers=6)
    genome_json = baselines.run("shortgpt", model_dir, tokens_zarr, tmp_path / "shortgpt", target_sparsity=target)
    _, _, acts = dense_pass(model_dir, prune_tokens(tokens_zarr))
    bi = []
    for a in acts:  # BI = 1 − mean over tokens of cos(x_in, x_out)
        x, y = a["x"].double(), a["y"].double()
        bi.append(1 - ((x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1))).mean().item())
    genome, _, levels = chosen_levels(genome_json)
    assert genome["baseline"]["block_influence"] == pytest.approx(bi, rel=1e-6)
    removed = sorted(top([-b for b in bi], n_removed))  # 6 equal layers: n layers = n/6 of the backbone
    assert genome["baseline"]["removed_layers"] == removed
    for l, ((attn, mlp), choice) in enumerate(zip(levels, genome["layers"])):
        gone = l in removed
        assert choice == ({"attn": 0, "mlp": 0} if gone else {"attn": 4, "mlp": 96})
        assert len(attn["kept_heads"]) == (0 if gone else 4) and len(mlp["kept_channels"]) == (0 if gone else 96)
    assert genome["sparsity"] == pytest.approx(n_removed / 6)

    # A removed layer passes the residual stream through; a kept one is the dense layer.
    layers = rebuild(model_dir, levels)
    _, pos, acts = dense_pass(model_dir, prune_tokens(tokens_zarr, 2))
    for l, (layer, a) in enumerate(zip(layers, acts)):
        expected = a["x"] if l in removed else a["y"]
        torch.testing.assert_close(layer(a["x"], pos), expected)


# ---- Wanda-sp ----------------------------------------------------------------------------------


def wanda_scores(layer, z, u, head_dim):
    """S_j = Σ_i |W_ij| ‖X_j‖₂ of o_proj (summed per head) and down_proj, from the definition."""
    o, down = layer.self_attn.o_proj.weight.double(), layer.mlp.down_proj.weight.double()
    heads = [
        sum((o[:, j].abs().sum() * z[:, j].norm()).item() for j in range(h * head_dim, (h + 1) * head_dim))
        for h in range(o.shape[1] // head_dim)
    ]
    return heads, [(down[:, j].abs().sum() * u[:, j].norm()).item() for j in range(down.shape[1])]


def test_wanda_sp_dense_keeps_the_highest_structured_wanda_scores(prepared, tmp_path):
    model_dir, tokens_zarr = prepared()
    spec = ModelSpec.from_json(model_dir / "spec.json")
    genome_json = wanda_sp.run(model_dir, tokens_zarr, tmp_path / "wanda", target_sparsity=0.5, sequential=False)
    genome, _, levels = chosen_levels(genome_json)
    _, _, acts = dense_pass(model_dir, prune_tokens(tokens_zarr))
    q = spec.num_heads - sparsity.snap_units(0.5, spec.num_heads)
    widths = {len(m["kept_channels"]) for _, m in levels}
    assert len(widths) == 1, "Wanda-sp prunes every layer at the same ratio"
    (m,) = widths
    for a, (attn, mlp) in zip(acts, levels):
        head_scores, chan_scores = wanda_scores(a["layer"], a["z"], a["u"], spec.head_dim)
        assert attn["kept_heads"].tolist() == top(head_scores, q)
        assert mlp["kept_channels"].tolist() == top(chan_scores, m)
        assert "o_proj.bias" not in attn and "down_proj.bias" not in mlp  # no compensation
        torch.testing.assert_close(
            attn["o_proj.weight"],
            a["layer"].self_attn.o_proj.weight[
                :, [h * spec.head_dim + i for h in attn["kept_heads"].tolist() for i in range(spec.head_dim)]
            ],
        )


def test_wanda_sp_sequential_scores_each_layer_on_the_pruned_layers_outputs(prepared, tmp_path):
    """The reference's order: a layer's statistics come from the already pruned layers before it."""
    model_dir, tokens_zarr = prepared(num_hidden_layers=4)
    spec = ModelSpec.from_json(model_dir / "spec.json")
    genome_json = wanda_sp.run(model_dir, tokens_zarr, tmp_path / "wanda", target_sparsity=0.5)
    genome, _, levels = chosen_levels(genome_json)
    model = adapter.load_model(model_dir, dtype=torch.float32)
    tokens = prune_tokens(tokens_zarr)
    q = spec.num_heads - sparsity.snap_units(0.5, spec.num_heads)
    kv_channels = sparsity.attention_params(spec, q, 1) // sparsity.mlp_params(spec, 1) + 1
    with torch.no_grad():
        x = model.model.embed_tokens(tokens)
        pos = model.model.position_embeddings(x)
        for layer, (attn, mlp) in zip(model.model.layers, levels):
            p = layer_pieces(layer, x, pos)  # x: the output of the pruned layers so far
            head_scores, chan_scores = wanda_scores(layer, flat(p["z"]), flat(p["u"]), spec.head_dim)
            assert attn["kept_heads"].tolist() == top(head_scores, q)
            assert mlp["kept_channels"].tolist() == top(chan_scores, len(mlp["kept_channels"]))
            x = rebuild_one(model_dir, layer, attn, mlp)(x, pos)
    widths = [len(m["kept_channels"]) for _, m in levels]
    assert max(widths) - min(widths) <= kv_channels, "MLP widths are uniform up to one KV head's worth"
    assert abs(genome["sparsity"] - 0.5) <= spec.num_layers * sparsity.mlp_params(
        spec, 1
    ) / sparsity.backbone_prunable_params(spec)
    dense_genome = wanda_sp.run(model_dir, tokens_zarr, tmp_path / "dense", target_sparsity=0.5, sequential=False)
    assert chosen_levels(dense_genome)[0]["layers"] != genome["layers"] or any(
        a["kept_channels"].tolist() != b["kept_channels"].tolist()
        for (_, a), (_, b) in zip(levels, chosen_levels(dense_genome)[2])
    ), "sequential statistics change the choice"


def rebuild_one(model_dir, layer, attn, mlp):
    """A pruned layer with the dense layer's index, from its two level files."""
    spec = ModelSpec.from_json(model_dir / "spec.json")
    config = adapter.load_config(model_dir)
    from tyr.supernet.format import pruned_layer

    index = layer.self_attn.layer_idx
    return pruned_layer(spec, config, index, adapter.load_state(model_dir, adapter.layer_prefix(index)), attn, mlp)


# ---- FLAP --------------------------------------------------------------------------------------


def flap_scores(spec, acts, over, square=True):
    """Standardised fluctuation scores from the definition: S_j = Var[X_j] · ‖W_:,j‖² (squared for
    attention channels, as FLAP's reference code)."""
    heads, chans = [], []
    for a in acts:
        layer = a["layer"]
        o, down = layer.self_attn.o_proj.weight.double(), layer.mlp.down_proj.weight.double()
        s_o = (a["z"].var(0, unbiased=True) * (o**2).sum(0)) ** (2 if square else 1)
        s_d = a["u"].var(0, unbiased=True) * (down**2).sum(0)
        if over == "layer":  # each module of each layer on its own; a head = mean of its channels' Ŝ
            s_o, s_d = (s_o - s_o.mean()) / s_o.std(), (s_d - s_d.mean()) / s_d.std()
            heads.append(s_o.reshape(spec.num_heads, spec.head_dim).mean(1))
        else:
            heads.append(s_o.reshape(spec.num_heads, spec.head_dim).sum(1))
        chans.append(s_d)
    h, c = torch.stack(heads), torch.stack(chans)
    if over == "model":  # all heads of all layers; all channels of all layers
        h, c = (h - h.mean()) / h.std(), (c - c.mean()) / c.std()
    return h, c


@pytest.mark.parametrize("over, square", [("layer", True), ("model", True), ("layer", False)])
def test_flap_structure_is_a_global_threshold_on_standardised_fluctuation(prepared, tmp_path, over, square):
    model_dir, tokens_zarr = prepared(num_hidden_layers=4)
    spec = ModelSpec.from_json(model_dir / "spec.json")
    genome_json = flap.run(
        model_dir, tokens_zarr, tmp_path / "flap", target_sparsity=0.5, standardise=over, square_attention=square
    )
    _, _, levels = chosen_levels(genome_json)
    heads, chans = flap_scores(spec, dense_pass(model_dir, prune_tokens(tokens_zarr))[2], over, square)
    kept, removed = [], []
    for l, (attn, mlp) in enumerate(levels):
        keep_h, keep_c = set(attn["kept_heads"].tolist()), set(mlp["kept_channels"].tolist())
        for h in range(spec.num_heads):
            (kept if h in keep_h else removed).append(heads[l, h].item())
        for c in range(spec.intermediate_size[l]):
            (kept if c in keep_c else removed).append(chans[l, c].item())
    assert removed and kept
    assert max(removed) < min(kept), "one global threshold across layers and module types"
    widths = {len(m["kept_channels"]) for _, m in levels}
    assert len(widths) > 1, "the structure adapts across layers"


def _mean_output(module, inputs):
    """A sublayer's output averaged over every calibration token."""
    return module(*inputs).double().reshape(-1, inputs[0].shape[-1]).mean(0)


@pytest.mark.parametrize("over", ["layer", "model"])
def test_flap_bias_compensation_restores_each_sublayers_output_mean(prepared, tmp_path, over):
    model_dir, tokens_zarr = prepared(num_hidden_layers=4)
    genome_json = flap.run(model_dir, tokens_zarr, tmp_path / "flap", target_sparsity=0.5, standardise=over)
    genome, _, levels = chosen_levels(genome_json)
    layers = rebuild(model_dir, levels)
    _, pos, acts = dense_pass(model_dir, prune_tokens(tokens_zarr))

    # In residual-stream order: (dense mean output, pruned mean output or None if the sublayer is gone,
    # pruned module, dense output projection).
    stream = []
    for a, pruned in zip(acts, layers):
        dense = a["layer"]
        x_attn, x_mlp = dense.input_layernorm(a["x"]), dense.post_attention_layernorm(a["h"])
        with torch.no_grad():
            for dense_mod, pruned_mod, inp in (
                (dense.self_attn, pruned.self_attn, (x_attn, pos)),
                (dense.mlp, pruned.mlp, (x_mlp,)),
            ):
                stream.append(
                    (
                        _mean_output(dense_mod, inp),
                        None if pruned_mod is None else _mean_output(pruned_mod, inp),
                        pruned_mod,
                        getattr(dense_mod, "o_proj", None) or dense_mod.down_proj,
                    )
                )
    vanished = [p is None for _, p, _, _ in stream]
    if over == "model":
        assert any(vanished), "this structure removes whole sublayers: the carried constant is exercised"
    leading = next(i for i, v in enumerate(vanished) if not v)
    assert genome["baseline"]["uncompensated_sublayers"] == leading
    for i, (dense_mean, pruned_mean, module, _) in enumerate(stream):
        if pruned_mean is None:
            continue
        expected = dense_mean.clone()
        for j in range(i + 1, len(stream)):  # vanished sublayers right after this one hand it their mean
            if not vanished[j]:
                break
            expected += stream[j][0]
        torch.testing.assert_close(pruned_mean, expected, atol=1e-6, rtol=1e-5)
        # ... and the bias is what does it: where units were removed, without it the mean is off.
        proj = module.o_proj if hasattr(module, "o_proj") else module.down_proj
        dense_proj = stream[i][3]
        if proj.in_features < dense_proj.in_features or (i + 1 < len(stream) and vanished[i + 1]):
            assert not torch.allclose(pruned_mean - proj.bias.double(), expected, atol=1e-6, rtol=1e-5)


def test_flap_without_compensation_keeps_the_dense_bias(prepared, tmp_path):
    model_dir, tokens_zarr = prepared()
    genome_json = flap.run(model_dir, tokens_zarr, tmp_path / "flap", target_sparsity=0.5, compensate=False)
    for attn, mlp in chosen_levels(genome_json)[2]:
        assert "o_proj.bias" not in attn and "down_proj.bias" not in mlp  # llama has no o/down bias


# ---- LLM-Pruner --------------------------------------------------------------------------------


def independent_taylor(model_dir, tokens, spec, taylor):
    """Group importance from autograd through the Hugging Face model, by explicit loops."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model(input_ids=tokens, labels=tokens).loss.backward()
    d, g = spec.head_dim, spec.group_size

    def member(w, grad):
        wg = w.detach().double() * grad.double()
        return wg.abs().sum().item() if taylor == "element" or wg.numel() == 1 else abs(wg.sum().item())

    def rows(lin, idx):  # one member per row (+ one per bias element)
        total = sum(member(lin.weight[i], lin.weight.grad[i]) for i in idx)
        if lin.bias is not None:
            total += sum(member(lin.bias[i : i + 1], lin.bias.grad[i : i + 1]) for i in idx)
        return total

    def cols(lin, idx):
        return sum(member(lin.weight[:, j], lin.weight.grad[:, j]) for j in idx)

    heads, chans = [], []
    for layer in model.model.layers:
        at, mlp = layer.self_attn, layer.mlp
        hs = []
        for h in range(spec.num_heads):
            block, kv = range(h * d, (h + 1) * d), range((h // g) * d, (h // g + 1) * d)
            hs.append(rows(at.q_proj, block) + cols(at.o_proj, block) + (rows(at.k_proj, kv) + rows(at.v_proj, kv)) / g)
        heads.append(hs)
        chans.append(
            [
                rows(mlp.gate_proj, [c]) + rows(mlp.up_proj, [c]) + cols(mlp.down_proj, [c])
                for c in range(spec.intermediate_size[0])
            ]
        )
    return heads, chans


@pytest.mark.parametrize("model_type, taylor", [("llama", "element"), ("qwen2", "element"), ("llama", "vector")])
def test_llm_pruner_group_scores_match_independent_autograd(prepared, tmp_path, model_type, taylor):
    model_dir, tokens_zarr = prepared(model_type)  # qwen2: q/k/v biases are group members too
    spec = ModelSpec.from_json(model_dir / "spec.json")
    n = 4
    tokens = prune_tokens(tokens_zarr, n)
    heads, chans = independent_taylor(model_dir, tokens, spec, taylor)

    model = adapter.load_model(model_dir, dtype=torch.float32)
    llm_pruner.loss_gradients(model, tokens, batch_size=3)  # uneven batches: still the mean loss
    for l, layer in enumerate(model.model.layers):
        h, c = llm_pruner.layer_scores(layer, spec, taylor)
        torch.testing.assert_close(h, torch.tensor(heads[l], dtype=torch.float64), rtol=1e-4, atol=1e-9)
        torch.testing.assert_close(c, torch.tensor(chans[l], dtype=torch.float64), rtol=1e-4, atol=1e-9)

    genome_json = llm_pruner.run(
        model_dir, tokens_zarr, tmp_path / "llmp", target_sparsity=0.5, taylor=taylor, max_seqs=n
    )
    genome, _, levels = chosen_levels(genome_json)
    q = spec.num_heads - sparsity.snap_units(0.5, spec.num_heads)
    for l, (attn, mlp) in enumerate(levels):
        assert attn["kept_heads"].tolist() == top(heads[l], q)
        assert mlp["kept_channels"].tolist() == top(chans[l], genome["layers"][0]["mlp"])
    assert genome["baseline"]["sequences"] == n


def test_layer_range_scales_llm_pruners_published_range_to_depth():
    assert budget.layer_range(32, "scaled") == list(range(4, 30))  # the reference scripts' [4, 30)
    assert budget.layer_range(30, "scaled") == list(range(4, 28))  # SmolLM2-135M
    assert budget.layer_range(3, "scaled") == [0, 1, 2]
    assert budget.layer_range(6, [2, 5]) == [2, 3, 4] and budget.layer_range(4, "all") == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="layer range"):
        budget.layer_range(4, [3, 9])


def test_llm_pruner_prunes_only_its_layer_range_at_one_ratio(prepared, tmp_path):
    model_dir, tokens_zarr = prepared(num_hidden_layers=6)
    spec = ModelSpec.from_json(model_dir / "spec.json")
    genome_json = llm_pruner.run(
        model_dir, tokens_zarr, tmp_path / "llmp", target_sparsity=0.3, layers=[1, 5], max_seqs=2
    )
    genome, _, levels = chosen_levels(genome_json)
    assert genome["baseline"]["layers"] == [1, 5]
    for l, choice in enumerate(genome["layers"]):
        if l in (0, 5):
            assert choice == {"attn": spec.num_heads, "mlp": spec.intermediate_size[l]}
    assert len({(c["attn"], c["mlp"]) for c in genome["layers"][1:5]}) == 1
    assert abs(genome["sparsity"] - 0.3) <= 4 * sparsity.mlp_params(spec, 1) / sparsity.backbone_prunable_params(spec)
    too_small = llm_pruner.run(
        model_dir, tokens_zarr, tmp_path / "small", target_sparsity=0.5, layers=[0, 2], max_seqs=2
    )
    assert "cannot be met" in json.loads(Path(too_small).read_text())["baseline"]["off_target"]


# ---- every method: budget and format -------------------------------------------------------------


def unit_params(spec, method) -> int:
    """The parameter granularity of each method's structure decisions."""
    attn = sparsity.dense_sublayer_params(spec, "attn", 0)
    mlp = sparsity.dense_sublayer_params(spec, "mlp", 0)
    if method == "shortgpt":
        return attn + mlp  # one layer
    if method in ("flap", "numerical"):
        return sparsity.attention_params(spec, 1, 1)  # the costliest unit: a last head with its KV head
    if method == "nirvana":
        return sparsity.mlp_params(spec, 8)  # MLP widths move in steps of 8 channels
    if method == "search_llm":
        return int(0.005 * sparsity.backbone_prunable_params(spec))  # candidates off by more are dropped
    return spec.num_layers * sparsity.mlp_params(spec, 1)  # uniform: one channel in every layer


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("target", [0.3, 0.6])
def test_every_method_meets_the_target_within_one_unit(prepared, tmp_path, method, target):
    model_dir, tokens_zarr = prepared("qwen2", num_hidden_layers=4)
    spec = ModelSpec.from_json(model_dir / "spec.json")
    genome_json = baselines.run(
        method, model_dir, tokens_zarr, tmp_path / method, target_sparsity=target, **FAST.get(method, {})
    )
    genome, index, levels = chosen_levels(genome_json)
    assert genome["method"] == method and genome["target_sparsity"] == target
    kept = sum(
        sparsity.attention_params(spec, len(a["kept_heads"]), len(a["kept_kv_heads"]))
        + sparsity.mlp_params(spec, len(m["kept_channels"]))
        for a, m in levels
    )
    total = sparsity.backbone_prunable_params(spec)
    assert genome["sparsity"] == pytest.approx(sparsity.backbone_sparsity(spec, kept), abs=1e-12)
    assert abs(kept - (1 - target) * total) <= unit_params(spec, method)
    # The supernet index promises the same parameters as the level files hold.
    promised = sum(index["layers"][l][s][0]["params"] for l in range(spec.num_layers) for s in ("attn", "mlp"))
    assert promised == kept
    assert all(len(index["layers"][l][s]) == 1 for l in range(spec.num_layers) for s in ("attn", "mlp"))


def _expected_layer_output(dense, spec, pos, x, attn, mlp):
    """What a pruned layer must compute, from the dense layer and the level files alone: each
    sublayer's dense output-projection input (all heads, all channels) restricted to the kept
    units' columns, times the level's (possibly compensated) weight, plus its stored bias; a
    sublayer without units adds nothing. Independent of tyr's slicing of q/k/v and gate/up."""
    h = x
    z = dense.self_attn.heads(dense.input_layernorm(x), pos)
    if len(attn["kept_heads"]):
        h = x + z[..., channels(attn["kept_heads"], spec.head_dim)] @ attn["o_proj.weight"].T.to(x.dtype)
        h = h + attn["o_proj.bias"] if "o_proj.bias" in attn else h
    if not len(mlp["kept_channels"]):
        return h
    u = dense.mlp.channels(dense.post_attention_layernorm(h))
    y = h + u[..., mlp["kept_channels"]] @ mlp["down_proj.weight"].T.to(x.dtype)
    return y + mlp["down_proj.bias"] if "down_proj.bias" in mlp else y


# Every method on llama, and a compensating method (Numerical Pruning) on every other family: the
# adapter makes names canonical before any method runs, so methods x families adds nothing more.
REBUILD_CASES = [(m, "llama") for m in METHODS] + [("numerical", f) for f in ("qwen2", "qwen3", "phi3")]


@pytest.mark.parametrize("method, family", REBUILD_CASES)
def test_written_supernet_rebuilds_the_pruned_model(prepared, tmp_path, method, family):
    model_dir, tokens_zarr = prepared(family)
    genome_json = baselines.run(
        method, model_dir, tokens_zarr, tmp_path / method, target_sparsity=0.5, **FAST.get(method, {})
    )
    genome, _, levels = chosen_levels(genome_json)
    layers = rebuild(model_dir, levels)
    spec = spec_of(model_dir)
    _, pos, acts = dense_pass(model_dir, prune_tokens(tokens_zarr, 2))
    with torch.no_grad():
        for layer, choice, (attn, mlp), a in zip(layers, genome["layers"], levels, acts):
            assert (0 if layer.self_attn is None else layer.self_attn.num_heads) == choice["attn"]
            assert choice["attn"] == len(attn["kept_heads"])
            assert (0 if layer.mlp is None else layer.mlp.down_proj.in_features) == choice["mlp"]
            expected = _expected_layer_output(a["layer"], spec, pos, a["x"], attn, mlp)
            assert torch.allclose(layer(a["x"], pos), expected, atol=1e-5, rtol=1e-4)
    assert (Path(genome_json).parent / "supernet" / "supernet.json").is_file()
    # The shared level writer (tyr.supernet.format.write_level) records each file's hash, as for Týr's levels.
    from tyr.core.io import sha256_file

    for manifest in (Path(genome_json).parent / "supernet").glob("layer*/manifest.json"):
        for sub in ("attn", "mlp"):
            (entry,) = json.loads(manifest.read_text())[sub]
            assert entry["sha256"] == sha256_file(manifest.parent / entry["file"])


@pytest.mark.parametrize("method", ["shortgpt", "wanda_sp", "llm_pruner", "numerical"])
def test_export_builds_the_pruned_model(prepared, tmp_path, method):
    """The shared export turns a baseline genome into a loadable, smaller HF model."""
    from transformers import AutoModelForCausalLM

    from tyr.export.hf import export

    model_dir, tokens_zarr = prepared()
    genome_json = baselines.run(method, model_dir, tokens_zarr, tmp_path / method, target_sparsity=0.5)
    summary = export(model_dir, model_dir / "spec.json", genome_json, tmp_path / method / "pruned", method=method)
    assert summary["sparsity"] == pytest.approx(json.loads(Path(genome_json).read_text())["sparsity"])
    model = AutoModelForCausalLM.from_pretrained(tmp_path / method / "pruned", trust_remote_code=True)
    assert torch.isfinite(model(prune_tokens(tokens_zarr, 1)).logits).all()


def test_unknown_method_is_refused(prepared, tmp_path):
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.run("magnitude", "m", "t", tmp_path, target_sparsity=0.5)

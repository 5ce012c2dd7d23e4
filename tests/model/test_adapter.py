import pytest
import torch

from tyr.model import adapter, sparsity
from tyr.model.families import UnsupportedArchitecture, spec_from_config


def test_tyr_forward_matches_transformers(tiny_model_dir, model_type):
    from transformers import AutoModelForCausalLM

    path = tiny_model_dir(model_type)
    ref = AutoModelForCausalLM.from_pretrained(path).eval()
    ours = adapter.load_model(path)
    ids = torch.randint(0, 128, (2, 17))
    with torch.no_grad():
        assert torch.allclose(ours(ids).logits, ref(ids).logits, atol=1e-5)


def test_tied_embeddings_share_storage(tiny_model_dir):
    ours = adapter.load_model(tiny_model_dir("llama", tie_word_embeddings=True))
    assert ours.lm_head.weight is ours.model.embed_tokens.weight


def test_spec_param_counts_match_tensors(tiny_model_dir, model_type):
    from transformers import AutoConfig

    path = tiny_model_dir(model_type)
    spec = spec_from_config(AutoConfig.from_pretrained(path))
    state = adapter.load_state(path)
    backbone = sum(v.numel() for k, v in state.items() if k.startswith("model.layers."))
    prunable = sum(v.numel() for k, v in state.items() if k.startswith("model.layers.") and "proj" in k)
    assert spec.params["backbone"] == backbone
    assert spec.params["backbone_prunable"] == prunable == sparsity.backbone_prunable_params(spec)
    assert spec.params["total"] == sum(v.numel() for v in state.values())


def test_unsupported_architecture_is_named():
    from transformers import AutoConfig

    cfg = AutoConfig.for_model("gpt2")
    with pytest.raises(UnsupportedArchitecture, match="gpt2"):
        spec_from_config(cfg)


def test_generate_with_cache_matches_full_forward(tiny_model_dir):
    ours = adapter.load_model(tiny_model_dir("llama"))
    ids = torch.randint(3, 128, (1, 5))
    out = ours.generate(ids, max_new_tokens=6, do_sample=False)
    # Greedy decoding with the KV cache must agree with recomputing everything each step.
    seq = ids
    for _ in range(6):
        nxt = ours(seq).logits[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], 1)
    assert torch.equal(out, seq)


@pytest.mark.parametrize("q_to_kv", [[0, 1, 1], [1, 1], [0, 0, 1, 1]])
def test_decoding_on_the_cache_equals_the_full_forward(q_to_kv):
    """One-token decode (query heads grouped per KV head, padded where pruning left uneven
    groups) gives the same logits as recomputing the whole sequence."""
    from tyr.model.modeling_tyr import TyrConfig, TyrForCausalLM

    torch.manual_seed(0)
    kv = max(q_to_kv) + 1
    config = TyrConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        intermediate_size=48,
        layer_q_heads=[len(q_to_kv), 4],
        layer_kv_heads=[kv, 2],
        layer_q_to_kv=[q_to_kv, [0, 0, 1, 1]],
        layer_intermediate=[48, 48],
    )
    model = TyrForCausalLM(config).eval()
    ids = torch.randint(3, 64, (2, 9))
    with torch.no_grad():
        full = model(ids).logits
        out = model(ids[:, :5], use_cache=True)
        steps = [out.logits]
        for i in range(5, 9):
            out = model(ids[:, i : i + 1], past_key_values=out.past_key_values, use_cache=True)
            steps.append(out.logits)
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)

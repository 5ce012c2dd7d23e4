import pytest
import torch

from tyr import model as adapter
from tyr import sparsity


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
    spec = adapter.spec_from_config(AutoConfig.from_pretrained(path))
    state = adapter.load_state(path)
    backbone = sum(v.numel() for k, v in state.items() if k.startswith("model.layers."))
    prunable = sum(v.numel() for k, v in state.items() if k.startswith("model.layers.") and "proj" in k)
    assert spec.params["backbone"] == backbone
    assert spec.params["backbone_prunable"] == prunable == sparsity.backbone_prunable_params(spec)
    assert spec.params["total"] == sum(v.numel() for v in state.values())


def test_unsupported_architecture_is_named():
    from transformers import AutoConfig

    cfg = AutoConfig.for_model("gpt2")
    with pytest.raises(adapter.UnsupportedArchitecture, match="gpt2"):
        adapter.spec_from_config(cfg)


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

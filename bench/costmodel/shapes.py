"""The shapes the cost model measures (random Llama-architecture layers) and predicts, as
`tyr.model.spec.ModelSpec`s: parameters come from `tyr.model.sparsity`, FLOPs from bench/floors.py,
so the model counts what the product and the floors count."""

from __future__ import annotations

GiB = 1 << 30

# Llama-architecture shapes: hidden d, MLP width m, query / KV heads, head_dim, vocab.
SHAPES = {
    "tiny": dict(hidden=256, intermediate=768, heads=4, kv_heads=2, head_dim=64, vocab=8192),
    "135m": dict(hidden=576, intermediate=1536, heads=9, kv_heads=3, head_dim=64, vocab=49152),
    "360m": dict(hidden=960, intermediate=2560, heads=15, kv_heads=5, head_dim=64, vocab=49152),
    "1b": dict(hidden=2048, intermediate=8192, heads=32, kv_heads=8, head_dim=64, vocab=128256),
}


HF_NAMES = dict(
    hidden="hidden_size", intermediate="intermediate_size", heads="num_attention_heads", kv_heads="num_key_value_heads",
    head_dim="head_dim", vocab="vocab_size", layers="num_hidden_layers",
)  # fmt: skip


def hf_kwargs(shape: dict, **extra) -> dict:
    """`tyr.testing.tiny_hf_model` keywords of a shape above (random weights of its layer shape)."""
    return {**{HF_NAMES[k]: v for k, v in shape.items() if k in HF_NAMES}, **extra}


TARGETS = {
    "Llama-3.1-8B": dict(layers=32, hidden=4096, intermediate=14336, heads=32, kv_heads=8, head_dim=128, vocab=128256),
    "Llama-3.1-70B": dict(layers=80, hidden=8192, intermediate=28672, heads=64, kv_heads=8, head_dim=128, vocab=128256),
}
# prune_levels alone: (sublayer, width, d_out, group, per_step). 4096/128 is Llama-3.1-8B's attention.
SWEEP = [
    ("mlp", 1024, 288, 1, 16),
    ("mlp", 2048, 576, 1, 16),
    ("mlp", 4096, 1152, 1, 16),
    ("attn", 2048, 2048, 64, 1),
    ("attn", 4096, 4096, 128, 1),
]
QUICK_SWEEP = [("mlp", 512, 160, 1, 16), ("attn", 512, 512, 64, 1)]

# GPU figures are extrapolations: work (FLOPs, bytes) divided by these assumed sustained rates for
# one H100/H200 SXM-class device. Peaks (NVIDIA datasheets): bf16 dense 989 TFLOP/s, fp32 67,
# fp64 tensor 67, HBM 3.35 (H100) / 4.8 (H200) TB/s. Sustained = half of peak for large GEMMs
# (what well-shaped transformer GEMMs reach), 70 % of the H100's HBM for streaming passes, and
# host→device copies of pageable tensors at 20 GB/s (PCIe 5 x16 peaks at 64).
GPU = dict(
    name="H100/H200 SXM class (assumed, not measured)",
    bf16_flops=0.5 * 989e12,
    fp32_flops=0.5 * 67e12,
    fp64_flops=0.5 * 67e12,
    hbm_bytes=0.7 * 3.35e12,
    h2d_bytes=20e9,
    launch_s=10e-6,
    host_threads_speedup=4.0,
    memory_bytes=80e9,  # an H100's HBM (an H200 has 141 GB)
)
# The supernet's calibration stream stays in zarr on the host (devices.supernet moves the layer,
# its statistics and one batch): uncompressed float32 chunks read in the job's batches and one
# store written, on one thread. Measured by bench/layer_scale.py (its stream pass, after the job).
STREAM = dict(read_bytes=0.5e9, write_bytes=0.2e9)
# The host side of a GPU node (the supernet, dense_topk and module builds run there in this
# version): the paper preset's 16 threads, assumed 10x one thread (not measurable on 2 cores).
CPU_THREADS_SPEEDUP = 10.0


def spec_of(s: dict, layers: int = 1, tied: bool = True):
    """The ModelSpec of a shape dict (no biases: the Llama architecture; the measured random
    models tie their embeddings, Llama-3.1-8B and -70B do not)."""
    from tyr.model.spec import ModelSpec

    return ModelSpec(
        architecture="LlamaForCausalLM",
        model_type="llama",
        num_layers=layers,
        hidden_size=s["hidden"],
        num_heads=s["heads"],
        num_kv_heads=s["kv_heads"],
        head_dim=s["head_dim"],
        intermediate_size=[s["intermediate"]] * layers,
        vocab_size=s["vocab"],
        tie_word_embeddings=tied,
    )


def layer_params(s: dict) -> int:
    """Prunable parameters of one dense decoder layer (tyr.model.sparsity)."""
    from tyr.model.sparsity import dense_sublayer_params

    spec = spec_of(s)
    return dense_sublayer_params(spec, "attn", 0) + dense_sublayer_params(spec, "mlp", 0)


def dense_layer_flops(s: dict, seq: int, keep: float = 1.0, kv_keep: float = 1.0) -> float:
    """FLOPs per token of one decoder layer keeping `keep` of its heads and channels (KV heads:
    `kv_keep`) at the mean causal context seq/2 (floors.layer_flops)."""
    from floors import layer_flops

    return layer_flops(
        spec_of(s), keep * s["heads"], keep * s["intermediate"], seq / 2, kv_heads=kv_keep * s["kv_heads"]
    )


def head_flops(s: dict) -> float:
    from floors import head_flops as head

    return head(spec_of(s))


def topk_flops(s: dict, n_seq: int, seq: int, layers: int = 1) -> float:
    """dense_topk over n_seq × seq tokens: the layers and the LM head (the top-k itself is not counted)."""
    return n_seq * seq * (layers * dense_layer_flops(s, seq) + head_flops(s))

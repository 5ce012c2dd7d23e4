"""Llama-family decoder with per-layer head counts, GQA mapping and MLP widths.

This file is self-contained (torch + transformers only): export copies it next to
the pruned weights so that `AutoModelForCausalLM.from_pretrained(path,
trust_remote_code=True)` works without tyr installed. tyr itself uses the same
classes for the dense model, the supernet and the search, so one forward
implementation is tested everywhere.

Per layer `i` the config records:
  layer_q_heads[i]      number of kept query heads
  layer_kv_heads[i]     number of kept KV heads
  layer_q_to_kv[i]      for each kept query head, the index of its KV head among the kept ones
  layer_intermediate[i] number of kept MLP channels
A layer with 0 query heads (or 0 MLP channels) has no attention (MLP) at all:
its residual branch is skipped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS


class TyrConfig(PretrainedConfig):
    model_type = "tyr_llama"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size=32000,
        hidden_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=None,
        intermediate_size=512,
        hidden_act="silu",
        rms_norm_eps=1e-6,
        max_position_embeddings=2048,
        rope_parameters=None,
        qkv_bias=False,
        o_bias=False,
        mlp_bias=False,
        down_bias=None,
        qk_norm=False,
        layer_q_heads=None,
        layer_kv_heads=None,
        layer_q_to_kv=None,
        layer_intermediate=None,
        tie_word_embeddings=False,
        source_model_type="llama",
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.rms_norm_eps = rms_norm_eps
        self.max_position_embeddings = max_position_embeddings
        self.rope_parameters = rope_parameters or {"rope_type": "default", "rope_theta": 10000.0}
        self.qkv_bias = qkv_bias
        self.o_bias = o_bias
        self.mlp_bias = mlp_bias
        # down_proj may carry a bias of its own (bias compensation, e.g. FLAP) when gate/up do not.
        self.down_bias = mlp_bias if down_bias is None else down_bias
        self.qk_norm = qk_norm
        self.source_model_type = source_model_type
        n, group = num_hidden_layers, num_attention_heads // num_key_value_heads
        self.layer_q_heads = list(layer_q_heads or [num_attention_heads] * n)
        self.layer_kv_heads = list(layer_kv_heads or [num_key_value_heads] * n)
        self.layer_q_to_kv = [
            list(m) for m in (layer_q_to_kv or [[h // group for h in range(num_attention_heads)]] * n)
        ]
        self.layer_intermediate = list(layer_intermediate or [intermediate_size] * n)
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)

    # On disk, `model_type` names the source architecture (e.g. "llama"), not "tyr_llama". Since
    # transformers 5, AutoTokenizer always reads config.json through AutoConfig, which asks "Do
    # you wish to run the custom code?" for a model type it does not know; under the source's
    # type the tokenizer (which needs no custom code) loads silently. The per-layer shape keys
    # mark a tyr config, and AutoConfig(trust_remote_code=True) still reaches this class via auto_map.
    def to_dict(self):
        out = super().to_dict()
        out["model_type"] = self.source_model_type
        return out

    @classmethod
    def get_config_dict(cls, *args, **kwargs):
        config_dict, kwargs = super().get_config_dict(*args, **kwargs)
        if "layer_q_heads" in config_dict:
            config_dict = {**config_dict, "model_type": cls.model_type}
        return config_dict, kwargs


class TyrRMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class TyrRotaryEmbedding(nn.Module):
    def __init__(self, config: TyrConfig):
        super().__init__()
        self.config = config
        inv_freq, self.attention_scaling = self.compute_inv_freq(config)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @staticmethod
    def compute_inv_freq(config):
        rope_type = config.rope_parameters.get("rope_type", "default")
        if rope_type != "default":
            return ROPE_INIT_FUNCTIONS[rope_type](config)
        base, dim = config.rope_parameters["rope_theta"], config.head_dim
        return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").float() / dim)), 1.0

    @torch.no_grad()
    def forward(self, x, position_ids):
        freqs = (self.inv_freq[None, :, None].float() @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(x.dtype), sin.to(x.dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(q, k, cos, sin):
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


class TyrAttention(nn.Module):
    """Attention over the kept query heads; each reads the KV head `q_to_kv` names."""

    def __init__(self, config: TyrConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_heads = config.layer_q_heads[layer_idx]
        self.num_kv_heads = config.layer_kv_heads[layer_idx]
        h, d = config.hidden_size, config.head_dim
        self.q_proj = nn.Linear(h, self.num_heads * d, bias=config.qkv_bias)
        self.k_proj = nn.Linear(h, self.num_kv_heads * d, bias=config.qkv_bias)
        self.v_proj = nn.Linear(h, self.num_kv_heads * d, bias=config.qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * d, h, bias=config.o_bias)
        if config.qk_norm:
            self.q_norm = TyrRMSNorm(d, config.rms_norm_eps)
            self.k_norm = TyrRMSNorm(d, config.rms_norm_eps)
        q_to_kv = list(config.layer_q_to_kv[layer_idx])
        self.q_to_kv_list = q_to_kv
        # Explicit device: the index must be real even when the module is built on "meta".
        self.register_buffer("q_to_kv", torch.tensor(q_to_kv, dtype=torch.long, device="cpu"), persistent=False)
        # A plain repeat is cheaper than a gather when every KV head serves equally many queries in order.
        groups = self.num_heads // max(self.num_kv_heads, 1)
        regular = q_to_kv == [h // groups for h in range(self.num_heads)] if groups else False
        self.repeat = groups if regular and groups * self.num_kv_heads == self.num_heads else None
        # Decoding one token reads each KV head once for all its query heads: the queries are laid
        # out in equal groups per KV head, padded where pruning left a KV head fewer queries
        # (slot j holds query head slots[j], or a zero query). SDPA's CPU kernel took 14 ms per
        # layer for one query token at 200 cached positions (60% of a step); this takes ~1 ms.
        width = max((q_to_kv.count(kv) for kv in range(self.num_kv_heads)), default=0)
        slots = [self.num_heads] * (self.num_kv_heads * width)
        for kv in range(self.num_kv_heads):
            for j, h in enumerate(h for h in range(self.num_heads) if q_to_kv[h] == kv):
                slots[kv * width + j] = h
        self.slot_lists = (slots, [slots.index(h) for h in range(self.num_heads)])
        self.group_width, self.padded = width, slots != list(range(self.num_heads))
        for name, values in zip(("slots", "unslot"), self.slot_lists):
            self.register_buffer(name, torch.tensor(values, dtype=torch.long, device="cpu"), persistent=False)

    def heads(self, hidden_states, position_embeddings, past_key_values=None):
        """Per-head attention output, concatenated: the input of o_proj."""
        b, t, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(b, t, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(hidden_states).view(b, t, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(hidden_states).view(b, t, -1, self.head_dim).transpose(1, 2)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, k, *position_embeddings)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        if t == 1 and past_key_values is not None:
            return self._decode(q, k, v).reshape(b, 1, self.num_heads * self.head_dim)
        if self.repeat is not None:
            k, v = k.repeat_interleave(self.repeat, dim=1), v.repeat_interleave(self.repeat, dim=1)
        else:
            k, v = k.index_select(1, self.q_to_kv), v.index_select(1, self.q_to_kv)
        s = k.shape[2]
        if t == s or t == 1:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1)
        else:  # a chunk after a cached prefix: causal with an offset
            mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)

    def _decode(self, q, k, v):
        """Attention of one query token per sequence over the cache, grouped by KV head
        (no copy of the cache per query head); returns [b, heads, 1, head_dim] in head order."""
        b = q.shape[0]
        if self.padded:  # a zero query fills the empty slots; its output is dropped below
            q = torch.cat([q, q.new_zeros(b, 1, 1, self.head_dim)], dim=1).index_select(1, self.slots)
        q = q.view(b, self.num_kv_heads, self.group_width, self.head_dim)
        scores = (q @ k.transpose(-1, -2)).float() * self.head_dim**-0.5
        out = scores.softmax(-1).to(v.dtype) @ v
        out = out.reshape(b, self.num_kv_heads * self.group_width, 1, self.head_dim)
        return out.index_select(1, self.unslot) if self.padded else out

    def forward(self, hidden_states, position_embeddings, past_key_values=None):
        return self.o_proj(self.heads(hidden_states, position_embeddings, past_key_values))


class TyrMLP(nn.Module):
    def __init__(self, config: TyrConfig, layer_idx: int):
        super().__init__()
        h, m = config.hidden_size, config.layer_intermediate[layer_idx]
        self.gate_proj = nn.Linear(h, m, bias=config.mlp_bias)
        self.up_proj = nn.Linear(h, m, bias=config.mlp_bias)
        self.down_proj = nn.Linear(m, h, bias=config.down_bias)
        self.act_fn = ACT2FN[config.hidden_act]

    def channels(self, x):
        """The input of down_proj."""
        return self.act_fn(self.gate_proj(x)) * self.up_proj(x)

    def forward(self, x):
        return self.down_proj(self.channels(x))


class TyrDecoderLayer(nn.Module):
    def __init__(self, config: TyrConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = TyrRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = TyrRMSNorm(config.hidden_size, config.rms_norm_eps)
        has_attn = config.layer_q_heads[layer_idx] > 0
        has_mlp = config.layer_intermediate[layer_idx] > 0
        self.self_attn = TyrAttention(config, layer_idx) if has_attn else None
        self.mlp = TyrMLP(config, layer_idx) if has_mlp else None

    def forward(self, hidden_states, position_embeddings, past_key_values=None):
        if self.self_attn is not None:
            a = self.self_attn(self.input_layernorm(hidden_states), position_embeddings, past_key_values)
            hidden_states = hidden_states + a
        if self.mlp is not None:
            hidden_states = hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))
        return hidden_states


class TyrPreTrainedModel(PreTrainedModel):
    config_class = TyrConfig
    base_model_prefix = "model"
    _no_split_modules = ["TyrDecoderLayer"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module):
        # Non-persistent buffers are not in the checkpoint: from_pretrained allocates them
        # empty and relies on this method to fill them, so they are always recomputed.
        if isinstance(module, TyrAttention):
            module.q_to_kv.copy_(torch.tensor(module.q_to_kv_list, dtype=torch.long))
            module.slots.copy_(torch.tensor(module.slot_lists[0], dtype=torch.long))
            module.unslot.copy_(torch.tensor(module.slot_lists[1], dtype=torch.long))
            return
        if isinstance(module, TyrRotaryEmbedding):
            module.inv_freq.copy_(module.compute_inv_freq(module.config)[0])
            return
        std = getattr(self.config, "initializer_range", 0.02)
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, TyrRMSNorm):
            module.weight.data.fill_(1.0)


class TyrModel(TyrPreTrainedModel):
    def __init__(self, config: TyrConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(TyrDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = TyrRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = TyrRotaryEmbedding(config)
        self.post_init()

    def position_embeddings(self, hidden_states, past_length=0):
        t = hidden_states.shape[1]
        position_ids = torch.arange(past_length, past_length + t, device=hidden_states.device)[None]
        return self.rotary_emb(hidden_states, position_ids)

    def forward(self, input_ids=None, inputs_embeds=None, past_key_values=None, use_cache=None, **kwargs):
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        pos = self.position_embeddings(hidden, past)
        for layer in self.layers:
            hidden = layer(hidden, pos, past_key_values)
        return self.norm(hidden), past_key_values


class TyrForCausalLM(TyrPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: TyrConfig):
        super().__init__(config)
        self.model = TyrModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        past_key_values=None,
        use_cache=None,
        labels=None,
        logits_to_keep=0,
        **kwargs,
    ):
        # Right padding (lm-eval's log-likelihood batches) needs no mask under causal attention;
        # left padding is not supported, so refuse it rather than return wrong numbers.
        if attention_mask is not None and not bool(attention_mask[:, 0].all()):
            raise ValueError("TyrForCausalLM does not support left padding; pad on the right")
        hidden, past_key_values = self.model(input_ids, inputs_embeds, past_key_values, use_cache)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=past_key_values)


TyrConfig.register_for_auto_class()
TyrForCausalLM.register_for_auto_class("AutoModelForCausalLM")

"""The fast engine's network: a Llama-family decoder run layer by layer over flat token rows.

Exact or refused. :func:`unsupported_reason` accepts a model only when every module the forward
runs is the exact transformers class this file mirrors (Llama, Mistral, Qwen2: the decoder layer,
attention, MLP, norms, rotary embedding, causal-LM head), and only where its attention and rotary
positions do not change with the sequence length within the context (sliding windows, dynamic and
longrope rotary scaling are refused when the context can reach them). Inside a layer the model's
own modules run wherever that costs nothing: the embedding, the MLP's activation, the rotary
embedding and ``apply_rotary_pos_emb``, the attention's ``scaling``. The RMS norms (five small
ops each in transformers, 3% of a decode step) are one fused ``F.rms_norm`` with the module's own
weight and epsilon, in float32 as the module computes. The products are replaced: q/k/v and
gate/up fused into one packed matrix each (with every bias the modules have), and attention over
the engine's caches, computed in float32 (:mod:`swirl.backends.attention`).

The weights are read again only when a parameter changed (the live policy in training), into the
buffers the packed layers already hold (:class:`swirl.backends.packed_linear.PackedLinear`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from swirl.backends.packed_linear import PackedLinear

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# model_type -> (module, class-name prefix) of the transformers families this file mirrors.
_FAMILIES = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2"}

# attend(layer, q [N, H, D], k [N, KV, D], v [N, KV, D]) stores k/v and returns [N, H * D].
Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _family_classes(model_type: str) -> dict[str, type]:
    prefix = _FAMILIES[model_type]
    module = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    names = ("ForCausalLM", "Model", "DecoderLayer", "Attention", "MLP", "RMSNorm")
    names += ("RotaryEmbedding",)
    return {name: getattr(module, prefix + name) for name in names}


def position_limit(model: PreTrainedModel) -> int | None:
    """The longest context (in tokens) the fast engine computes exactly for this model's
    attention and rotary positions; None: no limit of its own."""
    decoder = model.model
    limits = []
    rope = decoder.rotary_emb.rope_type
    if "dynamic" in rope:
        # Dynamic scaling recomputes the frequencies once a sequence outgrows this length.
        limits.append(int(decoder.rotary_emb.original_max_seq_len))
    elif rope == "longrope":
        # Longrope switches every position to the long factors beyond this length.
        limits.append(int(model.config.rope_parameters["original_max_position_embeddings"]))
    for layer in decoder.layers:
        window = _sliding_window(model, layer.self_attn)
        if window is not None:
            limits.append(int(window))  # positions q - k < window: a context this long fits
    return min(limits, default=None)


def _sliding_window(model: PreTrainedModel, attention: torch.nn.Module) -> int | None:
    if model.config.model_type == "mistral":
        return getattr(model.config, "sliding_window", None)  # MistralAttention reads the config
    return getattr(attention, "sliding_window", None)  # Qwen2: per layer type; Llama: none


def unsupported_reason(model: PreTrainedModel, context_length: int | None = None) -> str | None:
    """Why :class:`FastDecoder` cannot compute ``model`` exactly for sequences of up to
    ``context_length`` tokens (None: the model's ``max_position_embeddings``); None if it can."""
    config = model.config
    if config.model_type not in _FAMILIES:
        return f"model type {config.model_type!r} (supported: {', '.join(_FAMILIES)})"
    classes = _family_classes(config.model_type)
    if type(model) is not classes["ForCausalLM"]:
        return (
            f"{type(model).__name__} is not {classes['ForCausalLM'].__name__} (e.g. a PEFT wrapper)"
        )
    decoder = model.model
    checks = [
        (decoder, "Model"),
        (decoder.norm, "RMSNorm"),
        (decoder.rotary_emb, "RotaryEmbedding"),
    ]
    for layer in decoder.layers:
        checks += [(layer, "DecoderLayer"), (layer.self_attn, "Attention"), (layer.mlp, "MLP")]
        checks += [(layer.input_layernorm, "RMSNorm"), (layer.post_attention_layernorm, "RMSNorm")]
    for module, name in checks:
        if type(module) is not classes[name]:
            return f"{type(module).__name__} where {classes[name].__name__} was expected"
    for layer in decoder.layers:
        attn, mlp = layer.self_attn, layer.mlp
        linears = [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj]
        linears += [mlp.gate_proj, mlp.up_proj, mlp.down_proj]
        if any(type(m) is not torch.nn.Linear for m in linears):
            return "a projection is not a plain nn.Linear (e.g. LoRA adapters)"
    if type(model.lm_head) is not torch.nn.Linear:
        return "the LM head is not a plain nn.Linear"
    dtype = model.lm_head.weight.dtype
    if dtype not in (torch.float32, torch.bfloat16):
        return f"dtype {dtype} (supported: float32, bfloat16)"
    limit = position_limit(model)
    length = context_length or int(config.max_position_embeddings)
    if limit is not None and length > limit:
        return (
            f"a context of {length} tokens exceeds {limit}, beyond which this model's attention "
            "window or rotary scaling changes with the sequence length; pass context_length <= "
            f"{limit} to use the fast engine"
        )
    return None


class _RMSNorm:
    """The model's RMSNorm module (Llama/Mistral/Qwen2: ``weight * (x / rms(x)).to(dtype)`` with
    the rms in float32) as one fused op."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.eps = float(module.variance_epsilon)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)
        return self.module.weight.detach() * normed


class _Layer:
    """One decoder layer: fused and packed q/k/v and gate/up, the model's own norms, activation
    and attention scaling."""

    def __init__(self, layer: torch.nn.Module, rows_hint: int) -> None:
        self.module = layer
        attn, mlp = layer.self_attn, layer.mlp
        self.scale = float(attn.scaling)
        self.input_norm = _RMSNorm(layer.input_layernorm)
        self.post_norm = _RMSNorm(layer.post_attention_layernorm)
        self.act = mlp.act_fn
        self.qkv = PackedLinear(self._qkv_parts(), rows_hint=rows_hint)
        self.o = PackedLinear(self._o_parts(), rows_hint=rows_hint)
        self.gate_up = PackedLinear(self._gate_up_parts(), rows_hint=rows_hint)
        self.down = PackedLinear(self._down_parts(), rows_hint=rows_hint)

    def _qkv_parts(self) -> list:
        attn = self.module.self_attn
        return [(m.weight, m.bias) for m in (attn.q_proj, attn.k_proj, attn.v_proj)]

    def _o_parts(self) -> list:
        o = self.module.self_attn.o_proj
        return [(o.weight, o.bias)]

    def _gate_up_parts(self) -> list:
        mlp = self.module.mlp
        return [(mlp.gate_proj.weight, mlp.gate_proj.bias), (mlp.up_proj.weight, mlp.up_proj.bias)]

    def _down_parts(self) -> list:
        down = self.module.mlp.down_proj
        return [(down.weight, down.bias)]

    def load(self) -> None:
        """Read the layer's weights again into the packed buffers."""
        self.qkv.load(self._qkv_parts())
        self.o.load(self._o_parts())
        self.gate_up.load(self._gate_up_parts())
        self.down.load(self._down_parts())


class FastDecoder:
    """The forward pass of a supported causal LM (see :func:`unsupported_reason`) over flat token
    rows, with attention left to the caller (the engine's caches).

    ``rows_hint`` is the usual decode batch (it picks oneDNN's weight blocking);
    ``context_length`` the most positions it will be asked for. Not thread-safe.
    """

    def __init__(self, model: PreTrainedModel, *, context_length: int, rows_hint: int) -> None:
        reason = unsupported_reason(model, context_length)
        if reason is not None:
            raise ValueError(f"the fast decoder cannot run this model: {reason}")
        config = model.config
        self.model = model
        self.decoder = model.model
        self.context_length = context_length
        self.rows_hint = rows_hint
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = self.decoder.layers[0].self_attn.head_dim
        self.num_layers = config.num_hidden_layers
        self.dtype = model.lm_head.weight.dtype
        self.device = model.lm_head.weight.device
        # The model's own rotary application (same arithmetic, same dtype).
        self._apply_rotary = sys.modules[type(self.decoder).__module__].apply_rotary_pos_emb
        self._signature: tuple[tuple[int, int], ...] | None = None
        self._layers: list[_Layer] = []
        self._head: PackedLinear | None = None
        self._final_norm = _RMSNorm(self.decoder.norm)
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None

    def refresh(self) -> bool:
        """Read the weights again if any parameter changed since the last call; True if they
        did (cached keys and values are then stale). A change is a new tensor or a new version:
        every in-place update autograd sees (optimizer steps, ``load_state_dict``), not a write
        through ``param.data``."""
        signature = tuple((p.data_ptr(), p._version) for p in self.model.parameters())
        if signature == self._signature:
            return False
        layers = self.decoder.layers[: self.num_layers]
        head = self.model.lm_head
        if self._layers and all(a.module is b for a, b in zip(self._layers, layers, strict=True)):
            for layer in self._layers:
                layer.load()
            assert self._head is not None
            self._head.load([(head.weight, head.bias)])
        else:
            self._layers = [_Layer(layer, self.rows_hint) for layer in layers]
            self._head = PackedLinear([(head.weight, head.bias)], rows_hint=self.rows_hint)
        self._rope = None
        self._signature = signature
        return True

    def _rope_table(self, positions: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [n, D] for positions 0 .. n-1 (n >= ``positions``), from the model's own
        rotary module, never past the context length (past it, a dynamic or longrope embedding
        would switch every position to other frequencies)."""
        if positions > self.context_length:
            raise ValueError(
                f"position {positions - 1} is past the context length {self.context_length}"
            )
        if self._rope is None or self._rope[0].shape[0] < positions:
            n = min(
                max(positions, 2 * (0 if self._rope is None else self._rope[0].shape[0])),
                self.context_length,
            )
            weight = self.decoder.embed_tokens.weight
            ids = torch.arange(n, device=self.device)[None]
            cos, sin = self.decoder.rotary_emb(weight[:1], ids)
            self._rope = (cos[0], sin[0])
        return self._rope

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, attend: Attend) -> torch.Tensor:
        """Embed ``ids`` [N] at ``positions`` [N] and run every layer; ``attend`` stores each
        layer's keys and values and attends. Returns the hidden states [N, hidden] before the
        final norm."""
        n = ids.shape[0]
        hidden = self.decoder.embed_tokens(ids)
        cos_table, sin_table = self._rope_table(int(positions.max()) + 1)
        cos, sin = cos_table[positions], sin_table[positions]
        heads, kv = self.heads, self.kv_heads
        for index, layer in enumerate(self._layers):
            qkv = layer.qkv(layer.input_norm(hidden)).view(n, heads + 2 * kv, self.head_dim)
            q, k = self._apply_rotary(qkv[:, :heads], qkv[:, heads : heads + kv], cos, sin)
            v = qkv[:, heads + kv :]
            hidden = hidden + layer.o(attend(index, q, k, v).to(hidden.dtype))
            gate, up = layer.gate_up(layer.post_norm(hidden)).chunk(2, dim=-1)
            hidden = hidden + layer.down(layer.act(gate) * up)
        return hidden

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits [N, V] (float32) from hidden states [N, hidden]."""
        assert self._head is not None
        return self._head(self._final_norm(hidden)).float()

    def layer_scale(self, layer: int) -> float:
        return self._layers[layer].scale

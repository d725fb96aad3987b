"""The fast local decoding engine: a Llama-family decoder run layer by layer over its own caches.

Same computation as the transformers model (RMSNorm, rotary positions, grouped-query attention,
SwiGLU MLP), organised for batched sampling on CPU:

- weights prepacked for oneDNN (:mod:`swirl.backends.packed_linear`), q/k/v and gate/up fused
  into one matrix each, repacked only when a parameter changed (the live policy in training);
- the prefix all prompts share is computed once, kept across calls while the weights are
  unchanged (every turn of an environment starts with the same instructions), and read once per
  decode step for the whole batch (:mod:`swirl.backends.kv_cache`);
- a prompt that is a prefix of another (the G samples of one state, the states of one trajectory)
  is not prefilled on its own (:func:`swirl.backends.prompt_tree.group_chains`);
- rows that stopped are dropped from the batch in bulk, not one copy of the cache per stop.

Sampling and stopping stay in :class:`swirl.backends.hf.HFBackend`, which drives a
:class:`FastSession` exactly as it drives the reference transformers path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from swirl.backends.kv_cache import PrefixKV, RowKV, decode_attention, prefill_attention
from swirl.backends.packed_linear import PackedLinear
from swirl.backends.prompt_tree import common_prefix_length, group_chains

if TYPE_CHECKING:
    from transformers import PreTrainedModel

_SUPPORTED_TYPES = ("llama", "mistral", "qwen2")
# Drop stopped rows once at most this fraction of the batch still samples: a copy of the row
# caches costs about one decode step, a stopped row costs part of every step.
_COMPACT_BELOW = 0.75

Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def unsupported_reason(model: PreTrainedModel) -> str | None:
    """Why :class:`FastDecoder` cannot run ``model`` (None: it can)."""
    config = model.config
    if config.model_type not in _SUPPORTED_TYPES:
        return f"model type {config.model_type!r} (supported: {', '.join(_SUPPORTED_TYPES)})"
    if getattr(config, "sliding_window", None) is not None and getattr(
        config, "use_sliding_window", True
    ):
        return "sliding-window attention"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r}"
    decoder = getattr(model, "model", None)
    layers = getattr(decoder, "layers", None)
    if layers is None or not hasattr(model, "lm_head"):
        return "no model.model.layers / lm_head (e.g. a PEFT wrapper)"
    linear_names = ("q_proj", "k_proj", "v_proj", "o_proj")
    for layer in layers:
        linears = [getattr(layer.self_attn, n, None) for n in linear_names]
        linears += [getattr(layer.mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
        if any(type(m) is not torch.nn.Linear for m in linears):
            return "a projection is not a plain nn.Linear (e.g. LoRA adapters)"
    rope = getattr(decoder.rotary_emb, "rope_type", "default")
    if "dynamic" in rope:
        return f"rope type {rope!r} depends on the sequence length"
    return None


class _Layer:
    """One decoder layer's weights: fused q/k/v and gate/up, packed; norm scales as they are."""

    def __init__(self, layer: torch.nn.Module, rows_hint: int) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        qkv = [attn.q_proj, attn.k_proj, attn.v_proj]
        bias = None if qkv[0].bias is None else torch.cat([m.bias for m in qkv])
        self.qkv = PackedLinear(torch.cat([m.weight for m in qkv]), bias, rows_hint=rows_hint)
        self.o = PackedLinear(attn.o_proj.weight, attn.o_proj.bias, rows_hint=rows_hint)
        gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])
        self.gate_up = PackedLinear(gate_up, rows_hint=rows_hint)
        self.down = PackedLinear(mlp.down_proj.weight, rows_hint=rows_hint)
        self.input_norm = layer.input_layernorm.weight.detach()
        self.post_norm = layer.post_attention_layernorm.weight.detach()


class FastDecoder:
    """Prefill and decode for a supported causal LM (see :func:`unsupported_reason`).

    ``rows_hint`` is the usual decode batch (it picks oneDNN's weight blocking). The decoder reads
    the model's current weights at each :meth:`start`; it is not thread-safe.
    """

    def __init__(self, model: PreTrainedModel, *, rows_hint: int = 32) -> None:
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"the fast decoder cannot run this model: {reason}")
        config = model.config
        self.model = model
        self.rows_hint = rows_hint
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = float(config.rms_norm_eps)
        self.num_layers = config.num_hidden_layers
        self._signature: tuple[tuple[int, int], ...] | None = None
        self._layers: list[_Layer] = []
        self._head: PackedLinear | None = None
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None
        self._prefix: PrefixKV | None = None

    # -- weights --------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Repack the weights if any parameter changed since the last call (an optimizer step,
        a load) and forget the cached prefix with them."""
        signature = tuple((p.data_ptr(), p._version) for p in self.model.parameters())
        if signature == self._signature:
            return
        decoder = self.model.model
        self._layers = [_Layer(layer, self.rows_hint) for layer in decoder.layers]
        head = self.model.lm_head
        self._head = PackedLinear(head.weight, head.bias, rows_hint=self.rows_hint)
        self._prefix = None
        self._rope = None
        self._signature = signature

    def _rope_table(self, positions: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [positions, D] from the model's own rotary module (any static rope type)."""
        if self._rope is None or self._rope[0].shape[0] < positions:
            decoder = self.model.model
            weight = decoder.embed_tokens.weight
            ids = torch.arange(max(positions, 4096), device=weight.device)[None]
            cos, sin = decoder.rotary_emb(weight[:1], ids)
            self._rope = (cos[0], sin[0])
        return self._rope

    # -- the network ----------------------------------------------------------------------------

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return weight * (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype)

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def _layers_forward(
        self, ids: torch.Tensor, positions: torch.Tensor, attend: Attend
    ) -> torch.Tensor:
        """Embed ``ids`` [N, M] at ``positions`` [N, M] and run every layer; ``attend(layer, q
        [N, H, M, D], k, v [N, KV, M, D])`` stores k/v and returns [N, M, H * D]. Returns the
        last hidden states [N, M, hidden] before the final norm."""
        n, m = ids.shape
        hidden = F.embedding(ids, self.model.model.embed_tokens.weight)
        cos_table, sin_table = self._rope_table(int(positions.max()) + 1)
        cos, sin = cos_table[positions][:, None], sin_table[positions][:, None]  # [N, 1, M, D]
        sizes = [self.heads * self.head_dim] + [self.kv_heads * self.head_dim] * 2
        for index, layer in enumerate(self._layers):
            q, k, v = layer.qkv(self._norm(hidden, layer.input_norm)).split(sizes, dim=-1)
            q = self._rotate(q.view(n, m, -1, self.head_dim).transpose(1, 2), cos, sin)
            k = self._rotate(k.view(n, m, -1, self.head_dim).transpose(1, 2), cos, sin)
            v = v.view(n, m, -1, self.head_dim).transpose(1, 2)
            hidden = hidden + layer.o(attend(index, q, k, v))
            gate, up = layer.gate_up(self._norm(hidden, layer.post_norm)).chunk(2, dim=-1)
            hidden = hidden + layer.down(F.silu(gate) * up)
        return hidden

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits [N, V] (float32) from last hidden states [N, hidden]."""
        assert self._head is not None
        return self._head(self._norm(hidden, self.model.model.norm.weight)).float()

    def prefill(
        self, sequences: Sequence[Sequence[int]], prefix: PrefixKV
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run N token sequences that continue ``prefix`` (right-padded to the longest, M).

        Returns (hidden [N, M, hidden], keys [L, N, KV, M, D], values [L, N, KV, M, D]).
        """
        device = self.model.model.embed_tokens.weight.device
        n, m = len(sequences), max(len(s) for s in sequences)
        ids = torch.zeros((n, m), dtype=torch.long)
        for row, tokens in enumerate(sequences):
            ids[row, : len(tokens)] = torch.as_tensor(tokens)
        positions = (prefix.length + torch.arange(m)).expand(n, m)
        like = prefix.keys
        keys = like.new_empty((self.num_layers, n, self.kv_heads, m, self.head_dim))
        values = torch.empty_like(keys)

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            keys[layer], values[layer] = k, v
            return prefill_attention(q, k, v, prefix.keys[layer], prefix.values[layer])

        hidden = self._layers_forward(ids.to(device), positions.to(device), attend)
        return hidden, keys, values

    # -- sessions -------------------------------------------------------------------------------

    def _shared_prefix(self, prompts: Sequence[Sequence[int]], like: torch.Tensor) -> PrefixKV:
        """The KV of the prefix all prompts share (at least one token of each prompt left out),
        reusing the cached prefix as far as it matches and caching the result."""
        common = min(common_prefix_length(prompts), min(len(p) for p in prompts) - 1)
        wanted = tuple(prompts[0][:common])
        base = PrefixKV.empty(self.num_layers, self.kv_heads, self.head_dim, like)
        if self._prefix is not None:
            match = common_prefix_length([self._prefix.tokens, wanted])
            base = self._prefix.truncated(match)
        if base.length == common:
            return base
        _, keys, values = self.prefill([wanted[base.length :]], base)
        self._prefix = base.extended(wanted[base.length :], keys[:, 0], values[:, 0])
        return self._prefix

    @torch.inference_mode()
    def start(
        self, prompts: Sequence[Sequence[int]], room: int, *, max_tokens: int
    ) -> tuple[FastSession, torch.Tensor]:
        """Prefill ``prompts`` and reserve ``room`` new tokens per row.

        ``max_tokens`` bounds the padded tokens of one prefill pass. Returns the session and the
        logits [B, V] (float32) that predict each row's first new token.
        """
        self.refresh()
        like = self.model.model.embed_tokens.weight
        prefix = self._shared_prefix(prompts, like)
        rests = [list(p[prefix.length :]) for p in prompts]
        heads, head_of = group_chains(rests)
        rows = RowKV(
            self.num_layers,
            len(prompts),
            self.kv_heads,
            self.head_dim,
            prompt_lengths=[len(r) for r in rests],
            room=room,
            like=like,
        )
        last = like.new_empty((len(prompts), like.shape[1]))
        members: dict[int, list[int]] = {}
        for row, head in enumerate(head_of):
            members.setdefault(head, []).append(row)
        start = 0
        while start < len(heads):
            # heads are longest first: a pass holds as many as fit the token budget.
            width = len(rests[heads[start]])
            stop = start + max(1, max_tokens // width)
            batch = heads[start:stop]
            hidden, keys, values = self.prefill([rests[h] for h in batch], prefix)
            for slot, head in enumerate(batch):
                for row in members[head]:
                    n = len(rests[row])
                    rows.put_prompt(row, keys[:, slot, :, :n], values[:, slot, :, :n])
                    last[row] = hidden[slot, n - 1]
            start = stop
        positions = torch.tensor([len(p) for p in prompts], device=like.device)
        return FastSession(self, prefix, rows, positions), self.logits(last)


class FastSession:
    """The decoding state of one batch: feed one token per live row, get the next logits."""

    def __init__(
        self, decoder: FastDecoder, prefix: PrefixKV, rows: RowKV, positions: torch.Tensor
    ) -> None:
        self.decoder = decoder
        self.prefix = prefix
        self.rows = rows
        self.positions = positions  # [slots]: position of each slot's next token
        self.live = list(range(positions.shape[0]))  # slot of each live row

    def keep(self, rows: list[int]) -> None:
        """Only these live rows (indices into the current live rows, in order) go on."""
        self.live = [self.live[r] for r in rows]
        slots = self.positions.shape[0]
        if len(self.live) <= _COMPACT_BELOW * slots:
            index = torch.tensor(self.live, device=self.positions.device)
            self.rows.select(index)
            self.positions = self.positions[index]
            self.live = list(range(len(self.live)))

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` [R] int64, one per live row; returns logits [R, V] (float32)."""
        decoder, rows, prefix = self.decoder, self.rows, self.prefix
        device = self.positions.device
        ids = torch.zeros(self.positions.shape[0], dtype=torch.long, device=device)
        live = torch.tensor(self.live, device=device)
        ids[live] = tokens.to(device)
        column = rows.filled
        rows.filled += 1

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            rows.keys[layer, :, :, column] = k[:, :, 0]
            rows.values[layer, :, :, column] = v[:, :, 0]
            out = decode_attention(
                q[:, :, 0],
                prefix.keys[layer],
                prefix.values[layer],
                rows.keys[layer, :, :, : column + 1],
                rows.values[layer, :, :, : column + 1],
                rows.bias[:, : column + 1],
            )
            return out[:, None]

        hidden = decoder._layers_forward(ids[:, None], self.positions[:, None], attend)
        self.positions = self.positions + 1
        return decoder.logits(hidden[live, 0])

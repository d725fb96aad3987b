"""The fast local decoding engine: a Llama-family decoder run layer by layer over its own caches.

Same computation as the transformers model (RMSNorm, rotary positions, grouped-query attention,
SwiGLU MLP), organised for batched sampling on CPU:

- weights prepacked for oneDNN (:mod:`swirl.backends.packed_linear`), q/k/v and gate/up fused
  into one matrix each, repacked only when a parameter changed (the live policy in training);
- the prefix all prompts share is computed once, kept across calls while the weights are
  unchanged (every turn of an environment starts with the same instructions), and read once per
  decode step for the whole batch (:mod:`swirl.backends.kv_cache`);
- a row that stops leaves its keys and values for the next call: a prompt that continues it (an
  episode's next turn: the turn it sampled and the tool's result appended) prefills only its
  new tokens;
- a prompt that is a prefix of another (the G samples of one state, the states of one trajectory)
  is not prefilled on its own (:func:`swirl.backends.prompt_tree.group_chains`), and a prefill
  pass packs its sequences end to end, without padding;
- rows that stopped are dropped from the batch in bulk, not one copy of the cache per stop.

Sampling and stopping stay in :class:`swirl.backends.hf.HFBackend`, which drives a
:class:`FastSession` exactly as it drives the reference transformers path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from swirl.backends.kv_cache import (
    Continuations,
    PrefixKV,
    RowKV,
    decode_attention,
    prefill_attention,
)
from swirl.backends.packed_linear import PackedLinear
from swirl.backends.prompt_tree import common_prefix_length, group_chains

if TYPE_CHECKING:
    from transformers import PreTrainedModel

_SUPPORTED_TYPES = ("llama", "mistral", "qwen2")
# Drop stopped rows once at most this fraction of the batch still samples: a copy of the row
# caches costs about one decode step, a stopped row costs part of every step.
_COMPACT_BELOW = 0.75

Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Context = tuple[torch.Tensor, torch.Tensor]  # keys, values [L, KV, C, D] of C tokens


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
        # Two calls' worth of rows: an environment round's episodes come back in the next call.
        self._continuations = Continuations(capacity=2 * rows_hint)

    # -- weights --------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Repack the weights if any parameter changed since the last call and forget the cached
        keys and values with them. A change is a new tensor or a new version: every in-place
        update autograd sees (optimizer steps, ``load_state_dict``), not a write through
        ``param.data``."""
        signature = tuple((p.data_ptr(), p._version) for p in self.model.parameters())
        if signature == self._signature:
            return
        decoder = self.model.model
        self._layers = [_Layer(layer, self.rows_hint) for layer in decoder.layers]
        head = self.model.lm_head
        self._head = PackedLinear(head.weight, head.bias, rows_hint=self.rows_hint)
        self._prefix = None
        self._continuations.clear()
        self._rope = None
        self._signature = signature

    def _rope_table(self, positions: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin [positions, D] from the model's own rotary module (any static rope
        type); the sin's first half is negated so that a rotation is one roll (see _rotate)."""
        if self._rope is None or self._rope[0].shape[0] < positions:
            decoder = self.model.model
            weight = decoder.embed_tokens.weight
            ids = torch.arange(max(positions, 4096), device=weight.device)[None]
            cos, sin = decoder.rotary_emb(weight[:1], ids)
            half = self.head_dim // 2
            self._rope = (cos[0], torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1))
        return self._rope

    # -- the network ----------------------------------------------------------------------------

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """RMSNorm as transformers computes it (in float32, then scaled by the weight)."""
        return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
        """Rotary embedding ``x * cos + rotate_half(x) * sin``, with ``rotate_half(x) * sin`` as
        the halves of x swapped times the signed sin."""
        return torch.addcmul(x * cos, x.roll(self.head_dim // 2, dims=-1), signed_sin)

    def _layers_forward(
        self, ids: torch.Tensor, positions: torch.Tensor, attend: Attend
    ) -> torch.Tensor:
        """Embed ``ids`` [N, M] at ``positions`` [N, M] and run every layer; ``attend(layer, q
        [N, H, M, D], k, v [N, KV, M, D])`` stores k/v and returns [N, M, H * D]. Returns the
        last hidden states [N, M, hidden] before the final norm."""
        n, m = ids.shape
        hidden = F.embedding(ids, self.model.model.embed_tokens.weight)
        cos_table, sin_table = self._rope_table(int(positions.max()) + 1)
        cos, sin = cos_table[positions][:, :, None], sin_table[positions][:, :, None]
        heads, rotated = self.heads, self.heads + self.kv_heads  # q and k heads, rotated together
        for index, layer in enumerate(self._layers):
            qkv = layer.qkv(self._norm(hidden, layer.input_norm)).view(n, m, -1, self.head_dim)
            qk = self._rotate(qkv[:, :, :rotated], cos, sin)
            q, k = qk[:, :, :heads].transpose(1, 2), qk[:, :, heads:].transpose(1, 2)
            v = qkv[:, :, rotated:].transpose(1, 2)
            hidden = hidden + layer.o(attend(index, q, k, v))
            gate, up = layer.gate_up(self._norm(hidden, layer.post_norm)).chunk(2, dim=-1)
            hidden = hidden + layer.down(F.silu(gate) * up)
        return hidden

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits [N, V] (float32) from last hidden states [N, hidden]."""
        assert self._head is not None
        return self._head(self._norm(hidden, self.model.model.norm.weight)).float()

    def prefill(
        self,
        sequences: Sequence[Sequence[int]],
        prefix: PrefixKV,
        contexts: Sequence[Context | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        """Run token sequences that each continue ``prefix`` and then their own context (the KV
        [L, KV, C_i, D] of the C_i tokens before them, or None), packed end to end (no padding).

        Returns (hidden [T, hidden], keys [L, KV, T, D], values [L, KV, T, D], offsets): sequence
        i's tokens are rows ``offsets[i] : offsets[i] + len(sequences[i])``.
        """
        contexts = contexts or [None] * len(sequences)
        device = prefix.keys.device
        offsets, flat, positions = [], [], []
        for tokens, context in zip(sequences, contexts, strict=True):
            offsets.append(len(flat))
            start = prefix.length + (0 if context is None else context[0].shape[2])
            flat.extend(tokens)
            positions.extend(range(start, start + len(tokens)))
        total = len(flat)
        keys = prefix.keys.new_empty((self.num_layers, self.kv_heads, total, self.head_dim))
        values = torch.empty_like(keys)

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            keys[layer], values[layer] = k[0], v[0]
            out = q.new_empty((total, q.shape[1] * self.head_dim))
            for offset, tokens, context in zip(offsets, sequences, contexts, strict=True):
                span = slice(offset, offset + len(tokens))
                pieces = [(prefix.keys[layer], prefix.values[layer])]
                if context is not None:
                    pieces.append((context[0][layer], context[1][layer]))
                out[span] = prefill_attention(q[0, :, span], k[0, :, span], v[0, :, span], pieces)
            return out[None]

        ids = torch.tensor([flat], device=device)
        hidden = self._layers_forward(ids, torch.tensor([positions], device=device), attend)
        return hidden[0], keys, values, offsets

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
        _, keys, values, _ = self.prefill([wanted[base.length :]], base)
        self._prefix = base.extended(wanted[base.length :], keys, values)
        return self._prefix

    @torch.inference_mode()
    def start(
        self, prompts: Sequence[Sequence[int]], room: int, *, max_tokens: int
    ) -> tuple[FastSession, torch.Tensor]:
        """Prefill ``prompts`` and reserve ``room`` new tokens per row.

        Each row's tokens after the shared prefix come from, in order: the longest finished row
        of an earlier call that its prompt continues (no compute), then a prefill pass, shared by
        every row whose new tokens are a prefix of another's with the same earlier row.
        ``max_tokens`` bounds the tokens of one prefill pass. Returns the session and the logits
        [B, V] (float32) that predict each row's first new token.
        """
        self.refresh()
        like = self.model.model.embed_tokens.weight
        prefix = self._shared_prefix(prompts, like)
        start = prefix.length
        contexts: list[Context | None] = []
        news: list[tuple[int, ...]] = []
        for prompt in prompts:
            prompt = tuple(prompt)
            # One new token at least: its logits start the completion.
            context = self._continuations.longest(prompt, start, len(prompt) - start - 1)
            contexts.append(context)
            news.append(prompt[start + (0 if context is None else context[0].shape[2]) :])
        # Rows group only with rows that continue the same span of the same earlier row.
        sources = [
            (0, 0) if c is None else (c[0].untyped_storage().data_ptr(), c[0].shape[2])
            for c in contexts
        ]
        heads, head_of = group_chains([(s, *n) for s, n in zip(sources, news, strict=True)])
        rows = RowKV(
            self.num_layers,
            len(prompts),
            self.kv_heads,
            self.head_dim,
            prompt_lengths=[len(p) - start for p in prompts],
            room=room,
            like=like,
        )
        last = like.new_empty((len(prompts), like.shape[1]))
        members: dict[int, list[int]] = {}
        for row, head in enumerate(head_of):
            members.setdefault(head, []).append(row)
        first = 0
        while first < len(heads):
            # A pass takes heads while their tokens fit the budget (always one at least).
            stop, tokens = first + 1, len(news[heads[first]])
            while stop < len(heads) and tokens + len(news[heads[stop]]) <= max_tokens:
                tokens += len(news[heads[stop]])
                stop += 1
            batch = heads[first:stop]
            hidden, keys, values, offsets = self.prefill(
                [news[h] for h in batch], prefix, [contexts[h] for h in batch]
            )
            for head, offset in zip(batch, offsets, strict=True):
                for row in members[head]:
                    n = len(news[row])
                    pieces = [] if contexts[row] is None else [contexts[row]]
                    span = slice(offset, offset + n)
                    pieces.append((keys[:, :, span], values[:, :, span]))
                    rows.put_prompt(row, pieces)
                    last[row] = hidden[offset + n - 1]
            first = stop
        session = FastSession(self, prefix, rows, [list(p) for p in prompts])
        return session, self.logits(last)


class FastSession:
    """The decoding state of one batch: feed one token per live row, get the next logits.

    A row that stops leaves its keys and values (prompt and fed tokens) to the decoder's
    continuations, for a later prompt that extends it.
    """

    def __init__(
        self, decoder: FastDecoder, prefix: PrefixKV, rows: RowKV, prompts: list[list[int]]
    ) -> None:
        self.decoder = decoder
        self.prefix = prefix
        self.rows = rows
        self.tokens = prompts  # per slot: every token whose keys and values are cached
        device = prefix.keys.device
        self.positions = torch.tensor([len(p) for p in prompts], device=device)  # [slots]
        self.live = list(range(len(prompts)))  # slot of each live row

    def keep(self, rows: list[int]) -> None:
        """Only these live rows (indices into the current live rows, in order) go on."""
        kept = [self.live[r] for r in rows]
        start = self.prefix.length
        for slot in set(self.live) - set(kept):
            tokens = self.tokens[slot]
            keys, values = self.rows.row_span(slot, len(tokens) - start)
            self.decoder._continuations.add(tuple(tokens), start, keys, values)
        self.live = kept
        slots = self.positions.shape[0]
        if kept and len(kept) <= _COMPACT_BELOW * slots:
            self.rows.select(kept)
            self.positions = self.positions[kept]
            self.tokens = [self.tokens[slot] for slot in kept]
            self.live = list(range(len(kept)))

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` [R] int64, one per live row; returns logits [R, V] (float32)."""
        decoder, rows, prefix = self.decoder, self.rows, self.prefix
        device = self.positions.device
        ids = torch.zeros(self.positions.shape[0], dtype=torch.long, device=device)
        live = torch.tensor(self.live, device=device)
        ids[live] = tokens.to(device)
        for slot, token in zip(self.live, tokens.tolist(), strict=True):
            self.tokens[slot].append(token)
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

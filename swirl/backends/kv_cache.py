"""Key/value caches for batched decoding with one shared prefix, and their attention.

Three parts:

- :class:`PrefixKV`: the keys and values of the prefix every prompt of the batch starts with (the
  instructions and few-shot examples of an environment prompt), stored once. A decode step reads
  it once for the whole batch: all rows' queries of one KV head form a single matrix product
  against it, instead of each row reading its own copy.
- :class:`RowKV`: each row's keys and values after the prefix, in a buffer allocated once for the
  prompt and the whole token budget. Prompts end at one column (shorter ones start later, the
  columns before them masked), so every row writes its next token into the same column: a step
  writes one slice instead of growing a tensor (``torch.cat`` per layer and per token, as
  transformers' DynamicCache does).
- :class:`Continuations`: the KV of rows that finished, kept for the next call, whose prompts
  continue them.

Shapes use L layers, B rows, KV key/value heads, H query heads (a multiple of KV, grouped as in
transformers' ``repeat_kv``: query head h reads KV head ``h // (H // KV)``), D head size.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F


class PrefixKV:
    """Keys and values of one token prefix: ``keys``/``values`` [L, KV, P, D] for ``tokens``."""

    def __init__(self, tokens: tuple[int, ...], keys: torch.Tensor, values: torch.Tensor) -> None:
        self.tokens = tokens
        self.keys = keys
        self.values = values

    @classmethod
    def empty(cls, layers: int, heads: int, head_dim: int, like: torch.Tensor) -> PrefixKV:
        shape = (layers, heads, 0, head_dim)
        return cls((), like.new_empty(shape), like.new_empty(shape))

    @property
    def length(self) -> int:
        return len(self.tokens)

    def truncated(self, length: int) -> PrefixKV:
        """The first ``length`` tokens (views, no copy)."""
        return PrefixKV(self.tokens[:length], self.keys[:, :, :length], self.values[:, :, :length])

    def extended(
        self, tokens: tuple[int, ...], keys: torch.Tensor, values: torch.Tensor
    ) -> PrefixKV:
        """This prefix followed by ``tokens`` with ``keys``/``values`` [L, KV, len(tokens), D]."""
        return PrefixKV(
            self.tokens + tokens,
            torch.cat([self.keys, keys], dim=2),
            torch.cat([self.values, values], dim=2),
        )


class RowKV:
    """Per-row keys and values after the shared prefix, in one preallocated buffer per kind.

    ``keys``/``values`` [L, B, KV, T, D]; ``bias`` [B, T] is 0 where a column holds a token of
    the row and -inf left of its prompt; ``filled`` columns are written (the same for every row).
    """

    def __init__(
        self,
        layers: int,
        rows: int,
        heads: int,
        head_dim: int,
        *,
        prompt_lengths: list[int],
        room: int,
        like: torch.Tensor,
    ) -> None:
        self.prompt_columns = max(prompt_lengths)
        columns = self.prompt_columns + room
        shape = (layers, rows, heads, columns, head_dim)
        self.keys = like.new_empty(shape)
        self.values = like.new_empty(shape)
        self.starts = [self.prompt_columns - n for n in prompt_lengths]  # first column per row
        for row, start in enumerate(self.starts):
            # Masked columns must hold finite numbers: a zero weight times a stale inf is NaN.
            self.keys[:, row, :, :start] = 0
            self.values[:, row, :, :start] = 0
        left = torch.arange(columns)[None, :] < torch.tensor(self.starts)[:, None]
        self.bias = torch.zeros((rows, columns), dtype=like.dtype).masked_fill(left, float("-inf"))
        self.bias = self.bias.to(like.device)
        self.filled = self.prompt_columns

    def put_prompt(self, row: int, pieces: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Store row ``row``'s prompt part: ``pieces`` of (keys, values) [L, KV, n, D] one after
        the other, the last ending at ``prompt_columns``."""
        end = self.prompt_columns
        for keys, values in reversed(pieces):
            n = keys.shape[2]
            self.keys[:, row, :, end - n : end] = keys
            self.values[:, row, :, end - n : end] = values
            end -= n

    def row_span(self, row: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the keys and values [L, KV, length, D] of row ``row``'s last ``length``
        filled columns."""
        columns = slice(self.filled - length, self.filled)
        return self.keys[:, row, :, columns].clone(), self.values[:, row, :, columns].clone()

    def select(self, rows: list[int]) -> None:
        """Keep only ``rows``, in that order. Copies the filled columns that any of them uses
        into new buffers: columns left of every kept row's prompt are dropped, so the attention
        of later steps no longer spans them."""
        first = min(self.starts[row] for row in rows)
        layers, _, heads, columns, head_dim = self.keys.shape
        shape = (layers, len(rows), heads, columns - first, head_dim)
        keys, values = self.keys.new_empty(shape), self.values.new_empty(shape)
        used = slice(first, self.filled)
        for slot, row in enumerate(rows):
            keys[:, slot, :, : self.filled - first] = self.keys[:, row, :, used]
            values[:, slot, :, : self.filled - first] = self.values[:, row, :, used]
        self.keys, self.values = keys, values
        self.bias = self.bias[rows, first:]
        self.starts = [self.starts[row] - first for row in rows]
        self.prompt_columns -= first
        self.filled -= first


class Continuations:
    """Keys and values of recently decoded rows, keyed by their tokens, so that a later prompt
    extending one (an episode's next turn: its context, the sampled turn, the tool's result)
    prefills only its new tokens. Holds the newest ``capacity`` entries; the owner clears it when
    the weights change."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, ...], tuple[int, torch.Tensor, torch.Tensor]] = (
            OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def add(
        self, tokens: tuple[int, ...], start: int, keys: torch.Tensor, values: torch.Tensor
    ) -> None:
        """Remember the KV [L, KV, len(tokens) - start, D] of positions ``start`` onwards of the
        sequence ``tokens`` (all tokens from position 0)."""
        self._entries[tokens] = (start, keys, values)
        self._entries.move_to_end(tokens)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def longest(
        self, prompt: tuple[int, ...], start: int, limit: int
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """KV [L, KV, c, D] of positions ``start .. start + c`` of ``prompt`` from the entry that
        covers most of them (``c <= limit``), or None."""
        best: tuple[int, int, torch.Tensor, torch.Tensor] | None = None
        for tokens, (first, keys, values) in self._entries.items():
            end = min(len(tokens), len(prompt), start + limit)
            if first > start or end <= start or (best is not None and end - start <= best[0]):
                continue
            if prompt[:end] == tokens[:end]:
                best = (end - start, first, keys, values)
        if best is None:
            return None
        covered, first, keys, values = best
        span = slice(start - first, start - first + covered)
        return keys[:, :, span], values[:, :, span]


def prefill_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    context: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """Causal attention of one sequence of M new tokens that continues a context.

    ``query`` [H, M, D] (unscaled), ``keys``/``values`` [KV, M, D] of the same tokens,
    ``context`` (keys, values) pieces [KV, C_i, D] of the tokens before them, in order. Every
    query sees the whole context, then the new tokens up to itself. Returns [M, H * D].
    """
    m = query.shape[1]
    pieces = [piece for piece in context if piece[0].shape[1]]
    if pieces:
        c = sum(k.shape[1] for k, _ in pieces)
        keys = torch.cat([*(k for k, _ in pieces), keys], dim=1)
        values = torch.cat([*(v for _, v in pieces), values], dim=1)
        visible = torch.ones((m, c + m), dtype=torch.bool, device=query.device)
        visible[:, c:] = torch.ones((m, m), dtype=torch.bool, device=query.device).tril()
        out = F.scaled_dot_product_attention(
            query[None], keys[None], values[None], attn_mask=visible, enable_gqa=True
        )
    else:
        out = F.scaled_dot_product_attention(
            query[None], keys[None], values[None], is_causal=True, enable_gqa=True
        )
    return out[0].transpose(0, 1).reshape(m, -1)


def decode_attention(
    query: torch.Tensor,
    prefix_keys: torch.Tensor,
    prefix_values: torch.Tensor,
    row_keys: torch.Tensor,
    row_values: torch.Tensor,
    bias: torch.Tensor,
) -> torch.Tensor:
    """One new token per row attending to the shared prefix and to its own columns.

    ``query`` [B, H, D] (unscaled); ``prefix_keys``/``prefix_values`` [KV, P, D];
    ``row_keys``/``row_values`` [B, KV, C, D] (the filled columns); ``bias`` [B, C] additive mask.
    Returns [B, H * D]. One softmax over prefix and row columns together, so the result is the
    attention over the concatenated keys.
    """
    b, h, d = query.shape
    kv = row_keys.shape[1]
    p = prefix_keys.shape[1]
    grouped = (query * d**-0.5).view(b, kv, h // kv, d)  # [B, KV, G, D]
    scores = grouped @ row_keys.transpose(-1, -2) + bias[:, None, None, :]  # [B, KV, G, C]
    if p:
        # [KV, B*G, D] @ [KV, D, P]: one product per KV head for the whole batch.
        by_head = grouped.transpose(0, 1).reshape(kv, -1, d)
        prefix_scores = (by_head @ prefix_keys.transpose(-1, -2)).view(kv, b, -1, p)
        scores = torch.cat([prefix_scores.transpose(0, 1), scores], dim=-1)
    probs = scores.softmax(dim=-1)
    out = probs[..., p:] @ row_values  # [B, KV, G, D]
    if p:
        prefix_probs = probs[..., :p].transpose(0, 1).reshape(kv, -1, p)
        out = out + (prefix_probs @ prefix_values).view(kv, b, -1, d).transpose(0, 1)
    return out.reshape(b, h * d)

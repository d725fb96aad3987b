"""Preallocated key/value caches for batched decoding with one shared prefix, and their attention.

Two parts per batch:

- :class:`PrefixKV`: the keys and values of the prefix every prompt of the batch starts with (the
  instructions and few-shot examples of an environment prompt), stored once. A decode step reads
  it once for the whole batch: all rows' queries of one KV head form a single matrix product
  against it, instead of each row reading its own copy.
- :class:`RowKV`: each row's keys and values after the prefix, in a buffer allocated once for the
  prompt and the whole token budget. Prompts are left-aligned... to one column: row ``b``'s
  prompt ends at column ``prompt_columns`` and every row writes its next token into the same
  column, so a step writes one slice instead of growing a tensor (``torch.cat`` per layer and per
  token, as transformers' DynamicCache does). Columns left of a shorter prompt are masked.

Shapes use L layers, B rows, KV key/value heads, H query heads (a multiple of KV, grouped as in
transformers' ``repeat_kv``: query head h reads KV head ``h // (H // KV)``), D head size.
"""

from __future__ import annotations

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
        starts = [self.prompt_columns - n for n in prompt_lengths]
        for row, start in enumerate(starts):
            # Masked columns must hold finite numbers: a zero weight times a stale inf is NaN.
            self.keys[:, row, :, :start] = 0
            self.values[:, row, :, :start] = 0
        left = torch.arange(columns)[None, :] < torch.tensor(starts)[:, None]
        self.bias = torch.zeros((rows, columns), dtype=like.dtype).masked_fill(left, float("-inf"))
        self.bias = self.bias.to(like.device)
        self.filled = self.prompt_columns

    def put_prompt(self, row: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store row ``row``'s prompt part, ``keys``/``values`` [L, KV, n, D], right-aligned."""
        n = keys.shape[2]
        self.keys[:, row, :, self.prompt_columns - n : self.prompt_columns] = keys
        self.values[:, row, :, self.prompt_columns - n : self.prompt_columns] = values

    def select(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (int64 [B']), in that order (copies the buffers)."""
        self.keys = self.keys.index_select(1, rows)
        self.values = self.values.index_select(1, rows)
        self.bias = self.bias.index_select(0, rows)


def prefill_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    prefix_keys: torch.Tensor,
    prefix_values: torch.Tensor,
) -> torch.Tensor:
    """Causal attention of N sequences of length M that all continue the same prefix.

    ``query`` [N, H, M, D] (unscaled), ``keys``/``values`` [N, KV, M, D] of the same tokens,
    ``prefix_keys``/``prefix_values`` [KV, P, D]. Returns [N, M, H * D]. Padding after a
    sequence's end only affects outputs at padded positions.
    """
    n, _, m, _ = query.shape
    p = prefix_keys.shape[1]
    if p:
        shape = (n, *prefix_keys.shape)
        keys = torch.cat([prefix_keys.expand(shape), keys], dim=2)
        values = torch.cat([prefix_values.expand(shape), values], dim=2)
        # Every query sees the whole prefix, then its own sequence causally.
        visible = torch.ones((m, p + m), dtype=torch.bool, device=query.device)
        visible[:, p:] = torch.ones((m, m), dtype=torch.bool, device=query.device).tril()
        out = F.scaled_dot_product_attention(
            query, keys, values, attn_mask=visible, enable_gqa=True
        )
    else:
        out = F.scaled_dot_product_attention(query, keys, values, is_causal=True, enable_gqa=True)
    return out.transpose(1, 2).reshape(n, m, -1)


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

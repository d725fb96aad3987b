"""Attention of the fast engine over its caches: a decode step, and a prefill pass.

Shapes use H query heads, KV key/value heads (H a multiple of KV, grouped as in transformers'
``repeat_kv``: query head h reads KV head ``h // (H // KV)``), D head size. The functions take
the model's own ``scale`` (``module.scaling``), compute in float32 and return float32.

A decode step attends in two fused flash-attention calls (torch's CPU kernel, which also returns
each query's log-sum-exp): every row's queries against the shared prefix as one sequence, and
each row against its own columns; the two partial results are merged by their log-sum-exps.
That kernel is a private aten op: :func:`decode_attention` uses it only where
:func:`flash_usable` finds it present and in agreement with :func:`decode_attention_reference`
(plain torch, the same semantics, one softmax over the concatenated scores), else the reference.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class DecodeContext:
    """What one decode step's rows attend to, for one layer.

    ``prefix_keys``/``prefix_values`` [KV, P, D]: the shared prefix, read once for the whole
    batch; ``row_keys``/``row_values`` [B, KV, C, D]: each row's own columns; ``row_visible``
    [B, C] and ``prefix_visible`` [B, P] (None: all of it) bool, which columns each row sees.
    Every row sees at least one of its own columns.
    """

    prefix_keys: torch.Tensor
    prefix_values: torch.Tensor
    row_keys: torch.Tensor
    row_values: torch.Tensor
    row_visible: torch.Tensor
    prefix_visible: torch.Tensor | None = None


def decode_attention(query: torch.Tensor, context: DecodeContext, scale: float) -> torch.Tensor:
    """One new token per row (``query`` [B, H, D]) attending to the prefix and its own columns.
    Returns [B, H * D] float32: the attention over the prefix and row columns concatenated."""
    if query.device.type == "cpu" and flash_usable():
        return _decode_attention_flash(query, context, scale)
    return decode_attention_reference(query, context, scale)


_FLASH = "_scaled_dot_product_flash_attention_for_cpu"


def _decode_attention_flash(
    query: torch.Tensor, context: DecodeContext, scale: float
) -> torch.Tensor:
    """:func:`decode_attention` in two flash-attention calls merged by log-sum-exp."""
    flash = getattr(torch.ops.aten, _FLASH)
    b, h, d = query.shape
    kv = context.row_keys.shape[1]
    groups = h // kv
    grouped = query.float().view(b, kv, groups, d)  # [B, KV, G, D]
    blocked = _additive(context.row_visible)[:, None, None]
    out, lse = flash(
        grouped, context.row_keys, context.row_values, 0.0, False, attn_mask=blocked, scale=scale
    )
    if not context.prefix_keys.shape[1]:
        return out.reshape(b, h * d)
    # All rows' queries of one KV head as one sequence against that head's prefix.
    by_head = grouped.transpose(0, 1).reshape(1, kv, b * groups, d)
    visible = context.prefix_visible
    mask = None if visible is None else _additive(visible).repeat_interleave(groups, 0)[None, None]
    prefix_out, prefix_lse = flash(
        by_head,
        context.prefix_keys[None],
        context.prefix_values[None],
        0.0,
        False,
        attn_mask=mask,
        scale=scale,
    )
    prefix_out = prefix_out.view(kv, b, groups, d).transpose(0, 1)
    prefix_lse = prefix_lse.view(kv, b, groups).transpose(0, 1)
    if visible is not None:  # the kernel gives a row that sees nothing lse 0, not -inf
        prefix_lse = prefix_lse.masked_fill(~visible.any(dim=1)[:, None, None], float("-inf"))
    total = torch.logaddexp(lse, prefix_lse)
    out = out * (lse - total).exp()[..., None]
    out = out + prefix_out * (prefix_lse - total).exp()[..., None]
    return out.reshape(b, h * d)


def _additive(visible: torch.Tensor) -> torch.Tensor:
    """A bool mask as an additive one: 0 where visible, -inf elsewhere."""
    return torch.zeros(visible.shape).masked_fill(~visible, float("-inf"))


@functools.cache
def flash_usable() -> bool:
    """Whether torch's private CPU flash-attention op exists here and agrees with the
    reference on a probe (a masked row, a prefix mask, grouped heads)."""
    if not hasattr(torch.ops.aten, _FLASH):
        return False
    g = torch.Generator().manual_seed(0)
    query = torch.randn(3, 4, 8, generator=g)
    prefix_keys, prefix_values = torch.randn(2, 2, 5, 8, generator=g)
    keys, values = torch.randn(2, 3, 2, 6, 8, generator=g)
    context = DecodeContext(
        prefix_keys,
        prefix_values,
        keys,
        values,
        row_visible=torch.arange(6)[None] < torch.tensor([6, 1, 3])[:, None],
        prefix_visible=torch.arange(5)[None] < torch.tensor([5, 0, 2])[:, None],
    )
    try:
        got = _decode_attention_flash(query, context, 0.3)
    except (RuntimeError, TypeError, NotImplementedError):
        return False
    expected = decode_attention_reference(query, context, 0.3)
    return bool(torch.allclose(got, expected, rtol=1e-4, atol=1e-5))


def decode_attention_reference(
    query: torch.Tensor, context: DecodeContext, scale: float
) -> torch.Tensor:
    """:func:`decode_attention` in plain torch: one softmax over the prefix and row scores
    together (all rows' queries of one KV head form one matrix product against the prefix)."""
    b, h, d = query.shape
    kv = context.row_keys.shape[1]
    p = context.prefix_keys.shape[1]
    grouped = (query.float() * scale).view(b, kv, h // kv, d)  # [B, KV, G, D]
    scores = grouped @ context.row_keys.transpose(-1, -2)  # [B, KV, G, C]
    scores = scores.masked_fill(~context.row_visible[:, None, None, :], float("-inf"))
    if p:
        # [KV, B*G, D] @ [KV, D, P]: one product per KV head for the whole batch.
        by_head = grouped.transpose(0, 1).reshape(kv, -1, d)
        prefix_scores = (by_head @ context.prefix_keys.transpose(-1, -2)).view(kv, b, -1, p)
        prefix_scores = prefix_scores.transpose(0, 1)
        if context.prefix_visible is not None:
            hidden = ~context.prefix_visible[:, None, None, :]
            prefix_scores = prefix_scores.masked_fill(hidden, float("-inf"))
        scores = torch.cat([prefix_scores, scores], dim=-1)
    probs = scores.softmax(dim=-1)
    out = probs[..., p:] @ context.row_values  # [B, KV, G, D]
    if p:
        prefix_probs = probs[..., :p].transpose(0, 1).reshape(kv, -1, p)
        prefix_out = (prefix_probs @ context.prefix_values).view(kv, b, -1, d)
        out = out + prefix_out.transpose(0, 1)
    return out.reshape(b, h * d)


def prefill_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    context: list[tuple[torch.Tensor, torch.Tensor]],
    scale: float,
) -> torch.Tensor:
    """Attention of M new tokens, the last M of N, that continue a context.

    ``query`` [H, M, D]; ``keys``/``values`` [KV, N, D] (N >= M): the new tokens' ancestors
    that are not in the context, then the new tokens themselves; ``context`` (keys, values)
    pieces [KV, C_i, D] of the tokens before all of them, in order. Every new token sees the
    whole context and, causally, the N keys up to its own (query i sees key j when
    j <= N - M + i). Returns [M, H * D].
    """
    m, n = query.shape[1], keys.shape[1]
    pieces = [piece for piece in context if piece[0].shape[1]]
    c = sum(k.shape[1] for k, _ in pieces)
    keys = torch.cat([*(k.float() for k, _ in pieces), keys.float()], dim=1)
    values = torch.cat([*(v.float() for _, v in pieces), values.float()], dim=1)
    mask = torch.ones((m, c + n), dtype=torch.bool, device=query.device)
    mask[:, c:] = torch.ones((m, n), dtype=torch.bool, device=query.device).tril(n - m)
    out = F.scaled_dot_product_attention(
        query.float()[None],
        keys[None],
        values[None],
        attn_mask=mask,
        scale=scale,
        enable_gqa=True,
    )
    return out[0].transpose(0, 1).reshape(m, -1)

"""Attention of the fast engine over its caches: a decode step, and a prefill pass.

Shapes use H query heads, KV key/value heads (H a multiple of KV, grouped as in transformers'
``repeat_kv``: query head h reads KV head ``h // (H // KV)``), D head size. The functions take
the model's own ``scale`` (``module.scaling``), compute in float32 and return float32.

A decode step attends in two fused flash-attention calls (torch's CPU kernel, which also returns
each query's log-sum-exp): every row's queries against the shared prefix as one sequence, and
each row against its own columns; the two partial results are merged by their log-sum-exps.
That kernel is a private aten op: :func:`decode_attention` uses it only where
:func:`_flash_usable` finds it present and in agreement with :func:`decode_attention_reference`
(plain torch, the same semantics, one softmax over the concatenated scores), else the reference.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def decode_attention(
    query: torch.Tensor,
    prefix_keys: torch.Tensor,
    prefix_values: torch.Tensor,
    row_keys: torch.Tensor,
    row_values: torch.Tensor,
    row_visible: torch.Tensor,
    prefix_visible: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """One new token per row attending to the shared prefix and to its own cached columns.

    ``query`` [B, H, D]; ``prefix_keys``/``prefix_values`` [KV, P, D] (read once for the whole
    batch); ``row_keys``/``row_values`` [B, KV, C, D]; ``row_visible`` [B, C] and
    ``prefix_visible`` [B, P] (None: all of it) bool, which columns each row sees. Every row
    must see at least one of its own columns. Returns [B, H * D] float32: the attention over the
    prefix and row columns concatenated.
    """
    args = (query, prefix_keys, prefix_values, row_keys, row_values, row_visible, prefix_visible)
    if query.device.type == "cpu" and _flash_usable():
        return _decode_attention_flash(*args, scale)
    return decode_attention_reference(*args, scale)


_FLASH = "_scaled_dot_product_flash_attention_for_cpu"


def _decode_attention_flash(
    query: torch.Tensor,
    prefix_keys: torch.Tensor,
    prefix_values: torch.Tensor,
    row_keys: torch.Tensor,
    row_values: torch.Tensor,
    row_visible: torch.Tensor,
    prefix_visible: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """:func:`decode_attention` in two flash-attention calls merged by log-sum-exp."""
    flash = getattr(torch.ops.aten, _FLASH)
    b, h, d = query.shape
    kv = row_keys.shape[1]
    groups = h // kv
    grouped = query.float().view(b, kv, groups, d)  # [B, KV, G, D]
    blocked = torch.zeros(row_visible.shape).masked_fill(~row_visible, float("-inf"))
    out, lse = flash(
        grouped, row_keys, row_values, 0.0, False, attn_mask=blocked[:, None, None], scale=scale
    )
    p = prefix_keys.shape[1]
    if p:
        # All rows' queries of one KV head as one sequence against that head's prefix.
        by_head = grouped.transpose(0, 1).reshape(1, kv, b * groups, d)
        mask = None
        if prefix_visible is not None:
            mask = torch.zeros(prefix_visible.shape).masked_fill(~prefix_visible, float("-inf"))
            mask = mask.repeat_interleave(groups, dim=0)[None, None]  # [1, 1, B*G, P]
        prefix_out, prefix_lse = flash(
            by_head, prefix_keys[None], prefix_values[None], 0.0, False, attn_mask=mask, scale=scale
        )
        prefix_out = prefix_out.view(kv, b, groups, d).transpose(0, 1)
        prefix_lse = prefix_lse.view(kv, b, groups).transpose(0, 1)
        if prefix_visible is not None:  # the kernel gives a row that sees nothing lse 0, not -inf
            nothing = ~prefix_visible.any(dim=1)
            prefix_lse = prefix_lse.masked_fill(nothing[:, None, None], float("-inf"))
        total = torch.logaddexp(lse, prefix_lse)
        out = (
            out * (lse - total).exp()[..., None]
            + prefix_out * (prefix_lse - total).exp()[..., None]
        )
    return out.reshape(b, h * d)


@functools.cache
def _flash_usable() -> bool:
    """Whether torch's private CPU flash-attention op exists here and agrees with the
    reference on a probe (a masked row, a prefix mask, grouped heads)."""
    if not hasattr(torch.ops.aten, _FLASH):
        return False
    g = torch.Generator().manual_seed(0)
    query = torch.randn(3, 4, 8, generator=g)
    prefix_keys, prefix_values = torch.randn(2, 2, 5, 8, generator=g)
    keys, values = torch.randn(2, 3, 2, 6, 8, generator=g)
    row_visible = torch.arange(6)[None] < torch.tensor([6, 1, 3])[:, None]
    prefix_visible = torch.arange(5)[None] < torch.tensor([5, 0, 2])[:, None]
    args = (query, prefix_keys, prefix_values, keys, values, row_visible, prefix_visible, 0.3)
    try:
        got = _decode_attention_flash(*args)
    except (RuntimeError, TypeError, NotImplementedError):
        return False
    return bool(torch.allclose(got, decode_attention_reference(*args), rtol=1e-4, atol=1e-5))


def decode_attention_reference(
    query: torch.Tensor,
    prefix_keys: torch.Tensor,
    prefix_values: torch.Tensor,
    row_keys: torch.Tensor,
    row_values: torch.Tensor,
    row_visible: torch.Tensor,
    prefix_visible: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """:func:`decode_attention` in plain torch: one softmax over the prefix and row scores
    together (all rows' queries of one KV head form one matrix product against the prefix)."""
    b, h, d = query.shape
    kv = row_keys.shape[1]
    p = prefix_keys.shape[1]
    grouped = (query.float() * scale).view(b, kv, h // kv, d)  # [B, KV, G, D]
    scores = grouped @ row_keys.transpose(-1, -2)  # [B, KV, G, C]
    scores = scores.masked_fill(~row_visible[:, None, None, :], float("-inf"))
    if p:
        # [KV, B*G, D] @ [KV, D, P]: one product per KV head for the whole batch.
        by_head = grouped.transpose(0, 1).reshape(kv, -1, d)
        prefix_scores = (by_head @ prefix_keys.transpose(-1, -2)).view(kv, b, -1, p)
        prefix_scores = prefix_scores.transpose(0, 1)
        if prefix_visible is not None:
            prefix_scores = prefix_scores.masked_fill(
                ~prefix_visible[:, None, None, :], float("-inf")
            )
        scores = torch.cat([prefix_scores, scores], dim=-1)
    probs = scores.softmax(dim=-1)
    out = probs[..., p:] @ row_values  # [B, KV, G, D]
    if p:
        prefix_probs = probs[..., :p].transpose(0, 1).reshape(kv, -1, p)
        out = out + (prefix_probs @ prefix_values).view(kv, b, -1, d).transpose(0, 1)
    return out.reshape(b, h * d)


def prefill_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    context: list[tuple[torch.Tensor, torch.Tensor]],
    visible: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """Attention of M new tokens that continue a context.

    ``query`` [H, M, D], ``keys``/``values`` [KV, M, D] of the new tokens; ``context`` (keys,
    values) pieces [KV, C_i, D] of the tokens before them, in order, all of which every new token
    sees; ``visible`` [M, M] bool, which new tokens each new token sees (a token tree: its
    ancestors and itself), None for causal order. Returns [M, H * D].
    """
    m = query.shape[1]
    pieces = [piece for piece in context if piece[0].shape[1]]
    c = sum(k.shape[1] for k, _ in pieces)
    keys = torch.cat([*(k.float() for k, _ in pieces), keys.float()], dim=1)
    values = torch.cat([*(v.float() for _, v in pieces), values.float()], dim=1)
    if visible is None:
        visible = torch.ones((m, m), dtype=torch.bool, device=query.device).tril()
    mask = torch.ones((m, c + m), dtype=torch.bool, device=query.device)
    mask[:, c:] = visible
    out = F.scaled_dot_product_attention(
        query.float()[None],
        keys[None],
        values[None],
        attn_mask=mask,
        scale=scale,
        enable_gqa=True,
    )
    return out[0].transpose(0, 1).reshape(m, -1)

"""Attention of the fast engine over its caches: a decode step, and a prefill pass.

Shapes use H query heads, KV key/value heads (H a multiple of KV, grouped as in transformers'
``repeat_kv``: query head h reads KV head ``h // (H // KV)``), D head size. Both functions take
the model's own ``scale`` (``module.scaling``), compute in float32 and return float32.
"""

from __future__ import annotations

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
    batch: all rows' queries of one KV head form one matrix product against them);
    ``row_keys``/``row_values`` [B, KV, C, D]; ``row_visible`` [B, C] and ``prefix_visible``
    [B, P] (None: all of it) bool, which columns each row sees. Every row must see at least one
    column. Returns [B, H * D]: one softmax over prefix and row columns together, so the result is
    the attention over the concatenated keys.
    """
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

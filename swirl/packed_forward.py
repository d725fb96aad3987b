"""One forward pass of a Hugging Face causal LM over a :class:`~swirl.packing.PackedBatch`.

The decoder runs with the batch's explicit position ids (a branch continues the positions of its
attachment point) and a tree-attention function that lets each token see exactly its ancestors
and itself. Sequence boundaries come from the batch's tree arrays, never from
``position_ids == 0``. Three interchangeable attention paths:

- ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` with the boolean tree mask
  ``[R, 1, L, L]`` (CPU and GPU, with autograd; the default on CPU).
- ``"flex"``: FlexAttention with a block mask built from ``subtree_end`` (``kv <= q <
  subtree_end[kv]``, so blocks outside a subtree are skipped); the default on CUDA without
  flash-attn. Compiled on CUDA; on CPU it runs unfused and has no backward.
- ``"flash"``: flash-attn's varlen kernel. The tree is cut into chains (runs of tokens whose
  parent is the previous token); a chain's queries attend to the keys of its root path followed
  by its own keys, causally aligned bottom-right, which is exactly the ancestor set. The default
  on CUDA when flash-attn is installed and the model runs in fp16/bf16.

The attention function is registered with transformers' ``AttentionInterface`` as
``"swirl_packed"`` and selected only for the duration of the call (the model's configured
implementation is restored afterwards), so one model must not run two packed forwards at once
from different threads.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F

from swirl.packing import PackedBatch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

Attention = Literal["auto", "sdpa", "flex", "flash"]
ATTENTION_NAME = "swirl_packed"
_PLAN_KWARG = "swirl_plan"


def resolve_attention(attention: Attention, device: torch.device, dtype: torch.dtype) -> str:
    """The concrete path for ``attention`` on this device and dtype ("auto" picks the fastest)."""
    if attention not in ("auto", "sdpa", "flex", "flash"):
        raise ValueError(f"attention must be 'auto', 'sdpa', 'flex' or 'flash', got {attention!r}")
    if attention != "auto":
        return attention
    if device.type != "cuda":
        return "sdpa"
    has_flash = importlib.util.find_spec("flash_attn") is not None
    return "flash" if has_flash and dtype in (torch.float16, torch.bfloat16) else "flex"


def packed_forward(
    model: PreTrainedModel, batch: PackedBatch, *, attention: Attention = "auto"
) -> torch.Tensor:
    """Run the decoder of ``model`` (a causal LM such as LlamaForCausalLM) over a packed batch.

    Returns the final hidden states ``[R, L, D]`` (after the last norm, before the LM head), in the
    model's dtype and on its device. Row ``batch.target_rows[m]`` of ``hidden.view(R * L, D)``
    predicts ``batch.target_ids[m]``. Padding rows hold finite values that no target uses.
    """
    if batch.shape[0] == 0:
        raise ValueError("the packed batch is empty (no sequence has a branch)")
    decoder = _decoder(model)
    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype
    path = resolve_attention(attention, device, dtype)
    plan = _PLANS[path](batch, device)
    input_ids = torch.from_numpy(batch.input_ids).to(device=device, dtype=torch.long)
    position_ids = torch.from_numpy(batch.position_ids).to(device=device, dtype=torch.long)
    with _packed_attention_selected(decoder.config):
        out = decoder(
            input_ids=input_ids,
            position_ids=position_ids,
            attention_mask=None,
            use_cache=False,
            **{_PLAN_KWARG: plan},
        )
    return out.last_hidden_state


class _SdpaPlan:
    """Dense boolean tree mask for torch SDPA (or explicit softmax when logits are soft-capped)."""

    def __init__(self, batch: PackedBatch, device: torch.device) -> None:
        self.mask = torch.from_numpy(batch.attention_mask()).to(device)
        self.depth = torch.from_numpy(batch.position_ids).to(device)

    def attend(self, query, key, value, *, scaling, dropout, softcap, sliding_window):
        groups = query.shape[1] // key.shape[1]
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
        mask = self.mask
        if sliding_window is not None:  # the window counts tree positions (ancestor depths)
            near = self.depth[:, :, None] - self.depth[:, None, :] < sliding_window
            mask = mask & near[:, None]
        if softcap is None:
            out = F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling
            )
        else:
            scores = (query @ key.transpose(-1, -2)) * (scaling or query.shape[-1] ** -0.5)
            scores = softcap * torch.tanh(scores / softcap)
            probs = scores.masked_fill(~mask, float("-inf")).softmax(-1)
            out = F.dropout(probs, dropout) @ value
        return out.transpose(1, 2)


class _FlexPlan:
    """FlexAttention block mask from the preorder intervals ``kv <= q < subtree_end[kv]``."""

    def __init__(self, batch: PackedBatch, device: torch.device) -> None:
        from torch.nn.attention.flex_attention import create_block_mask

        rows, length = batch.shape
        end = torch.from_numpy(batch.subtree_end).to(device=device, dtype=torch.long)

        def tree(b, h, q, kv):
            return (kv <= q) & (q < end[b, kv])

        self.block_mask = create_block_mask(
            tree, B=rows, H=None, Q_LEN=length, KV_LEN=length, device=device
        )

    def attend(self, query, key, value, *, scaling, dropout, softcap, sliding_window):
        if dropout:
            raise ValueError("attention='flex' does not support attention dropout")
        if sliding_window is not None:
            raise ValueError("attention='flex' does not support sliding-window layers; use 'sdpa'")
        score_mod = None
        if softcap is not None:

            def score_mod(score, b, h, q, kv):
                return softcap * torch.tanh(score / softcap)

        out = _flex_attention(query.device.type)(
            query,
            key,
            value,
            score_mod=score_mod,
            block_mask=self.block_mask,
            scale=scaling,
            enable_gqa=query.shape[1] != key.shape[1],
        )
        return out.transpose(1, 2)


@functools.cache
def _flex_attention(device_type: str) -> Callable:
    from torch.nn.attention.flex_attention import flex_attention

    # Compiled it is a fused kernel; on CPU the unfused reference path is used (forward only).
    return torch.compile(flex_attention) if device_type == "cuda" else flex_attention


def chain_segments(batch: PackedBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut the trees of a packed batch into chains for varlen attention.

    A chain is a maximal run of tokens in which each token's parent is the previous token. Its
    keys are its root path (the ancestors of its first token, root first) followed by its own
    tokens, so causal attention aligned bottom-right sees exactly each token's ancestors.

    Returns ``(query_index [Tq], key_index [Tk], cu_q [C+1], cu_k [C+1])``: flat indices into
    ``R * L`` (int64, padding excluded) and cumulative chain lengths (int32) for C chains.
    """
    rows, length = batch.shape
    query_index, key_index, cu_q, cu_k = [], [], [0], [0]
    for r in range(rows):
        n = int(batch.row_lengths[r])
        parent = batch.parent[r, :n].astype(np.int64)
        depth = batch.position_ids[r, :n]
        index = np.arange(n)
        starts = np.flatnonzero((parent != index - 1) | (index == 0))
        ends = np.append(starts[1:], n)
        chain_of = np.searchsorted(starts, index, side="right") - 1
        keys: list[np.ndarray] = []  # per chain: row-local key indices, root first
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            p = int(parent[a])
            path = keys[chain_of[p]][: depth[p] + 1] if p >= 0 else index[:0]
            keys.append(np.concatenate([path, index[a:b]]))
            query_index.append(index[a:b] + r * length)
            key_index.append(keys[-1] + r * length)
            cu_q.append(cu_q[-1] + b - a)
            cu_k.append(cu_k[-1] + len(keys[-1]))
    empty = np.zeros(0, np.int64)
    return (
        np.concatenate(query_index) if query_index else empty,
        np.concatenate(key_index) if key_index else empty,
        np.array(cu_q, np.int32),
        np.array(cu_k, np.int32),
    )


class _FlashPlan:
    """Chains of the trees for flash-attn's varlen kernel (see :func:`chain_segments`)."""

    def __init__(self, batch: PackedBatch, device: torch.device) -> None:
        query_index, key_index, cu_q, cu_k = chain_segments(batch)
        self.query_index = torch.from_numpy(query_index).to(device)
        self.key_index = torch.from_numpy(key_index).to(device)
        self.cu_q = torch.from_numpy(cu_q).to(device)
        self.cu_k = torch.from_numpy(cu_k).to(device)
        self.max_q = int(np.diff(cu_q).max())
        self.max_k = int(np.diff(cu_k).max())
        self.depth_span = int(batch.position_ids.max()) + 1

    def attend(self, query, key, value, *, scaling, dropout, softcap, sliding_window):
        if sliding_window is not None and self.depth_span > sliding_window:
            raise ValueError(
                f"attention='flash' cannot apply a sliding window of {sliding_window} to trees "
                f"{self.depth_span} tokens deep; use 'sdpa'"
            )
        batch, heads, length, dim = query.shape

        def flat(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return x.transpose(1, 2).reshape(batch * length, x.shape[1], dim).index_select(0, index)

        out = _varlen_attention()(
            flat(query, self.query_index),
            flat(key, self.key_index),
            flat(value, self.key_index),
            self.cu_q,
            self.cu_k,
            self.max_q,
            self.max_k,
            dropout_p=dropout,
            softmax_scale=scaling,
            causal=True,
            softcap=softcap or 0.0,
        )
        full = out.new_zeros(batch * length, heads, dim).index_copy(0, self.query_index, out)
        return full.view(batch, length, heads, dim)


def _varlen_attention() -> Callable:
    from flash_attn import flash_attn_varlen_func

    return flash_attn_varlen_func


def varlen_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    softcap: float = 0.0,
) -> torch.Tensor:
    """Plain-torch reference of ``flash_attn_varlen_func`` (no dropout): q ``[Tq, H, D]``, k/v
    ``[Tk, Hkv, D]`` -> ``[Tq, H, D]``; with ``causal`` the mask is aligned bottom-right (query i of
    a chain with n queries and m keys sees keys ``j <= i + m - n``), as in flash-attn >= 2.1."""
    if dropout_p:
        raise ValueError("the reference has no dropout")
    outputs = []
    groups = q.shape[1] // k.shape[1]
    for c in range(len(cu_seqlens_q) - 1):
        qs = q[cu_seqlens_q[c] : cu_seqlens_q[c + 1]].transpose(0, 1)
        ks = k[cu_seqlens_k[c] : cu_seqlens_k[c + 1]].transpose(0, 1).repeat_interleave(groups, 0)
        vs = v[cu_seqlens_k[c] : cu_seqlens_k[c + 1]].transpose(0, 1).repeat_interleave(groups, 0)
        n, m = qs.shape[1], ks.shape[1]
        scores = (qs @ ks.transpose(-1, -2)) * (softmax_scale or q.shape[-1] ** -0.5)
        if softcap:
            scores = softcap * torch.tanh(scores / softcap)
        if causal:
            visible = torch.arange(m)[None, :] <= torch.arange(n)[:, None] + (m - n)
            scores = scores.masked_fill(~visible.to(scores.device), float("-inf"))
        outputs.append((scores.softmax(-1) @ vs).transpose(0, 1))
    return torch.cat(outputs)


_PLANS = {"sdpa": _SdpaPlan, "flex": _FlexPlan, "flash": _FlashPlan}


def _packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    softcap: float | None = None,
    sliding_window: int | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: q ``[B, H, L, D]``, k/v ``[B, Hkv, L, D]`` -> ``[B, L, H, D]``."""
    plan = kwargs.get(_PLAN_KWARG)
    if plan is None:
        raise RuntimeError(f"the {ATTENTION_NAME!r} attention runs only inside packed_forward()")
    out = plan.attend(
        query,
        key,
        value,
        scaling=scaling,
        dropout=dropout,
        softcap=softcap,
        sliding_window=sliding_window,
    )
    return out.contiguous(), None


@functools.cache
def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, _packed_attention)


def _decoder(model: PreTrainedModel) -> torch.nn.Module:
    """The decoder stack of a causal LM (``model.model`` for Llama-style models)."""
    return model.get_decoder() if hasattr(model, "get_decoder") else model.model


def packed_attention_scope(model: PreTrainedModel) -> contextlib.AbstractContextManager[None]:
    """Keep the packed attention selected on ``model`` for a whole block, e.g. a forward *and*
    its backward: with gradient checkpointing the decoder layers are recomputed during backward,
    after :func:`packed_forward` has returned, and must attend the same way again."""
    return _packed_attention_selected(_decoder(model).config)


@contextlib.contextmanager
def _packed_attention_selected(config) -> Iterator[None]:
    """Route the decoder's attention layers (which read ``config._attn_implementation`` on every
    call) to the packed attention for the duration of the block."""
    _register()
    previous = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        config._attn_implementation = previous

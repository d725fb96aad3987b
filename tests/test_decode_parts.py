"""The fast engine's building blocks against plain torch: packed linears (and their fallback),
the attention over a shared prefix plus per-row columns, prefill attention over a token tree, and
the slot cache's byte bound, rebuilds and swaps."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from swirl.backends.attention import (
    DecodeContext,
    decode_attention,
    decode_attention_reference,
    flash_usable,
    prefill_attention,
)
from swirl.backends.kv_cache import SlotKV
from swirl.backends.packed_linear import PackedLinear, onednn_packing


@pytest.mark.parametrize("rows", [1, 5, 64])
@pytest.mark.parametrize("pack", [None, False])
def test_packed_linear_matches_linear(rows: int, pack: bool | None) -> None:
    """Stacked parts with and without biases (a missing bias counts as zeros), packed as this
    machine allows or forced unpacked."""
    g = torch.Generator().manual_seed(rows)
    weights = [torch.randn(n, 40, generator=g) for n in (32, 16, 48)]
    biases = [torch.randn(32, generator=g), None, torch.randn(48, generator=g)]
    x = torch.randn(2, rows, 40, generator=g)
    layer = PackedLinear(list(zip(weights, biases, strict=True)), rows_hint=16, pack=pack)
    expected = F.linear(x, torch.cat(weights), torch.cat([biases[0], torch.zeros(16), biases[2]]))
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    # A reload reads new values into the same stacked buffer.
    buffer = layer._stacked.data_ptr()
    weights = [w * 2 for w in weights]
    layer.load(list(zip(weights, biases, strict=True)))
    assert layer._stacked.data_ptr() == buffer
    expected = F.linear(x, torch.cat(weights), torch.cat([biases[0], torch.zeros(16), biases[2]]))
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_a_single_unpacked_part_follows_the_parameter() -> None:
    weight = torch.randn(8, 4)
    layer = PackedLinear([(weight, None)], rows_hint=4, pack=False)
    weight.mul_(3)
    x = torch.randn(2, 4)
    torch.testing.assert_close(layer(x), F.linear(x, weight))


def test_onednn_packing_follows_the_instruction_set() -> None:
    """bfloat16 packing only where oneDNN's bf16 path is supported (avx512bw or better): on a
    machine without it, the probe says no instead of the first product raising."""
    assert onednn_packing(torch.float16) is False
    bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert onednn_packing(torch.bfloat16) == bf16
    weight = torch.randn(8, 4).bfloat16()
    layer = PackedLinear([(weight, None)], rows_hint=4)
    assert layer.packed == bf16
    x = torch.randn(3, 4).bfloat16()
    torch.testing.assert_close(layer(x), F.linear(x, weight), rtol=2e-2, atol=2e-2)


def _expand(t: torch.Tensor, groups: int, dim: int = 1) -> torch.Tensor:
    return t.repeat_interleave(groups, dim=dim)  # KV heads -> query heads, as transformers does


def _decode_case(g: torch.Generator, heads: int, kv: int, dtype: torch.dtype, scale: float = 1.0):
    """A query [5, H, 8] and a context: rows of 9, 3, 1, 6 and 9 filled columns, seeing 7, 7,
    2, 0 (none) and 5 of the 7 prefix tokens."""
    rows, dim, prefix, columns = 5, 8, 7, 9
    query = (torch.randn(rows, heads, dim, generator=g) * scale).to(dtype)
    prefix_keys, prefix_values = torch.randn(2, kv, prefix, dim, generator=g) * scale
    keys, values = torch.randn(2, rows, kv, columns, dim, generator=g) * scale
    lengths = torch.tensor([9, 3, 1, 6, 9])
    used = torch.tensor([7, 7, 2, 0, 5])
    context = DecodeContext(
        prefix_keys.to(dtype).float(),
        prefix_values.to(dtype).float(),
        keys.to(dtype).float(),
        values.to(dtype).float(),
        row_visible=torch.arange(columns)[None] < lengths[:, None],
        prefix_visible=torch.arange(prefix)[None] < used[:, None],
    )
    return query, context


def _decode_expected(query: torch.Tensor, context: DecodeContext) -> torch.Tensor:
    """Plain SDPA in float64 over the prefix and row columns concatenated per row."""
    rows, heads, _ = query.shape
    groups = heads // context.row_keys.shape[1]
    prefix_keys = context.prefix_keys.expand(rows, -1, -1, -1)
    prefix_values = context.prefix_values.expand(rows, -1, -1, -1)
    all_keys = torch.cat([prefix_keys, context.row_keys], dim=2).double()
    all_values = torch.cat([prefix_values, context.row_values], dim=2).double()
    prefix_visible = context.prefix_visible
    if prefix_visible is None:
        prefix_visible = torch.ones(rows, context.prefix_keys.shape[1], dtype=torch.bool)
    mask = torch.cat([prefix_visible, context.row_visible], dim=1)
    out = F.scaled_dot_product_attention(
        query.double()[:, :, None],
        _expand(all_keys, groups),
        _expand(all_values, groups),
        attn_mask=mask[:, None, None],
        scale=0.3,
    )
    return out.reshape(rows, -1)


ATTENTIONS = [decode_attention, decode_attention_reference]


def test_the_fused_decode_attention_is_used_here() -> None:
    """torch's CPU flash-attention op is present in the pinned torch: the fast path runs (the
    tests below then compare both paths with float64 SDPA)."""
    assert flash_usable()


@pytest.mark.parametrize("attention", ATTENTIONS, ids=["flash", "reference"])
@pytest.mark.parametrize("heads,kv", [(6, 6), (6, 2), (6, 1)], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("scale", [1.0, 30.0], ids=["plain", "large-scores"])
def test_decode_attention_equals_attention_over_concatenated_keys(
    attention, heads, kv, scale
) -> None:
    """Rows of different lengths, one seeing a single column, one seeing no prefix at all."""
    g = torch.Generator().manual_seed(heads * 10 + kv)
    query, context = _decode_case(g, heads, kv, torch.float32, scale)
    expected = _decode_expected(query, context)
    out = attention(query, context, scale=0.3)
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-4 * scale)
    # Every row seeing the whole prefix: the same as passing no prefix mask.
    full = torch.ones_like(context.prefix_visible)
    torch.testing.assert_close(
        attention(query, replace(context, prefix_visible=None), scale=0.3),
        attention(query, replace(context, prefix_visible=full), scale=0.3),
    )
    # Without a prefix, only the row columns count.
    empty = context.prefix_keys[:, :0]
    alone = replace(context, prefix_keys=empty, prefix_values=empty, prefix_visible=None)
    torch.testing.assert_close(
        attention(query, alone, scale=0.3).double(),
        _decode_expected(query, alone),
        rtol=1e-4,
        atol=1e-4 * scale,
    )


@pytest.mark.parametrize("attention", ATTENTIONS, ids=["flash", "reference"])
def test_decode_attention_scores_bfloat16_inputs_in_float32(attention) -> None:
    """A bfloat16 query against float32-held keys: computed in float32, so the error against a
    float64 computation on the same (bf16-rounded) inputs is float32 rounding, not bfloat16's."""
    g = torch.Generator().manual_seed(3)
    query, context = _decode_case(g, 6, 2, torch.bfloat16, 4)
    out = attention(query, context, scale=0.3)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), _decode_expected(query, context), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("context", [(), (4,), (4, 3)])
@pytest.mark.parametrize("ancestors", [0, 5])
def test_prefill_attention_sees_the_context_its_ancestors_and_itself(context, ancestors) -> None:
    """A chain of 6 new tokens after ``ancestors`` keys of its trie path: each token sees the
    whole context, every ancestor, and the chain up to itself."""
    g = torch.Generator().manual_seed(1)
    heads, kv, length, dim = 4, 2, 6, 8
    query = torch.randn(heads, length, dim, generator=g)
    keys, values = torch.randn(2, kv, ancestors + length, dim, generator=g)
    pieces = [tuple(torch.randn(2, kv, n, dim, generator=g)) for n in context]
    out = prefill_attention(query, keys, values, pieces, scale=0.5)
    before = sum(context) + ancestors
    position = torch.arange(before + length)
    mask = position[None, :] <= position[before:, None]  # query at C + A + i sees keys <= it
    all_keys = torch.cat([*(k for k, _ in pieces), keys], dim=1)
    all_values = torch.cat([*(v for _, v in pieces), values], dim=1)
    expected = F.scaled_dot_product_attention(
        query, _expand(all_keys, 2, 0), _expand(all_values, 2, 0), attn_mask=mask, scale=0.5
    )
    torch.testing.assert_close(out, expected.transpose(0, 1).reshape(length, -1))


def _filled(cache: SlotKV, index: int, tokens: list[int], prefix_length: int, value: float):
    slot = cache.slots[index]
    slot.tokens, slot.prefix_length, slot.live = list(tokens), prefix_length, True
    n = slot.length
    shape = (cache.layers, cache.heads, n, cache.head_dim)
    cache.put(index, 0, torch.full(shape, value), torch.full(shape, -value))
    return slot


def test_slot_cache_stays_within_its_byte_bound_and_keeps_live_rows() -> None:
    per_token = 2 * 2 * 1 * 4 * 4  # keys and values, 2 layers, 1 head, dim 4, float32
    cache = SlotKV(2, 1, 4, max_bytes=100 * per_token, max_columns=40, device=torch.device("cpu"))
    assert cache.bytes_per_token == per_token
    assert cache.reserve(4, 10)
    assert cache.keys.shape[1] == 4 and cache.columns >= 10
    a = _filled(cache, 0, list(range(12)), 2, 1.0)  # 10 columns
    b = _filled(cache, 2, list(range(7)), 0, 2.0)
    cache.release(cache.index(b))  # b is free: its content stays for a continuation
    # Four slots of 30 columns do not fit 100 tokens; two do, keeping the live and pinned rows.
    assert not cache.reserve(4, 30)
    assert cache.reserve(2, 30, pinned=[b])
    assert cache.keys.nbytes + cache.values.nbytes <= 100 * per_token
    assert {id(a), id(b)} <= {id(slot) for slot in cache.slots}
    assert torch.all(cache.keys[:, cache.index(a), :, :10] == 1.0)
    assert torch.all(cache.values[:, cache.index(b), :, :7] == -2.0)
    # A swap exchanges content and records.
    where = (cache.index(a), cache.index(b))
    cache.swap(*where)
    assert (cache.index(b), cache.index(a)) == where
    assert torch.all(cache.keys[:, cache.index(a), :, :10] == 1.0)
    assert torch.all(cache.keys[:, cache.index(b), :, :7] == 2.0)
    # One token per row written at each row's own column.
    k = torch.full((2, 1, 4), 5.0)
    rows = torch.tensor([cache.index(b), cache.index(a)])
    cache.write_column(0, rows, torch.tensor([7, 10]), k, -k)
    assert torch.all(cache.keys[0, cache.index(b), :, 7] == 5.0)
    assert torch.all(cache.keys[0, cache.index(a), :, 10] == 5.0)
    cache.clear()
    assert all(not slot.tokens and not slot.live for slot in cache.slots)

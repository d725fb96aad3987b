"""The fast decoding engine's building blocks against plain torch: packed linears, the cached
attention over a shared prefix plus per-row columns, and the grouping of prompts into chains."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from swirl.backends.kv_cache import Continuations, RowKV, decode_attention, prefill_attention
from swirl.backends.packed_linear import PackedLinear
from swirl.backends.prompt_tree import common_prefix_length, group_chains


@pytest.mark.parametrize("rows", [1, 5, 64])
@pytest.mark.parametrize("bias", [False, True])
def test_packed_linear_matches_linear(rows: int, bias: bool) -> None:
    generator = torch.Generator().manual_seed(rows)
    weight = torch.randn(96, 40, generator=generator)
    b = torch.randn(96, generator=generator) if bias else None
    x = torch.randn(2, rows, 40, generator=generator)
    layer = PackedLinear(weight, b, rows_hint=16)
    torch.testing.assert_close(layer(x), F.linear(x, weight, b), rtol=1e-5, atol=1e-5)


def _expand(t: torch.Tensor, groups: int) -> torch.Tensor:
    return t.repeat_interleave(groups, dim=1)  # KV heads -> query heads, as transformers does


def test_decode_attention_equals_attention_over_concatenated_keys() -> None:
    g = torch.Generator().manual_seed(0)
    rows, heads, kv, dim, prefix, columns = 5, 6, 2, 8, 7, 9
    query = torch.randn(rows, heads, dim, generator=g)
    prefix_keys, prefix_values = torch.randn(2, kv, prefix, dim, generator=g)
    keys, values = torch.randn(2, rows, kv, columns, dim, generator=g)
    starts = torch.tensor([0, 3, 8, 1, 0])  # left padding of each row
    visible = torch.arange(columns)[None] >= starts[:, None]
    bias = torch.zeros(rows, columns).masked_fill(~visible, float("-inf"))
    out = decode_attention(query, prefix_keys, prefix_values, keys, values, bias)

    all_keys = torch.cat([prefix_keys.expand(rows, -1, -1, -1), keys], dim=2)
    all_values = torch.cat([prefix_values.expand(rows, -1, -1, -1), values], dim=2)
    mask = torch.cat([torch.ones(rows, prefix, dtype=torch.bool), visible], dim=1)
    expected = F.scaled_dot_product_attention(
        query[:, :, None],
        _expand(all_keys, heads // kv),
        _expand(all_values, heads // kv),
        attn_mask=mask[:, None, None],
    )
    torch.testing.assert_close(out, expected.reshape(rows, -1), rtol=1e-5, atol=1e-6)
    # Without a prefix, only the row columns count.
    empty = prefix_keys[:, :0]
    alone = decode_attention(query, empty, empty, keys, values, bias)
    expected = F.scaled_dot_product_attention(
        query[:, :, None], _expand(keys, 3), _expand(values, 3), attn_mask=visible[:, None, None]
    )
    torch.testing.assert_close(alone, expected.reshape(rows, -1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("context", [(), (4,), (4, 3)])
def test_prefill_attention_is_causal_after_the_whole_context(context: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(1)
    heads, kv, length, dim = 4, 2, 6, 8
    query = torch.randn(heads, length, dim, generator=g)
    keys, values = torch.randn(2, kv, length, dim, generator=g)
    pieces = [tuple(torch.randn(2, kv, n, dim, generator=g)) for n in context]
    out = prefill_attention(query, keys, values, pieces)
    all_keys = torch.cat([*(k for k, _ in pieces), keys], dim=1)
    all_values = torch.cat([*(v for _, v in pieces), values], dim=1)
    before = sum(context)
    position = torch.arange(before + length)
    mask = position[None, :] <= position[before:, None]  # query at C + i sees keys <= it
    expected = F.scaled_dot_product_attention(
        query, _expand(all_keys[None], 2)[0], _expand(all_values[None], 2)[0], attn_mask=mask
    )
    torch.testing.assert_close(out, expected.transpose(0, 1).reshape(length, -1))


def test_row_cache_right_aligns_prompts_and_masks_the_left() -> None:
    like = torch.zeros(1)
    rows = RowKV(2, 3, 1, 2, prompt_lengths=[2, 4, 1], room=3, like=like)
    assert rows.keys.shape == (2, 3, 1, 7, 2) and rows.filled == 4
    pieces = [(torch.full((2, 1, 1, 2), 1.0),) * 2, (torch.full((2, 1, 1, 2), 2.0),) * 2]
    rows.put_prompt(0, pieces)
    assert torch.all(rows.keys[:, 0, :, 2] == 1) and torch.all(rows.values[:, 0, :, 3] == 2)
    assert torch.all(rows.keys[:, 0, :, :2] == 0) and torch.all(rows.values[:, 2, :, :3] == 0)
    assert torch.isinf(rows.bias[0, :2]).all() and (rows.bias[0, 2:] == 0).all()
    assert (rows.bias[1] == 0).all() and torch.isinf(rows.bias[2, :3]).all()
    rows.keys[:, 0, :, 4] = 3.0
    rows.filled = 5
    keys, _ = rows.row_span(0, 3)
    assert keys[0, 0, :, 0].tolist() == [1.0, 2.0, 3.0]
    rows.select([2, 0])  # the longest prompt (row 1) goes: columns left of row 0's go too
    assert rows.keys.shape == (2, 2, 1, 5, 2) and (rows.filled, rows.prompt_columns) == (3, 2)
    assert torch.all(rows.keys[:, 1, :, 0] == 1) and torch.all(rows.keys[:, 1, :, 2] == 3)
    assert torch.isinf(rows.bias[0, :1]).all() and (rows.bias[0, 1:] == 0).all()
    assert rows.starts == [1, 0] and (rows.bias[1] == 0).all()


def test_continuations_return_the_longest_matching_span() -> None:
    cache = Continuations(capacity=2)

    def kv(first: int, last: int) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(first, last, dtype=torch.float32)
        return positions.view(1, 1, -1, 1), -positions.view(1, 1, -1, 1)

    cache.add((1, 2, 3, 4), 2, *kv(2, 4))
    cache.add((1, 2, 3, 4, 5, 6), 1, *kv(1, 6))
    keys, values = cache.longest((1, 2, 3, 4, 5, 6, 7), 2, limit=10)
    assert keys.flatten().tolist() == [2, 3, 4, 5] and values.flatten().tolist() == [-2, -3, -4, -5]
    keys, _ = cache.longest((1, 2, 3, 4, 5, 6, 7), 2, limit=2)
    assert keys.flatten().tolist() == [2, 3]
    assert cache.longest((1, 2, 9), 2, limit=5) is None  # diverges at the first position wanted
    assert cache.longest((1, 2, 3, 4), 0, limit=5) is None  # entries start later
    cache.add((7, 8, 9), 0, *kv(0, 3))  # over capacity: the oldest entry goes
    assert len(cache) == 2 and cache.longest((1, 2, 3, 4, 5, 6, 9), 2, limit=9)[0].shape[2] == 4


def test_prompt_chains() -> None:
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    rests = [[5, 6], [5, 6, 7, 8], [9], [5, 6, 7, 8], [5, 7], [9, 1]]
    heads, head_of = group_chains(rests)
    assert heads == [1, 4, 5]  # longest first; duplicates and prefixes join a head
    assert head_of == [1, 1, 5, 1, 4, 5]

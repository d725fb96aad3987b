"""The fast engine's decode attention (two flash-attention calls merged by log-sum-exp) against
its plain-torch reference, at the shape of an eval decode step of the embedded model.

SmolLM2-135M: 9 query heads, 3 KV heads, head size 64; 27 live rows (the eval workload's mean),
a 700-token shared prefix (system prompt and worked examples) and 300 own columns per row, rows
seeing 50-300 of them. Printed: milliseconds per layer (a step runs 30 layers) and the ratio.

    .venv/bin/pytest benches/bench_attention.py --benchmark-enable -s
"""

from __future__ import annotations

import pytest
import torch

from benches.timing import best_of, fastest
from swirl.backends.attention import (
    DecodeContext,
    decode_attention,
    decode_attention_reference,
    flash_usable,
)

ROWS, HEADS, KV_HEADS, HEAD_DIM, PREFIX, COLUMNS = 27, 9, 3, 64, 700, 300


def eval_step_case() -> tuple[torch.Tensor, DecodeContext]:
    g = torch.Generator().manual_seed(0)
    query = torch.randn(ROWS, HEADS, HEAD_DIM, generator=g)
    prefix = torch.randn(2, KV_HEADS, PREFIX, HEAD_DIM, generator=g)
    # Each row's columns are a view into a larger slot store, as in the engine's cache.
    store = torch.randn(2, ROWS, KV_HEADS, 4 * COLUMNS, HEAD_DIM, generator=g)
    lengths = torch.randint(50, COLUMNS + 1, (ROWS,), generator=g)
    visible = torch.arange(COLUMNS)[None, :] < lengths[:, None]
    context = DecodeContext(
        prefix[0],
        prefix[1],
        store[0, :, :, :COLUMNS],
        store[1, :, :, :COLUMNS],
        visible,
    )
    return query, context


@pytest.mark.skipif(not flash_usable(), reason="torch's CPU flash-attention op is not usable")
def test_decode_attention_flash_vs_reference(benchmark) -> None:
    query, context = eval_step_case()
    fused, fused_s = fastest(benchmark, decode_attention, query, context, 0.125, rounds=20)
    reference_s = best_of(lambda: decode_attention_reference(query, context, 0.125), rounds=20)
    reference = decode_attention_reference(query, context, 0.125)
    torch.testing.assert_close(fused, reference, rtol=1e-4, atol=1e-5)
    print(
        f"\ndecode attention per layer ({ROWS} rows, prefix {PREFIX}, {COLUMNS} columns, "
        f"{torch.get_num_threads()} threads): fused {1e3 * fused_s:.2f} ms, reference "
        f"{1e3 * reference_s:.2f} ms, fused/reference speed {reference_s / fused_s:.2f}x"
    )

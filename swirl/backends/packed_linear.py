"""Linear layers whose weights are prepacked once for oneDNN, for decoding on CPU.

A decode step multiplies a few rows (one per sequence) by every weight matrix. aten's float32
``linear`` reaches MKL's sgemm, which measured 2-4x slower here than oneDNN on a weight reordered
ahead of time into its blocked layout (``benches/bench_generation.py`` prints the effect on whole
decode steps). Packing copies the weights, so a packed layer is a snapshot: the owner calls
:meth:`PackedLinear.load` after the weights change (:class:`swirl.backends.decode.FastDecoder`
checks parameter versions).

The packing goes through private oneDNN ops of torch (``torch.ops.mkldnn``). They are used only
where :func:`onednn_packing` finds them present, supported by the CPU's instruction set for the
dtype (bfloat16 needs avx512bw at least, which torch reports as ``_is_mkldnn_bf16_supported``) and
giving the same product as ``torch.nn.functional.linear`` on a probe; otherwise a layer keeps a
plain contiguous weight and calls ``F.linear``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@functools.cache
def onednn_packing(dtype: torch.dtype) -> bool:
    """Whether oneDNN weight packing works for CPU weights of ``dtype`` on this machine."""
    if dtype not in (torch.float32, torch.bfloat16):
        return False
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    ops = torch.ops.mkldnn
    try:
        if dtype == torch.bfloat16 and not ops._is_mkldnn_bf16_supported():
            return False
        generator = torch.Generator().manual_seed(0)
        weight = torch.randn(24, 40, generator=generator).to(dtype)
        bias = torch.randn(24, generator=generator).to(dtype)
        x = torch.randn(3, 40, generator=generator).to(dtype)
        packed = ops._reorder_linear_weight(weight, 3)
        got = ops._linear_pointwise(x, packed, bias, "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        return False  # an op missing from this torch build, or the CPU lacks the instructions
    expected = F.linear(x.float(), weight.float(), bias.float())
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    return bool(torch.allclose(got.float(), expected, rtol=tolerance, atol=tolerance))


class PackedLinear:
    """``y = x @ weight.T + bias`` for a weight ``[N, K]`` stacked from one or more parts.

    ``parts`` are ``(weight [N_i, K], bias [N_i] | None)`` pairs stacked along N (q, k and v as
    one product); missing biases count as zeros when another part has one. ``rows_hint`` is the
    usual number of rows per call (it picks oneDNN's blocking; any row count is correct).
    ``pack`` forces oneDNN packing on or off (None: :func:`onednn_packing` decides).
    """

    def __init__(
        self,
        parts: list[tuple[torch.Tensor, torch.Tensor | None]],
        *,
        rows_hint: int,
        pack: bool | None = None,
    ) -> None:
        first = parts[0][0]
        self.in_features = first.shape[1]
        self.out_features = sum(weight.shape[0] for weight, _ in parts)
        self.rows_hint = max(rows_hint, 1)
        self.packed = onednn_packing(first.dtype) if pack is None else pack
        self.packed &= first.device.type == "cpu"
        self._stacked: torch.Tensor | None = None
        self.weight, self.bias = first, parts[0][1]
        self.load(parts)

    def load(self, parts: list[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
        """Read the weights again (after an optimizer step), into the buffers already held.

        A single part is read as it is (unpacked: a view of the parameter, no copy). Several
        are stacked into one weight (and bias) buffer allocated at the first load and written in
        place after. The packed copy is a new oneDNN tensor each time: torch exposes no in-place
        reorder."""
        if len(parts) == 1:
            weight, bias = parts[0]
            source = weight.detach()
            self.bias = None if bias is None else bias.detach()
        else:
            source = self._stack(parts)
        self.weight = (
            torch.ops.mkldnn._reorder_linear_weight(source, self.rows_hint)
            if self.packed
            else source
        )

    def _stack(self, parts: list[tuple[torch.Tensor, torch.Tensor | None]]) -> torch.Tensor:
        if self._stacked is None:
            first = parts[0][0]
            self._stacked = first.new_empty((self.out_features, self.in_features))
            has_bias = any(bias is not None for _, bias in parts)
            self.bias = first.new_zeros(self.out_features) if has_bias else None
        row = 0
        for weight, bias in parts:
            rows = slice(row, row + weight.shape[0])
            self._stacked[rows] = weight.detach()
            if self.bias is not None:
                self.bias[rows] = 0 if bias is None else bias.detach()
            row += weight.shape[0]
        return self._stacked

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [..., K] -> [..., N] in ``x``'s dtype."""
        if self.packed:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)

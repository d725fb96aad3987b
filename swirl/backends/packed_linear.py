"""Linear layers whose weights are prepacked once for oneDNN, for decoding on CPU.

A decode step multiplies a few rows (one per sequence) by every weight matrix. aten's float32
``linear`` reaches MKL's sgemm, which measured 2-4x slower here than oneDNN on a weight reordered
ahead of time into its blocked layout (``benches/bench_generation.py`` prints the effect on whole
decode steps). Packing copies the weights, so a packed layer is a snapshot: the caller repacks
after the weights change (:class:`swirl.backends.decode.FastDecoder` checks parameter versions).
On other devices, or without oneDNN, the layer calls ``torch.nn.functional.linear`` on the weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def onednn_usable(weight: torch.Tensor) -> bool:
    """Whether oneDNN can run this weight: a CPU float32/bfloat16 tensor with oneDNN built in."""
    return (
        weight.device.type == "cpu"
        and weight.dtype in (torch.float32, torch.bfloat16)
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


class PackedLinear:
    """``y = x @ weight.T + bias`` with ``weight`` [N, K] packed for an expected row count.

    ``rows_hint`` is the typical number of rows per call (the decode batch); any row count is
    correct, the hint only picks oneDNN's blocking. A packed weight is a copy; an unpacked one is
    ``weight`` itself.
    """

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None = None, *, rows_hint: int = 32
    ) -> None:
        self.out_features, self.in_features = weight.shape
        self.bias = None if bias is None else bias.detach()
        self.packed = onednn_usable(weight)
        weight = weight.detach()
        self.weight = (
            torch.ops.mkldnn._reorder_linear_weight(weight, max(rows_hint, 1))
            if self.packed
            else weight
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [..., K] -> [..., N] in ``x``'s dtype."""
        if self.packed:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)

"""GPU: the Triton ``target_logprobs`` against the reference and the fused-linear-cross-entropy
peers, forward + backward at the Gemma-2-2B head shape (D = 2304, V = 256000, M = 16384, bf16).

Prints one table: median time, extra peak memory (``max_memory_allocated`` above the inputs),
and TFLOP/s counted as ``6 M D V`` (the three matmuls of forward + backward; the Triton path does
a fourth, the backward's recompute, which this count does not credit). Peers run when installed:
Liger-Kernel's ``LigerFusedLinearCrossEntropyLoss``, Apple's Cut Cross-Entropy
``linear_cross_entropy``, and torch's own chunked ``F.linear_cross_entropy``. Each computes the
summed cross-entropy, i.e. ``-sum(logp)``: the same work as ``target_logprobs`` with every target
on its own row. A first section checks the Triton gradients against the reference on a smaller
problem (the 2x-reference-error criterion of the tests).

Run on a CUDA machine: ``python benches/bench_ops_gpu.py`` (or through pytest with
``--benchmark-enable -s``; it skips without CUDA). ``SWIRL_BENCH_GPU_M`` / ``_D`` / ``_V`` change
the shape. Acceptance goal of the Triton path (a custom kernel is only worth keeping if it beats
the libraries one could install instead): faster than both peers and at least half of the bf16
dense tensor-core peak (989 TFLOP/s on an H100 SXM).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable

import pytest
import torch

M = int(os.environ.get("SWIRL_BENCH_GPU_M", "16384"))
D = int(os.environ.get("SWIRL_BENCH_GPU_D", "2304"))
V = int(os.environ.get("SWIRL_BENCH_GPU_V", "256000"))
REPEATS = 5


def _swirl(impl: str) -> Callable:
    from swirl.ops import target_logprobs

    def loss(hidden, weight, targets):
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return -target_logprobs(hidden, weight, rows, targets, impl=impl).sum()

    return loss


def _torch_chunked() -> Callable | None:
    if not hasattr(torch.nn, "LinearCrossEntropyOptions"):
        return None
    options = torch.nn.LinearCrossEntropyOptions()

    def loss(hidden, weight, targets):
        return torch.nn.functional.linear_cross_entropy(
            hidden, weight, targets, reduction="sum", options=options
        )

    return loss


def _liger() -> Callable | None:
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        return None
    module = LigerFusedLinearCrossEntropyLoss(reduction="sum")
    return lambda hidden, weight, targets: module(weight, hidden, targets)


def _cut_cross_entropy() -> Callable | None:
    try:
        from cut_cross_entropy import linear_cross_entropy
    except ImportError:
        return None
    return lambda hidden, weight, targets: linear_cross_entropy(
        hidden, weight, targets, reduction="sum"
    )


def contenders() -> dict[str, Callable | None]:
    """Name -> loss(hidden, weight, targets), None where the package is not installed."""
    return {
        "swirl triton": _swirl("triton"),
        "swirl reference": _swirl("reference"),
        "torch linear_cross_entropy (chunked)": _torch_chunked(),
        "Liger fused linear CE": _liger(),
        "Cut Cross-Entropy": _cut_cross_entropy(),
    }


def make_inputs(num_targets: int, dim: int, vocab: int, dtype=torch.bfloat16, seed: int = 0):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    hidden = torch.randn(num_targets, dim, device="cuda", generator=generator, dtype=dtype)
    weight = torch.randn(vocab, dim, device="cuda", generator=generator, dtype=dtype) / dim**0.5
    targets = torch.randint(0, vocab, (num_targets,), device="cuda", generator=generator)
    return hidden.requires_grad_(), weight.requires_grad_(), targets


def measure(loss_fn: Callable, hidden, weight, targets) -> dict[str, float]:
    """Median milliseconds and extra peak bytes of forward + backward (one warm-up first)."""

    def step():
        hidden.grad = weight.grad = None
        loss_fn(hidden, weight, targets).backward()

    step()  # compile / autotune outside the timing
    hidden.grad = weight.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(REPEATS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    peak = torch.cuda.max_memory_allocated() - base
    hidden.grad = weight.grad = None
    return {"ms": statistics.median(times), "peak_bytes": peak}


def bf16_peak_tflops() -> float | None:
    """Dense bf16 tensor-core peak of known GPUs (vendor figures), else None."""
    name = torch.cuda.get_device_name()
    if "H100" in name or "H200" in name:
        return 756.0 if "PCIe" in name else 989.0
    if "A100" in name:
        return 312.0
    return None


def check_gradients() -> list[str]:
    """Triton vs reference on a smaller bf16 problem: error against an fp32 ground truth."""
    from swirl.ops import target_logprobs

    hidden, weight, targets = make_inputs(1024, D, 32768, seed=1)
    rows = torch.arange(1024, device="cuda")
    upstream = torch.randn(1024, device="cuda")

    def grads(impl, h, w):
        h = h.detach().clone().requires_grad_()
        w = w.detach().clone().requires_grad_()
        logp = target_logprobs(h, w, rows, targets, impl=impl, softcap=30.0)
        logp.backward(upstream)
        return logp.detach(), h.grad.float(), w.grad.float()

    truth = grads("reference", hidden.float(), weight.float())
    reference = grads("reference", hidden, weight)
    triton = grads("triton", hidden, weight)
    lines = []
    for name, want, ref, got in zip(
        ("logp", "dhidden", "dweight"), truth, reference, triton, strict=True
    ):
        ref_err = (ref - want).abs().max().item()
        err = (got - want).abs().max().item()
        verdict = "ok" if err <= 2 * ref_err + 1e-5 else "FAIL"
        lines.append(
            f"  {name:8s} triton error {err:.3g}  reference error {ref_err:.3g}  {verdict}"
        )
    return lines


def run_table() -> str:
    """Benchmark every available contender and return the printed table."""
    lines = [
        f"{torch.cuda.get_device_name()}, target_logprobs / linear CE fwd+bwd, "
        f"M={M}, D={D}, V={V}, bf16",
        "gradient check (M=1024, V=32768, softcap 30):",
        *check_gradients(),
    ]
    flops = 6 * M * D * V
    peak = bf16_peak_tflops()
    lines.append(f"{'implementation':40s} {'ms':>9s} {'extra GiB':>10s} {'TFLOP/s':>9s}")
    inputs = make_inputs(M, D, V)
    for name, loss_fn in contenders().items():
        if loss_fn is None:
            lines.append(f"{name:40s} not installed")
            continue
        try:
            result = measure(loss_fn, *inputs)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            lines.append(f"{name:40s} out of memory")
            continue
        tflops = flops / (result["ms"] * 1e-3) / 1e12
        share = f"  ({tflops / peak:.0%} of {peak:.0f} bf16 peak)" if peak else ""
        lines.append(
            f"{name:40s} {result['ms']:9.2f} {result['peak_bytes'] / 2**30:10.2f} {tflops:9.1f}{share}"
        )
        torch.cuda.empty_cache()
    return "\n".join(lines)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_table(benchmark):
    table = benchmark.pedantic(run_table, rounds=1, iterations=1)
    print("\n" + table)


if __name__ == "__main__":
    if not torch.cuda.is_available():
        raise SystemExit("bench_ops_gpu.py needs a CUDA GPU")
    print(run_table())

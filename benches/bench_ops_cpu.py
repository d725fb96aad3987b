"""CPU: time and peak memory of ``target_logprobs`` forward + backward, chunked vs reference.

Also times torch's own chunked ``F.linear_cross_entropy`` (``torch_lce``: the summed
cross-entropy, the same work) as a peer. Shape: the embedded SmolLM2-135M head, M = N = 8192 targets, D = 576, V = 49152, float32 (the
reference's logits alone are 1.6 GB). Acceptance goals of the chunked path (it exists to save
memory, and must not pay for it with much time): extra peak memory at most 10% of the
reference's, time at most 1.5x.

Run: ``.venv/bin/pytest benches/bench_ops_cpu.py --benchmark-enable -s`` (about 5 GB at the
peak of the reference). ``SWIRL_BENCH_TARGETS=2048`` shrinks M = N for a quick look.

Peak memory. torch allocates tensors in C++, so ``tracemalloc`` sees none of it, and sampling
RSS from a thread misses short peaks. Instead each implementation runs once in a fresh process
(``python bench_ops_cpu.py IMPL``) that builds the inputs, warms the libraries up on a tiny
problem, resets the kernel's resident-set high-water mark (``echo 5 > /proc/self/clear_refs``),
notes the current RSS and runs forward + backward; the extra peak is ``VmHWM - RSS before``. The
kernel counts every page touched (torch tensors, MKL/oneDNN scratch, allocator slack) and misses
nothing, and the fresh process keeps memory freed by an earlier run from hiding the next one's.
The gradients (dW, dh) are part of both implementations' extra memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

TARGETS = int(os.environ.get("SWIRL_BENCH_TARGETS", "8192"))
DIM, VOCAB = 576, 49152
# torch_lce: torch's own chunked F.linear_cross_entropy (summed CE = -sum(logp)), a peer
IMPLS = ("reference", "chunked", "torch_lce")
RESULTS: dict[str, dict[str, float]] = {}


def make_inputs(num_targets: int, dim: int, vocab: int, seed: int = 0):
    """hidden [N, D], weight [V, D] (leaf tensors), rows, targets, upstream gradient [M]."""
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(num_targets, dim, generator=generator).requires_grad_()
    weight = (torch.randn(vocab, dim, generator=generator) / dim**0.5).requires_grad_()
    rows = torch.arange(num_targets)
    targets = torch.randint(0, vocab, (num_targets,), generator=generator)
    grad = torch.randn(num_targets, generator=generator)
    return hidden, weight, rows, targets, grad


def forward_backward(impl: str, hidden, weight, rows, targets, grad) -> None:
    """One training step of the op: logp, then backward with per-target weights ``grad``."""
    from swirl.ops import target_logprobs

    hidden.grad = weight.grad = None
    if impl == "torch_lce":
        options = torch.nn.LinearCrossEntropyOptions()
        torch.nn.functional.linear_cross_entropy(
            hidden[rows], weight, targets, reduction="sum", options=options
        ).backward()
        return
    logp = target_logprobs(hidden, weight, rows, targets, impl=impl)
    logp.backward(grad)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_peak_extra_bytes(impl: str, num_targets: int) -> int:
    """In this (fresh) process: extra resident bytes at the peak of one forward + backward."""
    forward_backward(impl, *make_inputs(16, DIM, 512))  # load MKL/oneDNN, start the thread pool
    inputs = make_inputs(num_targets, DIM, VOCAB)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    forward_backward(impl, *inputs)
    return (_status_kib("VmHWM") - before) * 1024


def peak_extra_bytes_in_child(impl: str) -> int:
    """Run ``measure_peak_extra_bytes`` in a fresh interpreter and return its result."""
    completed = subprocess.run(
        [sys.executable, __file__, impl, str(TARGETS)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])["peak_extra_bytes"]


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if not {"reference", "chunked"} <= set(RESULTS):
        return
    ref, chunked = RESULTS["reference"], RESULTS["chunked"]
    print(f"\ntarget_logprobs fwd+bwd, M=N={TARGETS}, D={DIM}, V={VOCAB}, float32, ", end="")
    print(f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    for impl, row in RESULTS.items():
        print(
            f"  {impl:9s}  best {row['seconds']:7.2f} s   extra peak {row['bytes'] / 2**20:8.0f} MiB"
            f"   (x{row['seconds'] / ref['seconds']:.2f} time, x{row['bytes'] / ref['bytes']:.3f}"
            " memory of reference)"
        )
    print(
        f"  time ratio chunked/reference: {chunked['seconds'] / ref['seconds']:.2f} (goal <= 1.5)"
    )
    print(
        f"  extra peak memory ratio chunked/reference: {chunked['bytes'] / ref['bytes']:.3f}"
        " (goal <= 0.10)"
    )


@pytest.mark.parametrize("impl", IMPLS)
def test_target_logprobs_forward_backward(benchmark, impl):
    if impl == "torch_lce" and not hasattr(torch.nn, "LinearCrossEntropyOptions"):
        pytest.skip("this torch has no chunked linear_cross_entropy")
    peak = peak_extra_bytes_in_child(impl)
    inputs = make_inputs(TARGETS, DIM, VOCAB)
    durations = []  # timed here too: with --benchmark-disable pytest-benchmark keeps no stats

    def step():
        start = time.perf_counter()
        forward_backward(impl, *inputs)
        durations.append(time.perf_counter() - start)

    benchmark.pedantic(step, rounds=3, iterations=1)
    RESULTS[impl] = {"seconds": min(durations), "bytes": peak}
    benchmark.extra_info["peak_extra_bytes"] = peak


if __name__ == "__main__":
    impl_name, targets = sys.argv[1], int(sys.argv[2])
    print(json.dumps({"peak_extra_bytes": measure_peak_extra_bytes(impl_name, targets)}))

"""Fused target log-probabilities under an LM head: Triton kernels, forward and backward.

Same contract as ``swirl.ops.reference.target_logprobs_reference`` (its plain-torch twin): for
each target ``i``, ``logp[i] = l[i, targets[i]] - logsumexp_v l[i, v]`` with
``l = softcap(hidden[rows[i]] @ weight.T) / temperature``, never holding ``[M, V]`` logits.

Forward (``_forward_kernel``): a program owns ``BLOCK_M`` targets and one contiguous split of the
vocabulary; per ``BLOCK_V`` tile it accumulates ``z = h @ w.T`` over ``D`` in fp32 with ``tl.dot``
and folds the tile into a running max / sum / shifted first moment (the online log-sum-exp of
flash attention, with the vocabulary as the keys). It reads each weight tile once per target block
(from L2 when the blocks run together) and writes 2-3 floats per target and split; splits (more
programs when ``M`` is small) are merged by a log-sum-exp over ``[splits, M]`` floats.

Backward, per chunk of ``vocab_chunk`` vocabulary rows:
  1. ``_dlogits_kernel`` recomputes the chunk's logits tile by tile (the same fp32 dot) and writes
     ``d loss / d z`` into a ``[M, vocab_chunk]`` buffer in the inputs' dtype;
  2. ``_matmul_kernel`` adds ``dlogits @ W_chunk`` into an fp32 ``[M, D]`` accumulator (the
     gradient of the gathered rows; scattered to ``hidden`` rows by ``index_add_`` at the end, so
     rows shared by several targets accumulate);
  3. ``_matmul_kernel`` writes ``dW_chunk = dlogits.T @ hidden[rows]`` (rows gathered in-kernel).
Each ``dW`` tile is owned by exactly one program that reduces over all targets in registers, so
there are no atomics (bf16 atomics are slow on GPUs and raise in the interpreter) and no fp32 copy
of ``dW``. Atomics could skip the chunk buffer, but with ``D`` in the thousands every logits tile
would scatter ``(BLOCK_M + BLOCK_V) * D`` fp32 atomics: more traffic than writing and re-reading
the chunk. FLOPs: ``2 M D V`` forward, ``6 M D V`` backward (one recompute).

Interpreter (``TRITON_INTERPRET=1``, CPU tensors): ``UPCAST`` casts every load to fp32 right after
it (bf16 arithmetic and bf16 ``tl.dot`` are wrong there), and every buffer the kernels write is fp32
(its fp32 -> bf16 store conversion is wrong too); torch casts the results. On a GPU the dots take
the inputs' dtype (tensor cores) and accumulate in fp32; fp32 inputs use IEEE fp32 dots.
No autotuning: one config per dtype, so the interpreter and the GPU run the same launch.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

# The kernels are decorated at import: the interpreter is chosen then, not per call.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

# bytes of the per-chunk dlogits buffer the backward may hold
DLOGITS_BUDGET_BYTES = 128 << 20


@triton.jit
def _tanh(x):
    # exp(-2|x|) <= 1 never overflows; the interpreter has no libdevice tanh
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _raw_logits(
    hidden_ptr,
    weight_ptr,
    rows,
    offs_v,
    m_mask,
    v_mask,
    D,
    stride_h,
    stride_w,
    BLOCK_M: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_D: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """[BLOCK_M, BLOCK_V] fp32 ``hidden[rows] @ weight[offs_v].T``, reduced over D in BLOCK_D steps."""
    acc = tl.zeros((BLOCK_M, BLOCK_V), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        d_mask = offs_d < D
        h = tl.load(
            hidden_ptr + rows[:, None] * stride_h + offs_d[None, :],
            mask=m_mask[:, None] & d_mask[None, :],
            other=0.0,
        )
        w = tl.load(
            weight_ptr + offs_v[:, None] * stride_w + offs_d[None, :],
            mask=v_mask[:, None] & d_mask[None, :],
            other=0.0,
        )
        if UPCAST:
            h = h.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(h, tl.trans(w), acc, input_precision=PRECISION)
    return acc


@triton.jit
def _forward_kernel(
    hidden_ptr,
    weight_ptr,
    rows_ptr,
    targets_ptr,
    lse_ptr,
    target_logit_ptr,
    entropy_ptr,
    M,
    V,
    D,
    stride_h,
    stride_w,
    tiles_per_split,
    softcap,
    inv_temperature,
    HAS_SOFTCAP: tl.constexpr,
    WITH_ENTROPY: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Per (target block, vocabulary split): log-sum-exp, target logit and entropy of the split.

    Writes ``[split, M]`` fp32: ``lse`` (log-sum-exp over the split), ``target_logit`` (0 where
    the target lies in another split) and ``entropy`` of the split's own normalised distribution.
    """
    pid_m = tl.program_id(0)
    split = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < M
    rows = tl.load(rows_ptr + offs_m, mask=m_mask, other=0).to(tl.int64)
    targets = tl.load(targets_ptr + offs_m, mask=m_mask, other=-1)
    run_max = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    run_sum = tl.zeros((BLOCK_M,), tl.float32)
    # sum exp(l - max) * (l - max): the entropy's moment, relative to the max so nothing cancels
    run_shift = tl.zeros((BLOCK_M,), tl.float32)
    target_logit = tl.zeros((BLOCK_M,), tl.float32)
    for tile in range(0, tiles_per_split):
        offs_v = ((split * tiles_per_split + tile) * BLOCK_V + tl.arange(0, BLOCK_V)).to(tl.int64)
        v_mask = offs_v < V
        z = _raw_logits(
            hidden_ptr,
            weight_ptr,
            rows,
            offs_v,
            m_mask,
            v_mask,
            D,
            stride_h,
            stride_w,
            BLOCK_M,
            BLOCK_V,
            BLOCK_D,
            UPCAST,
            PRECISION,
        )
        if HAS_SOFTCAP:
            z = softcap * _tanh(z / softcap)
        logits = tl.where(v_mask[None, :], z * inv_temperature, float("-inf"))
        is_target = offs_v[None, :] == targets[:, None]
        target_logit += tl.sum(tl.where(is_target, logits, 0.0), axis=1)
        new_max = tl.maximum(run_max, tl.max(logits, axis=1))
        rescale = tl.exp(run_max - new_max)
        shifted = logits - new_max[:, None]
        probs = tl.exp(shifted)
        if WITH_ENTROPY:
            moved = tl.where(run_sum > 0, run_max - new_max, 0.0)
            # masked columns have probs 0 and shifted -inf: zero them before the product
            tile_shift = tl.sum(probs * tl.where(v_mask[None, :], shifted, 0.0), axis=1)
            run_shift = rescale * (run_shift + run_sum * moved) + tile_shift
        run_sum = run_sum * rescale + tl.sum(probs, axis=1)
        run_max = new_max
    out = split * M + offs_m
    log_sum = tl.log(run_sum)
    tl.store(lse_ptr + out, run_max + log_sum, mask=m_mask)
    tl.store(target_logit_ptr + out, target_logit, mask=m_mask)
    if WITH_ENTROPY:
        tl.store(entropy_ptr + out, log_sum - run_shift / run_sum, mask=m_mask)


@triton.jit
def _dlogits_kernel(
    hidden_ptr,
    weight_ptr,
    rows_ptr,
    targets_ptr,
    lse_ptr,
    grad_ptr,
    entropy_ptr,
    grad_entropy_ptr,
    dlogits_ptr,
    M,
    D,
    v_start,
    width,
    stride_h,
    stride_w,
    stride_dl,
    softcap,
    inv_temperature,
    HAS_SOFTCAP: tl.constexpr,
    WITH_ENTROPY: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """``dlogits[i, j] = d loss / d z[i, v_start + j]`` for one [BLOCK_M, BLOCK_V] tile of a chunk.

    ``d logp / d l_v = [v == t] - p_v``, ``d entropy / d l_v = -p_v (log p_v + entropy)``, times
    ``d l / d z = (1 - tanh^2) / T`` (``1 / T`` without soft-cap).
    """
    pid_m = tl.program_id(0)
    pid_v = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < M
    columns = pid_v * BLOCK_V + tl.arange(0, BLOCK_V)
    v_mask = columns < width
    offs_v = (v_start + columns).to(tl.int64)
    rows = tl.load(rows_ptr + offs_m, mask=m_mask, other=0).to(tl.int64)
    targets = tl.load(targets_ptr + offs_m, mask=m_mask, other=-1)
    z = _raw_logits(
        hidden_ptr,
        weight_ptr,
        rows,
        offs_v,
        m_mask,
        v_mask,
        D,
        stride_h,
        stride_w,
        BLOCK_M,
        BLOCK_V,
        BLOCK_D,
        UPCAST,
        PRECISION,
    )
    if HAS_SOFTCAP:
        tanh = _tanh(z / softcap)
        logits = softcap * tanh * inv_temperature
        slope = (1.0 - tanh * tanh) * inv_temperature
    else:
        logits = z * inv_temperature
        slope = inv_temperature
    lse = tl.load(lse_ptr + offs_m, mask=m_mask, other=0.0)
    grad = tl.load(grad_ptr + offs_m, mask=m_mask, other=0.0)
    log_probs = logits - lse[:, None]
    probs = tl.exp(log_probs)
    is_target = offs_v[None, :] == targets[:, None]
    dlogits = tl.where(is_target, grad[:, None], 0.0) - probs * grad[:, None]
    if WITH_ENTROPY:
        entropy = tl.load(entropy_ptr + offs_m, mask=m_mask, other=0.0)
        grad_entropy = tl.load(grad_entropy_ptr + offs_m, mask=m_mask, other=0.0)
        dlogits -= probs * grad_entropy[:, None] * (log_probs + entropy[:, None])
    dlogits = dlogits * slope
    tl.store(
        dlogits_ptr + offs_m[:, None] * stride_dl + columns[None, :],
        dlogits.to(dlogits_ptr.dtype.element_ty),
        mask=m_mask[:, None] & v_mask[None, :],
    )


@triton.jit
def _matmul_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    b_rows_ptr,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    GATHER_B: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """``C (+)= A @ B`` with fp32 accumulation; with GATHER_B, B's row k is ``b[b_rows[k]]``.

    Programs run in groups of GROUP_M row blocks so that the B tiles they share stay in L2.
    """
    pid = tl.program_id(0)
    blocks_m = tl.cdiv(M, BLOCK_M)
    blocks_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * blocks_n
    first_m = (pid // per_group) * GROUP_M
    group_rows = tl.minimum(blocks_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_rows
    pid_n = (pid % per_group) // group_rows
    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    m_mask = offs_m < M
    n_mask = offs_n < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = (k0 + tl.arange(0, BLOCK_K)).to(tl.int64)
        k_mask = offs_k < K
        a = tl.load(
            a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak,
            mask=m_mask[:, None] & k_mask[None, :],
            other=0.0,
        )
        if GATHER_B:
            b_rows = tl.load(b_rows_ptr + offs_k, mask=k_mask, other=0).to(tl.int64)
        else:
            b_rows = offs_k
        b = tl.load(
            b_ptr + b_rows[:, None] * stride_bk + offs_n[None, :] * stride_bn,
            mask=k_mask[:, None] & n_mask[None, :],
            other=0.0,
        )
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    c_mask = m_mask[:, None] & n_mask[None, :]
    if ACCUMULATE:
        acc += tl.load(c_ptrs, mask=c_mask, other=0.0).to(tl.float32)
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=c_mask)


def _launch_options(dtype: torch.dtype) -> dict:
    """Block sizes and dot precision: one fixed config per dtype (no autotuning)."""
    if INTERPRET:
        # few, large blocks: the interpreter's cost is per program and per op, not per element
        return {
            "tile": {"BLOCK_M": 64, "BLOCK_V": 128, "BLOCK_D": 128},
            "matmul": {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 128, "GROUP_M": 4},
            "warps": {},
            "UPCAST": True,
            "PRECISION": "ieee",
        }
    fp32 = dtype == torch.float32
    # fp32 operands take twice the shared memory per stage: halve the reduction block
    block_k = 32 if fp32 else 64
    return {
        "tile": {"BLOCK_M": 128, "BLOCK_V": 128, "BLOCK_D": block_k},
        "matmul": {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": block_k, "GROUP_M": 8},
        "warps": {"num_warps": 8, "num_stages": 3},
        "UPCAST": False,
        # fp32 inputs get IEEE fp32 products (exact like the reference); ignored for 16-bit dots
        "PRECISION": "ieee" if fp32 else "tf32",
    }


def _default_splits(device: torch.device, target_blocks: int, vocab_tiles: int) -> int:
    """Vocabulary splits so that about two programs run per SM when M alone gives too few."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(vocab_tiles, triton.cdiv(2 * sms, target_blocks)))


def _forward(hidden, weight, rows, targets, softcap, temperature, with_entropy, splits):
    """(lse, logp, entropy) [M] fp32; entropy is empty without ``with_entropy``."""
    num_targets, vocab_size = rows.shape[0], weight.shape[0]
    options = _launch_options(hidden.dtype)
    tile = options["tile"]
    target_blocks = triton.cdiv(num_targets, tile["BLOCK_M"])
    vocab_tiles = triton.cdiv(vocab_size, tile["BLOCK_V"])
    splits = splits or _default_splits(hidden.device, target_blocks, vocab_tiles)
    tiles_per_split = triton.cdiv(vocab_tiles, min(splits, vocab_tiles))
    splits = triton.cdiv(vocab_tiles, tiles_per_split)  # every split starts inside the vocabulary
    parts = torch.empty(3, splits, num_targets, dtype=torch.float32, device=hidden.device)
    _forward_kernel[(target_blocks, splits)](
        hidden,
        weight,
        rows,
        targets,
        parts[0],
        parts[1],
        parts[2],
        num_targets,
        vocab_size,
        hidden.shape[1],
        hidden.stride(0),
        weight.stride(0),
        tiles_per_split,
        float(softcap or 1.0),
        1.0 / temperature,
        HAS_SOFTCAP=softcap is not None,
        WITH_ENTROPY=with_entropy,
        UPCAST=options["UPCAST"],
        PRECISION=options["PRECISION"],
        **tile,
        **options["warps"],
    )
    split_lse, split_target, split_entropy = parts
    lse = torch.logsumexp(split_lse, dim=0)
    logp = split_target.sum(dim=0) - lse
    entropy = parts.new_empty(0)
    if with_entropy:
        # H = sum_k w_k (H_k - log w_k), w_k = exp(lse_k - lse): the entropy of a mixture of splits
        log_weight = split_lse - lse
        entropy = (log_weight.exp() * (split_entropy - log_weight)).sum(dim=0)
    return lse, logp, entropy


def _matmul(a, b, c, *, b_rows=None, accumulate=False, options):
    """Launch ``c (+)= a @ b`` (b's rows gathered by ``b_rows`` when given)."""
    blocks = options["matmul"]
    rows_m, cols_n = c.shape
    grid = (triton.cdiv(rows_m, blocks["BLOCK_M"]) * triton.cdiv(cols_n, blocks["BLOCK_N"]),)
    _matmul_kernel[grid](
        a,
        b,
        c,
        b if b_rows is None else b_rows,
        rows_m,
        cols_n,
        a.shape[1],
        a.stride(0),
        a.stride(1),
        b.stride(0),
        b.stride(1),
        c.stride(0),
        c.stride(1),
        GATHER_B=b_rows is not None,
        ACCUMULATE=accumulate,
        UPCAST=options["UPCAST"],
        PRECISION=options["PRECISION"],
        **blocks,
        **options["warps"],
    )


def _backward(
    hidden,
    weight,
    rows,
    targets,
    lse,
    grad_logp,
    entropy,
    grad_entropy,
    softcap,
    temperature,
    vocab_chunk,
    need_hidden,
    need_weight,
):
    """(grad_hidden, grad_weight), each None when not needed; see the module docstring."""
    num_targets, dim = rows.shape[0], hidden.shape[1]
    vocab_size = weight.shape[0]
    options = _launch_options(hidden.dtype)
    tile = options["tile"]
    # the interpreter writes fp32 (its bf16 stores round wrongly); GPUs the inputs' dtype
    buffer_dtype = torch.float32 if INTERPRET else hidden.dtype
    if vocab_chunk is None:
        per_column = num_targets * torch.finfo(buffer_dtype).bits // 8
        vocab_chunk = max(tile["BLOCK_V"], DLOGITS_BUDGET_BYTES // per_column)
        vocab_chunk -= vocab_chunk % tile["BLOCK_V"]
    vocab_chunk = min(vocab_chunk, vocab_size)
    device = hidden.device
    dlogits = torch.empty(num_targets, vocab_chunk, dtype=buffer_dtype, device=device)
    grad_rows = (
        torch.empty(num_targets, dim, dtype=torch.float32, device=device) if need_hidden else None
    )
    grad_weight = (
        torch.empty(vocab_size, dim, dtype=buffer_dtype, device=device) if need_weight else None
    )
    with_entropy = grad_entropy is not None
    for v_start in range(0, vocab_size, vocab_chunk):
        width = min(vocab_chunk, vocab_size - v_start)
        chunk = dlogits[:, :width]
        grid = (triton.cdiv(num_targets, tile["BLOCK_M"]), triton.cdiv(width, tile["BLOCK_V"]))
        _dlogits_kernel[grid](
            hidden,
            weight,
            rows,
            targets,
            lse,
            grad_logp,
            entropy if with_entropy else lse,
            grad_entropy if with_entropy else lse,
            chunk,
            num_targets,
            dim,
            v_start,
            width,
            hidden.stride(0),
            weight.stride(0),
            dlogits.stride(0),
            float(softcap or 1.0),
            1.0 / temperature,
            HAS_SOFTCAP=softcap is not None,
            WITH_ENTROPY=with_entropy,
            UPCAST=options["UPCAST"],
            PRECISION=options["PRECISION"],
            **tile,
            **options["warps"],
        )
        if need_hidden:
            w_chunk = weight[v_start : v_start + width]
            _matmul(chunk, w_chunk, grad_rows, accumulate=v_start > 0, options=options)
        if need_weight:
            _matmul(
                chunk.T,
                hidden,
                grad_weight[v_start : v_start + width],
                b_rows=rows,
                options=options,
            )
    grad_hidden = None
    if need_hidden:
        grad_hidden = torch.zeros(hidden.shape, dtype=torch.float32, device=device)
        grad_hidden = grad_hidden.index_add_(0, rows, grad_rows).to(hidden.dtype)
    if need_weight:
        grad_weight = grad_weight.to(weight.dtype)
    return grad_hidden, grad_weight


class _TritonTargetLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, hidden, weight, rows, targets, softcap, temperature, with_entropy, splits, chunk
    ):
        lse, logp, entropy = _forward(
            hidden, weight, rows, targets, softcap, temperature, with_entropy, splits
        )
        ctx.save_for_backward(hidden, weight, rows, targets, lse, entropy)
        ctx.options = (softcap, temperature, with_entropy, chunk)
        ctx.set_materialize_grads(False)
        if not with_entropy:
            ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        hidden, weight, rows, targets, lse, entropy = ctx.saved_tensors
        softcap, temperature, with_entropy, chunk = ctx.options
        grad_logp = torch.zeros_like(lse) if grad_logp is None else grad_logp.float().contiguous()
        if with_entropy and grad_entropy is not None:
            grad_entropy = grad_entropy.float().contiguous()
        else:
            grad_entropy = None
        grad_hidden, grad_weight = _backward(
            hidden,
            weight,
            rows,
            targets,
            lse,
            grad_logp,
            entropy,
            grad_entropy,
            softcap,
            temperature,
            chunk,
            ctx.needs_input_grad[0],
            ctx.needs_input_grad[1],
        )
        return grad_hidden, grad_weight, None, None, None, None, None, None, None


def target_logprobs_triton(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    rows: torch.Tensor,
    targets: torch.Tensor,
    *,
    softcap: float | None = None,
    temperature: float = 1.0,
    return_entropy: bool = False,
    vocab_splits: int | None = None,
    vocab_chunk: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``target_logprobs_reference``, by the Triton kernels above.

    Args: as the reference (hidden [N, D], weight [V, D] in fp32/fp16/bf16 on a CUDA device, or
    on the CPU under ``TRITON_INTERPRET=1``; rows, targets [M]), plus ``vocab_splits`` (forward
    programs per target block; default: enough for two per SM) and ``vocab_chunk`` (vocabulary
    rows per backward chunk; default: a 128 MiB dlogits buffer). Both change speed and memory only.

    Returns: logp [M] fp32, or ``(logp, entropy)`` with ``return_entropy``.
    """
    hidden = hidden if hidden.stride(-1) == 1 else hidden.contiguous()
    weight = weight if weight.stride(-1) == 1 else weight.contiguous()
    rows = rows.to(torch.int64).contiguous()
    targets = targets.to(torch.int64).contiguous()
    logp, entropy = _TritonTargetLogprobs.apply(
        hidden,
        weight,
        rows,
        targets,
        softcap,
        temperature,
        return_entropy,
        vocab_splits,
        vocab_chunk,
    )
    return (logp, entropy) if return_entropy else logp

"""Target log-probs by tiles of ``targets x vocabulary``: the CPU (and any-device) fused path.

Forward walks the vocabulary in chunks of ``vocab_chunk`` rows of the weight (each cast once to the
compute dtype) and, inside each, the targets in chunks of ``target_chunk``; each tile's
log-sum-exp is merged into a running one per target: an online log-sum-exp in float32 (float64 for
float64 inputs). Only the per-target log-sum-exp (and entropy) is saved. Backward recomputes each
tile's logits, turns them into softmax probabilities in place and feeds two matmuls:
``d hidden_rows += dlogits @ W_chunk`` and ``d W_chunk += dlogits.T @ hidden_rows``, with the
one-hot target terms added sparsely; the gathered-row gradient is scattered back with
``index_add_``, so rows shared by several targets accumulate.

Memory beyond inputs and gradients: the gathered rows and their gradient ([M, D] each) and two or
three tiles of ``target_chunk x vocab_chunk`` elements (16 MB each in float32 by default), never
``[M, V]``. Work: one extra logits matmul (the backward's recompute) over the reference's three.
"""

from __future__ import annotations

import torch

from swirl.ops.reference import compute_dtype

DEFAULT_VOCAB_CHUNK = 4096
# elements of one logits tile; the target chunk is this over the vocab chunk
DEFAULT_TILE_ELEMENTS = 1 << 22


def target_logprobs_chunked(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    rows: torch.Tensor,
    targets: torch.Tensor,
    *,
    softcap: float | None = None,
    temperature: float = 1.0,
    return_entropy: bool = False,
    vocab_chunk: int | None = None,
    target_chunk: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``target_logprobs_reference``, without materialising ``[M, V]`` logits.

    ``vocab_chunk`` and ``target_chunk`` set the tile (defaults: 4096 vocabulary rows, and as many
    targets as keep a tile at 4M elements); they change memory and speed, not the result beyond
    float rounding.
    """
    vocab_size, num_targets = weight.shape[0], rows.shape[0]
    vc = min(vocab_size, vocab_chunk or DEFAULT_VOCAB_CHUNK)
    mc = min(num_targets, target_chunk or max(1, DEFAULT_TILE_ELEMENTS // vc))
    logp, entropy = _ChunkedTargetLogprobs.apply(
        hidden, weight, rows, targets, softcap, temperature, return_entropy, vc, mc
    )
    return (logp, entropy) if return_entropy else logp


class _ChunkedTargetLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, rows, targets, softcap, temperature, with_entropy, vc, mc):
        rows, targets = rows.long(), targets.long()
        gathered = hidden[rows].to(compute_dtype(hidden.dtype))
        tiles = _Tiles(weight, targets, gathered.dtype, softcap, temperature, vc, mc)
        lse, target_logit, entropy = _chunked_logsumexp(gathered, tiles, with_entropy)
        ctx.save_for_backward(hidden, weight, rows, targets, lse, entropy)
        ctx.options = (softcap, temperature, with_entropy, vc, mc)
        ctx.set_materialize_grads(False)
        if not with_entropy:
            ctx.mark_non_differentiable(entropy)
        return target_logit - lse, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        hidden, weight, rows, targets, lse, entropy = ctx.saved_tensors
        softcap, temperature, with_entropy, vc, mc = ctx.options
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        cdtype = compute_dtype(hidden.dtype)
        gathered = hidden[rows].to(cdtype)
        if grad_logp is None:
            grad_logp = torch.zeros_like(lse)
        use_entropy = with_entropy and grad_entropy is not None
        gradients = _TileGradients(
            grad_logp.to(cdtype),
            grad_entropy.to(cdtype) if use_entropy else None,
            lse,
            entropy,
            softcap,
            temperature,
        )
        tiles = _Tiles(weight, targets, cdtype, softcap, temperature, vc, mc)
        grad_gathered = torch.zeros_like(gathered) if need_hidden else None
        grad_weight = torch.empty_like(weight) if need_weight else None
        for v0, v1, w in tiles.vocab_chunks():
            if need_weight:
                # accumulate straight into the gradient when no cast is needed
                if weight.dtype == cdtype:
                    chunk_grad = grad_weight[v0:v1].zero_()
                else:
                    chunk_grad = torch.zeros(v1 - v0, w.shape[1], dtype=cdtype, device=w.device)
            for m0, m1 in tiles.target_chunks():
                h = gathered[m0:m1]
                logits = tiles.logits(h, w)
                inside, columns = tiles.local_targets(m0, m1, v0, v1)
                target_scale = gradients.target_scale(logits[inside, columns], m0 + inside)
                dense, row_scale = gradients.dense_(logits, m0, m1)
                if need_hidden:
                    grad_gathered[m0:m1].addcmul_(row_scale[:, None], dense @ w)
                    grad_gathered[m0 + inside] += target_scale[:, None] * w[columns]
                if need_weight:
                    chunk_grad.addmm_(dense.T, h * row_scale[:, None])
                    chunk_grad.index_add_(0, columns, h[inside] * target_scale[:, None])
            if need_weight and weight.dtype != cdtype:
                grad_weight[v0:v1].copy_(chunk_grad)
        grad_hidden = None
        if need_hidden:
            grad_hidden = torch.zeros(hidden.shape, dtype=cdtype, device=hidden.device)
            grad_hidden.index_add_(0, rows, grad_gathered)
            grad_hidden = grad_hidden.to(hidden.dtype)
        return grad_hidden, grad_weight, None, None, None, None, None, None, None


class _Tiles:
    """The tiling of one call: chunk bounds, the transformed logits of a tile, in-tile targets."""

    def __init__(self, weight, targets, cdtype, softcap, temperature, vc, mc):
        self.weight, self.targets, self.cdtype = weight, targets, cdtype
        self.softcap, self.temperature, self.vc, self.mc = softcap, temperature, vc, mc

    def vocab_chunks(self):
        """Yield ``(v0, v1, weight[v0:v1] in the compute dtype)``."""
        for v0 in range(0, self.weight.shape[0], self.vc):
            v1 = min(v0 + self.vc, self.weight.shape[0])
            yield v0, v1, self.weight[v0:v1].to(self.cdtype)

    def target_chunks(self):
        """Yield ``(m0, m1)`` bounds of the target chunks."""
        for m0 in range(0, self.targets.shape[0], self.mc):
            yield m0, min(m0 + self.mc, self.targets.shape[0])

    def logits(self, gathered: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """[m, v] soft-capped, temperature-scaled logits of one tile (one fresh buffer)."""
        logits = gathered @ w.T
        if self.softcap is not None:
            logits.div_(self.softcap).tanh_().mul_(self.softcap)
        if self.temperature != 1.0:
            logits.div_(self.temperature)
        return logits

    def local_targets(self, m0: int, m1: int, v0: int, v1: int):
        """(tile rows, tile columns) of the targets of rows m0:m1 that fall in vocab v0:v1."""
        tile_targets = self.targets[m0:m1]
        inside = ((tile_targets >= v0) & (tile_targets < v1)).nonzero().squeeze(1)
        return inside, tile_targets[inside] - v0


def _chunked_logsumexp(gathered: torch.Tensor, tiles: _Tiles, with_entropy: bool):
    """Per-target log-sum-exp, target logit and entropy ([M] each), one pass over the tiles.

    Each tile contributes its own log-sum-exp ``lse_b`` (and the entropy ``H_b`` of its own
    normalised distribution); the running state merges like a two-part mixture with weights
    ``w = exp(lse_part - lse)``: ``lse = logaddexp(lse_a, lse_b)`` and
    ``H = w_a (H_a - log w_a) + w_b (H_b - log w_b)``.
    """
    num_targets = gathered.shape[0]
    options = {"dtype": gathered.dtype, "device": gathered.device}
    lse = torch.empty(num_targets, **options)
    entropy = torch.empty(num_targets if with_entropy else 0, **options)
    target_logit = torch.zeros(num_targets, **options)
    for v0, v1, w in tiles.vocab_chunks():
        for m0, m1 in tiles.target_chunks():
            logits = tiles.logits(gathered[m0:m1], w)
            inside, columns = tiles.local_targets(m0, m1, v0, v1)
            target_logit[m0 + inside] = logits[inside, columns]
            # in place: shifted = l - max, then sum exp(shifted); H_b = log s - sum(e * shifted) / s
            tile_max = logits.amax(dim=1)
            shifted = logits.sub_(tile_max[:, None])
            if with_entropy:
                probs = torch.exp(shifted)
                tile_sum = probs.sum(dim=1)
                moment = torch.bmm(probs[:, None, :], shifted[:, :, None]).view(-1)
                tile_entropy = torch.log(tile_sum) - moment / tile_sum
            else:
                tile_sum = shifted.exp_().sum(dim=1)
            tile_lse = tile_max + torch.log(tile_sum)
            if v0 == 0:
                lse[m0:m1] = tile_lse
                if with_entropy:
                    entropy[m0:m1] = tile_entropy
                continue
            merged = torch.logaddexp(lse[m0:m1], tile_lse)
            if with_entropy:
                log_old, log_new = lse[m0:m1] - merged, tile_lse - merged
                entropy[m0:m1] = log_old.exp() * (entropy[m0:m1] - log_old) + log_new.exp() * (
                    tile_entropy - log_new
                )
            lse[m0:m1] = merged
    return lse, target_logit, entropy


class _TileGradients:
    """``d loss / d raw logits`` of a tile, split into a dense part and the sparse target part.

    With ``l`` the transformed logits and ``p = exp(l - lse)``: ``d logp_t / d l_v = [v == t] - p_v``
    and ``d entropy / d l_v = -p_v (l_v - lse + entropy)``; the chain rule through
    ``l = c tanh(z / c) / T`` multiplies by ``(1 - (l T / c)^2) / T``. Per-row factors (the
    upstream gradient, ``1 / T``) are kept out of the tile and applied to the [m, D] operands of
    the two matmuls instead, which saves passes over the [m, v] tile.
    """

    def __init__(self, grad_logp, grad_entropy, lse, entropy, softcap, temperature):
        self.grad_logp, self.grad_entropy = grad_logp, grad_entropy
        self.lse, self.entropy = lse, entropy
        self.softcap, self.temperature = softcap, temperature

    def _slope(self, logits: torch.Tensor) -> torch.Tensor | None:
        """``(1 - tanh^2)`` of the soft-cap at these transformed logits (None without soft-cap)."""
        if self.softcap is None:
            return None
        return (logits * (self.temperature / self.softcap)).square_().neg_().add_(1.0)

    def target_scale(self, target_logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``d loss / d z`` at the target entries: ``grad_logp * slope / T``."""
        slope = self._slope(target_logits)
        scale = self.grad_logp[index] / self.temperature
        return scale if slope is None else scale * slope

    def dense_(self, logits: torch.Tensor, m0: int, m1: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(dense, row_scale)`` with ``dense * row_scale[:, None]`` the non-target part of
        ``d loss / d z`` for rows m0:m1; overwrites ``logits``."""
        slope = self._slope(logits)
        log_probs = logits.sub_(self.lse[m0:m1, None])
        if self.grad_entropy is None:
            dense = log_probs.exp_()
            row_scale = -self.grad_logp[m0:m1] / self.temperature
        else:
            dense = torch.exp(log_probs)
            factor = log_probs.add_(self.entropy[m0:m1, None]).mul_(self.grad_entropy[m0:m1, None])
            dense.mul_(factor.add_(self.grad_logp[m0:m1, None]))
            row_scale = torch.full_like(self.lse[m0:m1], -1.0 / self.temperature)
        if slope is not None:
            dense.mul_(slope)
        return dense, row_scale

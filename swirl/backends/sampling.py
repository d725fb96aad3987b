"""Drawing the next token of each row, and the log-probability the draw had.

One uniform per sampling row per step from that row's own generator, turned into a token by
inverting the row's CDF: a row's draw depends only on its seed, its logits and how many tokens it
drew before, never on the other rows of the batch or on the device.
"""

from __future__ import annotations

import torch


def row_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (None: fresh entropy)."""
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def sample(
    logits: torch.Tensor,
    temperatures: torch.Tensor,
    top_ps: torch.Tensor,
    generators: list[torch.Generator],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row: greedy where the temperature is 0, else top-p sampling.

    ``logits`` [B, V] float32 on CPU; ``temperatures``, ``top_ps`` [B]; one generator per row.
    Returns ``(tokens [B] int64, logprobs [B] float32)``: each token's natural log-probability
    under the distribution it was drawn from, ``softmax(logits / T)`` renormalised to the top-p
    nucleus when ``top_p < 1``; ``softmax(logits)`` for a greedy row.
    """
    tokens = torch.empty(len(logits), dtype=torch.long)
    logprobs = torch.empty(len(logits))
    sampling = temperatures > 0
    greedy = (~sampling).nonzero().flatten()
    if len(greedy):
        rows = logits[greedy]
        tokens[greedy] = picks = rows.argmax(dim=-1)
        logprobs[greedy] = _picked(rows, picks) - rows.logsumexp(dim=-1)
    rows = sampling.nonzero().flatten()
    if not len(rows):
        return tokens, logprobs
    scaled = logits[rows] / temperatures[rows, None]
    shifted = scaled - scaled.amax(dim=-1, keepdim=True)
    weights = shifted.exp()  # unnormalised probabilities
    uniforms = torch.cat([torch.rand(1, generator=generators[int(r)]) for r in rows])
    # Per row, not per batch: a row's token must not depend on its neighbours' top_p.
    full = top_ps[rows] >= 1
    picks = torch.empty(len(rows), dtype=torch.long)
    total = torch.empty(len(rows))  # the mass the draw was made from
    if bool(full.any()):
        cumulative = weights[full].cumsum(dim=-1)
        total[full] = cumulative[:, -1]
        picks[full] = _invert_cdf(cumulative, uniforms[full])
    if not bool(full.all()):
        nucleus = ~full
        picks[nucleus], total[nucleus] = _invert_nucleus_cdf(
            weights[nucleus], uniforms[nucleus], top_ps[rows[nucleus]]
        )
    tokens[rows] = picks
    logprobs[rows] = _picked(shifted, picks) - total.log()
    return tokens, logprobs


def _picked(values: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``values[b, tokens[b]]`` for each row b: [B]."""
    return values.gather(1, tokens[:, None]).flatten()


def _invert_cdf(cumulative: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Token ids [B] drawn by inverting each row's CDF (``cumulative`` [B, V], the running sum
    of unnormalised probabilities in vocabulary order: no sort needed)."""
    picks = torch.searchsorted(cumulative, (uniforms * cumulative[:, -1])[:, None])
    return picks.flatten().clamp(max=cumulative.shape[-1] - 1)


def _invert_nucleus_cdf(
    weights: torch.Tensor, uniforms: torch.Tensor, top_ps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [B] drawn from each row's top-p nucleus (``weights`` [B, V] unnormalised
    probabilities, uniforms and top_ps [B]), and the unnormalised mass [B] the nucleus keeps."""
    probs = weights / weights.sum(dim=-1, keepdim=True)
    sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True, stable=True)
    cumulative = sorted_probs.cumsum(dim=-1)
    # Keep a token while the mass before it is below top_p (the top token always survives).
    keep = (cumulative - sorted_probs) < top_ps[:, None]
    sorted_probs = sorted_probs * keep
    cumulative = sorted_probs.cumsum(dim=-1)
    targets = uniforms * cumulative[:, -1]
    picks = torch.searchsorted(cumulative, targets[:, None]).clamp(max=probs.shape[-1] - 1)
    # searchsorted may land on a zeroed (dropped) slot only at the very end; step back to a kept one.
    picks = torch.minimum(picks, keep.sum(dim=-1, keepdim=True) - 1)
    kept = cumulative[:, -1] * weights.sum(dim=-1)
    return sorted_ids.gather(1, picks).flatten(), kept

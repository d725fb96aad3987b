"""The reference engine: the transformers model itself, called with a DynamicCache.

Any causal LM; the baseline the fast engine is tested against. Rows are admitted only into an
empty batch (no continuous batching): a batch is left-padded, the prefix all its prompts share is
computed once and its cache copied to every row, and rows that stop are dropped from the cache.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from swirl.backends.prompt_tree import common_prefix_length

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Below this many shared tokens a separate prefix pass costs more than it saves.
_MIN_SHARED_PREFIX = 16


def cache_keyword(model: torch.nn.Module) -> str:
    """The keyword by which ``model``'s forward takes its KV cache: ``cache`` in transformers
    releases that renamed ``past_key_values`` (5.2x; the old name goes in 5.40). A wrapper
    (PEFT's LoRA model) forwards ``**kwargs``, so the signature asked is that of the first
    transformers model inside it: asking the wrapper would pick the old name, which 5.40 drops
    without using the cache."""
    from transformers import PreTrainedModel

    inner = next((m for m in model.modules() if isinstance(m, PreTrainedModel)), model)
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


class ReferenceEngine:
    """Batches of up to ``max_rows`` prompts whose padded tokens past the shared prefix stay
    within ``max_prefill_tokens`` (at least one prompt per batch)."""

    continuous = False

    def __init__(
        self, model: PreTrainedModel, *, pad_id: int, max_rows: int, max_prefill_tokens: int
    ) -> None:
        self.model = model
        self.pad_id = pad_id
        self.max_rows = max_rows
        self.max_prefill_tokens = max_prefill_tokens
        self.prefill_passes: list[int] = []
        self._cache_kwarg = cache_keyword(model)
        self._rows: list[int] = []  # handles of the rows in the cache, in cache order
        self._released: set[object] = set()
        self._cache: object = None
        self._attention = torch.empty(0)
        self._next_position = torch.empty(0)

    def begin(self, prompts: Sequence[Sequence[int]]) -> None:
        """Nothing to prepare: every batch starts from an empty cache."""

    def admit(self, requests: Sequence[tuple[Sequence[int], int]]) -> tuple[list, torch.Tensor]:
        """Admit into an empty batch the leading requests that fit the row and token bounds."""
        if self._rows:
            return [], torch.empty(0)
        prompts = [list(prompt) for prompt, _ in requests[: self.max_rows]]
        shared = common_prefix_length(prompts)
        count = 1
        while count < len(prompts):
            longest = max(len(p) for p in prompts[: count + 1]) - shared
            if (count + 1) * longest > self.max_prefill_tokens:
                break
            count += 1
        with torch.inference_mode():
            logits = self._start(prompts[:count])
        self._rows = list(range(count))
        return list(range(count)), logits

    def _start(self, prompts: list[list[int]]) -> torch.Tensor:
        """Run the prompts through the model; return the last logits [B, V].

        Layout of row b: the shared prefix, then padding, then the rest of prompt b, so every
        row's last prompt token sits in the last slot.
        """
        from transformers import DynamicCache

        model = self.model
        device = model.device
        batch = len(prompts)
        try:
            cache = DynamicCache(config=model.config)
        except TypeError:  # transformers < 4.56
            cache = DynamicCache()
        shared = common_prefix_length(prompts)
        if batch == 1 or shared < _MIN_SHARED_PREFIX:
            shared = 0
        # Keep one token per row after the prefix: its logits start the completion.
        shared = min(shared, min(len(p) for p in prompts) - 1)
        if shared > 0:
            self.prefill_passes.append(shared)
            prefix = torch.tensor([prompts[0][:shared]], device=device)
            model(
                input_ids=prefix,
                attention_mask=torch.ones_like(prefix),
                use_cache=True,
                logits_to_keep=1,
                **{self._cache_kwarg: cache},
            )
            cache.batch_repeat_interleave(batch)
        rests = [p[shared:] for p in prompts]
        width = max(len(r) for r in rests)
        self.prefill_passes.append(batch * width)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((batch, shared + width), dtype=torch.long)
        attention[:, :shared] = 1
        for row, rest in enumerate(rests):
            input_ids[row, width - len(rest) :] = torch.tensor(rest)
            attention[row, shared + width - len(rest) :] = 1
        # Positions count real tokens only, so padding never shifts a row's rotary positions.
        positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
        attention = attention.to(device)
        output = model(
            input_ids=input_ids.to(device),
            attention_mask=attention,
            position_ids=positions[:, shared:].to(device),
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kwarg: cache},
        )
        self._cache = cache
        self._attention = attention
        self._next_position = positions[:, -1].to(device) + 1
        return output.logits[:, -1].float()

    def step(self, rows: list, tokens: torch.Tensor) -> torch.Tensor:
        """Drop the rows not in ``rows`` from the cache, then feed one token to each."""
        with torch.inference_mode():
            if rows != self._rows:
                position = {row: index for index, row in enumerate(self._rows)}
                keep = torch.tensor([position[row] for row in rows], device=self._attention.device)
                self._cache.batch_select_indices(keep)  # type: ignore[attr-defined]
                self._attention = self._attention[keep]
                self._next_position = self._next_position[keep]
                self._rows = list(rows)
            device = self._attention.device
            self._attention = torch.cat(
                [self._attention, self._attention.new_ones((len(tokens), 1))], dim=1
            )
            output = self.model(
                input_ids=tokens.to(device).view(-1, 1),
                attention_mask=self._attention,
                position_ids=self._next_position.view(-1, 1),
                use_cache=True,
                logits_to_keep=1,
                **{self._cache_kwarg: self._cache},
            )
            self._next_position = self._next_position + 1
            return output.logits[:, -1].float()

    def release(self, row: object) -> None:
        """A finished row leaves the cache at the next step; the batch ends with its last row."""
        self._released.add(row)
        if self._released.issuperset(self._rows):
            self._rows, self._cache, self._released = [], None, set()

"""Key/value caches of the fast engine: one shared prefix, and one slot per row, bounded in bytes.

- :class:`PrefixKV`: the keys and values of the prefix the prompts start with (the instructions
  and few-shot examples of an environment prompt), stored once and read once per decode step for
  the whole batch.
- :class:`SlotKV`: each row's keys and values after the prefix, in one preallocated buffer per
  kind with a slot per row. Every slot has its own length, so rows of any length decode together
  and a slot freed by a finished row takes the next prompt at once (continuous batching). A freed
  slot keeps its content and the tokens it encodes until it is reused: a later prompt that
  continues it (an episode's next turn) is admitted into that same slot and prefills only its new
  tokens, with nothing copied. The buffer never exceeds ``max_bytes``: a longer row gets fewer
  slots, not more memory.

Shapes use L layers, S slots, KV key/value heads, T columns per slot, D head size. Keys and values
are stored in float32 whatever the model's dtype (a bfloat16 value converts exactly), so decode
attention scores and sums are computed in float32.
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


class PrefixKV:
    """Keys and values of one token prefix: ``keys``/``values`` [L, KV, P, D] for ``tokens``."""

    def __init__(self, tokens: tuple[int, ...], keys: torch.Tensor, values: torch.Tensor) -> None:
        self.tokens = tokens
        self.keys = keys
        self.values = values

    @classmethod
    def empty(
        cls, layers: int, heads: int, head_dim: int, *, dtype: torch.dtype, device: torch.device
    ) -> PrefixKV:
        shape = (layers, heads, 0, head_dim)
        empty = torch.empty(shape, dtype=dtype, device=device)
        return cls((), empty, empty)

    @property
    def length(self) -> int:
        return len(self.tokens)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes

    def truncated(self, length: int) -> PrefixKV:
        """The first ``length`` tokens (views, no copy)."""
        return PrefixKV(self.tokens[:length], self.keys[:, :, :length], self.values[:, :, :length])

    def extended(
        self, tokens: tuple[int, ...], keys: torch.Tensor, values: torch.Tensor
    ) -> PrefixKV:
        """This prefix followed by ``tokens`` with ``keys``/``values`` [L, KV, len(tokens), D]."""
        return PrefixKV(
            self.tokens + tokens,
            torch.cat([self.keys, keys], dim=2),
            torch.cat([self.values, values], dim=2),
        )


@dataclass
class Slot:
    """What one slot holds: ``tokens`` is the whole sequence from position 0 (prefix included)
    whose positions ``prefix_length ..`` are cached in the slot's first ``length`` columns."""

    tokens: list[int]
    prefix_length: int
    live: bool = False
    released: int = 0  # when the slot was last freed (a counter): the oldest free one goes first

    @property
    def length(self) -> int:
        return len(self.tokens) - self.prefix_length


class SlotKV:
    """Per-row keys and values after the prefix: ``keys``/``values`` [L, S, KV, T, D] float32.

    ``max_bytes`` bounds both buffers together (twice that for a moment while :meth:`reserve`
    rebuilds them); no slot needs more than ``max_columns`` columns (the context length).
    :meth:`reserve` trades slots for columns within that bound.
    """

    def __init__(
        self,
        layers: int,
        heads: int,
        head_dim: int,
        *,
        max_bytes: int,
        max_columns: int,
        device: torch.device,
    ) -> None:
        self.layers, self.heads, self.head_dim = layers, heads, head_dim
        self.max_bytes = max_bytes
        self.max_columns = max_columns
        self.device = device
        self.keys = torch.zeros((layers, 0, heads, 0, head_dim), device=device)
        self.values = self.keys
        self.slots: list[Slot] = []
        self._index: dict[int, int] = {}
        self._clock = 0

    @property
    def bytes_per_token(self) -> int:
        """Bytes of keys and values one cached token takes (all layers)."""
        return 2 * self.layers * self.heads * self.head_dim * self.keys.element_size()

    @property
    def columns(self) -> int:
        return self.keys.shape[3]

    def max_slots(self, columns: int) -> int:
        """Slots that fit the byte bound when each holds ``columns`` columns."""
        return self.max_bytes // max(columns * self.bytes_per_token, 1)

    def live(self) -> list[int]:
        return [index for index, slot in enumerate(self.slots) if slot.live]

    def reserve(self, slots: int, columns: int, pinned: Sequence[Slot] = ()) -> bool:
        """Make room for ``slots`` slots of at least ``columns`` columns, keeping every live and
        every ``pinned`` slot (renumbered to the front when the buffer is rebuilt; see
        :meth:`_rebuild`). False, with nothing changed, when that does not fit ``max_bytes``."""
        if slots <= len(self.slots) and columns <= self.columns:
            return True
        keep = {id(slot) for slot in pinned}
        held = [slot.length for slot in self.slots if slot.live or id(slot) in keep]
        columns = max([columns, *held])
        if slots > self.max_slots(columns):
            return False
        # As wide as the bound allows (the memory is only committed where written), so that a
        # longer row rebuilds the buffers only once it needs more than that.
        wide = max(columns, min(self.max_bytes // (slots * self.bytes_per_token), self.max_columns))
        many = max(slots, min(len(self.slots), self.max_slots(wide)))
        self._rebuild(many, wide, keep)
        return True

    def _rebuild(self, slots: int, columns: int, pinned: set[int]) -> None:
        """New buffers of ``slots`` x ``columns``: live and pinned slots first, then as many of
        the most recently freed slots (and their content) as fit. Slot indices change."""

        def rank(index: int) -> tuple[bool, int]:
            slot = self.slots[index]
            return (not (slot.live or id(slot) in pinned), -slot.released)

        order = sorted(range(len(self.slots)), key=rank)
        kept = [i for i in order if self.slots[i].length <= columns][:slots]
        shape = (self.layers, slots, self.heads, columns, self.head_dim)
        keys, values = self._zeros(shape), self._zeros(shape)
        for new, old in enumerate(kept):
            n = self.slots[old].length
            keys[:, new, :, :n] = self.keys[:, old, :, :n]
            values[:, new, :, :n] = self.values[:, old, :, :n]
        self.keys, self.values = keys, values
        self.slots = [self.slots[i] for i in kept]
        self.slots += [Slot([], 0) for _ in range(slots - len(kept))]
        self._reindex()

    def _zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Zeros, not garbage: a masked column's weight is 0, and 0 * a stale NaN would be NaN.
        On the CPU an anonymous mapping, whose pages the OS zeroes on first touch: a buffer as
        wide as the bound commits memory only where rows write. In small pages: a row's put
        touches one stretch of every (layer, head) region, and a huge page would zero 2 MB for
        each (measured: 26 ms against 0.5 ms for a 30-token put)."""
        if self.device.type != "cpu":
            return torch.zeros(shape, device=self.device)
        memory = mmap.mmap(-1, max(math.prod(shape) * 4, 1))
        if hasattr(mmap, "MADV_NOHUGEPAGE"):
            memory.madvise(mmap.MADV_NOHUGEPAGE)
        return torch.from_numpy(np.frombuffer(memory, dtype=np.float32).reshape(shape))

    def release(self, index: int) -> None:
        """The slot's row finished: its content stays, for a prompt that continues it."""
        self._clock += 1
        self.slots[index].live = False
        self.slots[index].released = self._clock

    def clear(self) -> None:
        """Forget every slot's content (the weights changed)."""
        for slot in self.slots:
            slot.tokens, slot.prefix_length, slot.live = [], 0, False

    def write_column(
        self,
        layer: int,
        slots: torch.Tensor,
        columns: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
    ) -> None:
        """Store one token per row: ``k``/``v`` [B, KV, D] at column ``columns[b]`` of slot
        ``slots[b]`` (both [B] int64)."""
        self.keys[layer, slots, :, columns] = k.float()
        self.values[layer, slots, :, columns] = v.float()

    def put(self, index: int, column: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store ``keys``/``values`` [L, KV, n, D] in slot ``index`` from column ``column``."""
        n = keys.shape[2]
        self.keys[:, index, :, column : column + n] = keys
        self.values[:, index, :, column : column + n] = values

    def copy(self, source: int, target: int, columns: int) -> None:
        """Copy the first ``columns`` columns of slot ``source`` into slot ``target``."""
        self.keys[:, target, :, :columns] = self.keys[:, source, :, :columns]
        self.values[:, target, :, :columns] = self.values[:, source, :, :columns]

    def index(self, slot: Slot) -> int:
        """Where ``slot`` is in the buffers now (a rebuild or a move renumbers slots)."""
        return self._index[id(slot)]

    def swap(self, first: int, second: int) -> None:
        """Exchange two slots' content and records (a live row moves into a free slot whose
        content stays available for continuations, now at the other index)."""
        a, b = self.slots[first], self.slots[second]
        if b.length > a.length:
            first, second, a, b = second, first, b, a
        n = b.length  # the shorter content goes through a temporary copy
        keys = self.keys[:, second, :, :n].clone()
        values = self.values[:, second, :, :n].clone()
        self.copy(first, second, a.length)
        self.keys[:, first, :, :n], self.values[:, first, :, :n] = keys, values
        self.slots[first], self.slots[second] = b, a
        self._reindex()

    def _reindex(self) -> None:
        self._index = {id(slot): index for index, slot in enumerate(self.slots)}

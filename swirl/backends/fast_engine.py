"""The fast engine: rows admitted into cache slots between decode steps, one token per row a step.

:class:`FastEngine` serves :class:`swirl.backends.scheduler.DecodeStream` (which samples, stops
and refills), over the network of :mod:`swirl.backends.decode` and the caches of
:mod:`swirl.backends.kv_cache`:

- the prefix the prompts of a stream share is computed once, kept across streams while the
  weights are unchanged (every turn of an environment starts with the same instructions), and
  read once per decode step for the whole batch;
- each row has its own slot and its own position, so a slot freed by a finished row takes a
  queued prompt at the next step;
- a prompt continuing what a slot holds (an episode's next turn: its previous context, the turn
  it sampled and the tool's result; or the G samples of one state) prefills only its new tokens:
  in that same slot when it is free, else after copying the shared columns into another;
- the new tokens of one admission are laid out as a token trie by the training packer
  (:func:`swirl.packing.pack`), so what prompts share beyond the prefix (a state and its longer
  states, the samples of one state) is computed once, and attend chain by chain as the training
  forward cuts the trie (:func:`swirl.packed_forward.chain_segments`): each token sees its
  ancestors, at a cost linear in the prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from swirl.backends.attention import DecodeContext, decode_attention, prefill_attention
from swirl.backends.decode import FastDecoder
from swirl.backends.kv_cache import PrefixKV, Slot, SlotKV
from swirl.backends.prompt_tree import common_prefix_length
from swirl.packed_forward import chain_segments
from swirl.packing import MAX_ROW_TOKENS, Branch, PackedBatch, TreeSequence, pack

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Move rows together once fewer than this fraction of the slots a step spans are live: a moved
# row costs one copy of its columns, a dead slot inside the span part of every step's attention.
_COMPACT_BELOW = 0.75


@dataclass
class _Group:
    """Admitted prompts whose new tokens continue the same context: ``prefix_length`` tokens of
    the prefix, then ``reused`` columns of slot ``source`` (None: no slot)."""

    prefix_length: int
    source: Slot | None
    reused: int
    members: list[tuple[int, Slot, tuple[int, ...]]] = field(default_factory=list)


@dataclass
class _Chain:
    """A run of a prefill pass's tokens each continuing the previous (flat rows ``queries``),
    with ``keys``: the rows of its ancestors in the trie, then its own (a slice when they lie
    together, else an index)."""

    group: _Group
    queries: slice
    keys: slice | torch.Tensor


class FastEngine:
    """Prefill and decode for a supported causal LM (see
    :func:`swirl.backends.decode.unsupported_reason`).

    ``max_rows`` rows decode together; their caches stay within ``max_cache_bytes`` (fewer rows
    when they are long); one prefill pass computes at most ``max_prefill_tokens`` new tokens (more
    only when a single prompt needs them). ``prefill_passes`` lists the tokens of each prefill
    pass.
    """

    continuous = True

    def __init__(
        self,
        model: PreTrainedModel,
        *,
        context_length: int,
        max_rows: int,
        max_cache_bytes: int,
        max_prefill_tokens: int,
    ) -> None:
        self.net = FastDecoder(model, context_length=context_length, rows_hint=max_rows)
        net = self.net
        self.max_rows = max_rows
        self.max_prefill_tokens = max_prefill_tokens
        self.slots = SlotKV(
            net.num_layers,
            net.kv_heads,
            net.head_dim,
            max_bytes=max_cache_bytes,
            max_columns=context_length,
            device=net.device,
        )
        if self.slots.max_slots(context_length) < 1:
            raise ValueError(
                f"max_cache_bytes={max_cache_bytes} cannot hold one row of {context_length} "
                f"tokens ({self.slots.bytes_per_token} bytes per token)"
            )
        self.prefix = self._empty_prefix()
        self.prefill_passes: list[int] = []

    def _empty_prefix(self) -> PrefixKV:
        net = self.net
        return PrefixKV.empty(
            net.num_layers, net.kv_heads, net.head_dim, dtype=torch.float32, device=net.device
        )

    # -- streams --------------------------------------------------------------------------------

    @torch.inference_mode()
    def begin(self, prompts: Sequence[Sequence[int]]) -> None:
        """A stream starts (no row is live) with these prompts queued: read changed weights,
        and make the prefix the one they share (reusing the cached one as far as it matches)."""
        if self.net.refresh():
            self.slots.clear()
            self.prefix = self._empty_prefix()
        if not prompts:
            return
        common = min(common_prefix_length(prompts), min(len(p) for p in prompts) - 1)
        wanted = tuple(prompts[0][:common])
        keep = common_prefix_length([self.prefix.tokens, wanted])
        if keep < self.prefix.length:
            self.prefix = self.prefix.truncated(keep)
            for slot in self.slots.slots:  # their rows attended to the dropped prefix tokens
                if slot.prefix_length > keep:
                    slot.tokens, slot.prefix_length = [], 0
        if keep < common:
            extension = wanted[keep:]
            _, keys, values, paths = self._prefill([(_Group(keep, None, 0), [extension])])
            rows = torch.from_numpy(paths[0][0][1])
            self.prefix = self.prefix.extended(extension, keys[:, :, rows], values[:, :, rows])

    def admit(
        self, requests: Sequence[tuple[Sequence[int], int]]
    ) -> tuple[list[Slot], torch.Tensor]:
        """Admit as many of ``requests`` ((prompt, room for new tokens), in order) as fit now.

        Returns the admitted rows' handles and their first logits [k, V] (float32); k may be 0.
        """
        with torch.inference_mode():
            return self._admit(requests)

    def _admit(
        self, requests: Sequence[tuple[Sequence[int], int]]
    ) -> tuple[list[Slot], torch.Tensor]:
        slots = self.slots
        live = len(slots.live())
        claimed: dict[int, Slot] = {}  # id(slot) -> slot, taken by this admission
        plans: list[tuple[Slot, tuple[int, ...], int, Slot | None, int]] = []
        budget = self.max_prefill_tokens
        for prompt, room in requests:
            prompt = tuple(prompt)
            if live + len(plans) >= self.max_rows:
                break
            natural = min(common_prefix_length([prompt, self.prefix.tokens]), len(prompt) - 1)
            source, reused = self._best_source(prompt, natural)
            prefix_length = natural if source is None else source.prefix_length
            new = len(prompt) - prefix_length - reused
            if plans and new > budget:
                break
            # Slots this admission still needs, kept through a rebuild of the buffers.
            pinned = [slot for plan in plans for slot in (plan[0], plan[3]) if slot is not None]
            pinned += [] if source is None else [source]
            in_place = source is not None and not source.live and id(source) not in claimed
            rows_needed = live + len({id(s) for s in pinned if not s.live}) + (not in_place)
            if not self._reserve(rows_needed, len(prompt) - prefix_length + room, pinned):
                if live + len(plans) == 0:
                    raise ValueError(
                        f"a prompt of {len(prompt)} tokens with room for {room} more does not "
                        f"fit max_cache_bytes={slots.max_bytes}"
                    )
                break
            target = self._free_slot(source, claimed)
            claimed[id(target)] = target
            plans.append((target, prompt, prefix_length, source, reused))
            budget -= new
        if not plans:
            return [], torch.empty((0, self.net.model.config.vocab_size))
        # Copies first: an in-place row overwrites its slot's columns past what it reuses.
        groups: dict[tuple[int, int, int], _Group] = {}
        for index, (target, prompt, prefix_length, source, reused) in enumerate(plans):
            if source is not None and source is not target:
                slots.copy(slots.index(source), slots.index(target), reused)
            key = (prefix_length, id(source) if reused else 0, reused)
            group = groups.setdefault(
                key, _Group(prefix_length, source if reused else None, reused)
            )
            group.members.append((index, target, prompt[prefix_length + reused :]))
        hidden, keys, values, paths = self._prefill(
            [(g, [new for _, _, new in g.members]) for g in groups.values()]
        )
        lasts = [0] * len(plans)
        for group, group_paths in zip(groups.values(), paths, strict=True):
            for (index, target, _), (leaf, path) in zip(group.members, group_paths, strict=True):
                rows = torch.from_numpy(path)
                slots.put(slots.index(target), group.reused, keys[:, :, rows], values[:, :, rows])
                lasts[index] = leaf
        handles = []
        for target, prompt, prefix_length, _, _ in plans:
            target.tokens, target.prefix_length, target.live = list(prompt), prefix_length, True
            handles.append(target)
        return handles, self.net.logits(hidden[torch.tensor(lasts)])

    def _reserve(self, rows: int, columns: int, pinned: list[Slot]) -> bool:
        """Room for ``rows`` rows, one of ``columns`` columns, keeping the live and ``pinned``
        slots: the full ``max_rows`` slots if they fit the byte bound, else as many as do."""
        slots = self.slots
        if slots.reserve(max(self.max_rows, rows), columns, pinned):
            return True
        fit = slots.max_slots(max(columns, slots.columns))
        return fit >= rows and slots.reserve(fit, columns, pinned)

    def _best_source(self, prompt: tuple[int, ...], natural: int) -> tuple[Slot | None, int]:
        """The slot whose content covers most of ``prompt`` past its prefix, and how many of its
        columns the prompt reuses (at least one token is left to prefill); (None, 0) if none."""
        best: tuple[Slot | None, int] = (None, 0)
        for slot in self.slots.slots:
            start = slot.prefix_length
            # Up to its prefix length a slot matches (both follow the prefix); check past it.
            if start > natural or slot.length < 1 or slot.tokens[start] != prompt[start]:
                continue
            limit = min(len(slot.tokens), len(prompt) - 1)
            reused = common_prefix_length([slot.tokens[start:limit], prompt[start:limit]])
            # A free slot beats a live one of equal cover: it is continued in place.
            if reused > best[1] or (reused == best[1] > 0 and best[0] is not None and best[0].live):
                best = (slot, reused)
        return best

    def _free_slot(self, source: Slot | None, claimed: dict[int, Slot]) -> Slot:
        """The slot a new row goes to: ``source`` itself when it is free (continued in place),
        else an empty slot, else the one freed longest ago."""
        if source is not None and not source.live and id(source) not in claimed:
            return source
        free = [s for s in self.slots.slots if not s.live and id(s) not in claimed]
        free = [s for s in free if s is not source] or free
        return min(free, key=lambda s: (bool(s.tokens), s.released))

    # -- prefill --------------------------------------------------------------------------------

    def _prefill(
        self, groups: list[tuple[_Group, list[tuple[int, ...]]]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[tuple[int, np.ndarray]]]]:
        """Run each group's new token lists after its context, as token tries, in one pass.

        Returns the hidden states [T, hidden] and keys and values [L, KV, T, D] of the T tokens
        of the pass, and per group and list, the row of its last token and the rows of all its
        tokens in order (its path in the trie).
        """
        net = self.net
        ids: list[np.ndarray] = []
        positions: list[np.ndarray] = []
        chains: list[_Chain] = []
        paths: list[list[tuple[int, np.ndarray]]] = []
        flat = 0
        for group, news in groups:
            offset = group.prefix_length + group.reused
            batch = self._pack(news)
            length = batch.shape[1]
            row_starts = np.zeros(batch.shape[0], dtype=np.int64)
            for row in range(batch.shape[0]):
                n = int(batch.row_lengths[row])
                row_starts[row] = flat
                ids.append(batch.input_ids[row, :n])
                positions.append(batch.position_ids[row, :n] + offset)
                flat += n
            chains += _chains(group, batch, row_starts)
            group_paths = []
            for member, new in enumerate(news):
                row, leaf = divmod(int(batch.target_rows[member]), length)
                path = _path(batch.parent[row], leaf)
                assert len(path) == len(new)
                group_paths.append((int(row_starts[row]) + leaf, row_starts[row] + path))
            paths.append(group_paths)
        total = flat
        self.prefill_passes.append(total)
        keys = torch.empty((net.num_layers, net.kv_heads, total, net.head_dim))
        values = torch.empty_like(keys)
        prefix = self.prefix
        slots = self.slots

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            keys[layer], values[layer] = k.transpose(0, 1), v.transpose(0, 1)
            out = q.new_empty((total, q.shape[1] * net.head_dim), dtype=torch.float32)
            for chain in chains:
                group = chain.group
                context = [
                    (
                        prefix.keys[layer, :, : group.prefix_length],
                        prefix.values[layer, :, : group.prefix_length],
                    )
                ]
                if group.source is not None:
                    index = slots.index(group.source)
                    context.append(
                        (
                            slots.keys[layer, index, :, : group.reused],
                            slots.values[layer, index, :, : group.reused],
                        )
                    )
                out[chain.queries] = prefill_attention(
                    q[chain.queries].transpose(0, 1),
                    keys[layer, :, chain.keys],
                    values[layer, :, chain.keys],
                    context,
                    net.layer_scale(layer),
                )
            return out

        flat_ids = torch.from_numpy(np.concatenate(ids).astype(np.int64)).to(net.device)
        flat_positions = torch.from_numpy(np.concatenate(positions).astype(np.int64))
        hidden = net.forward(flat_ids, flat_positions.to(net.device), attend)
        return hidden, keys, values, paths

    def _pack(self, news: list[tuple[int, ...]]) -> PackedBatch:
        """The new token lists as tries (one row per trie up to ``max_prefill_tokens`` tokens):
        each list is a context with a one-token branch after it, so the branch's target row is
        the list's last token (the extra token costs one row per distinct list)."""
        sequences = [
            TreeSequence(np.asarray(new, dtype=np.int32), [Branch(len(new), _PLACEHOLDER)])
            for new in news
        ]
        longest = max(len(new) for new in news) + 1
        capacity = min(max(self.max_prefill_tokens, longest), MAX_ROW_TOKENS)
        return pack(sequences, capacity, share_prefixes=True)

    # -- decoding -------------------------------------------------------------------------------

    def step(self, rows: list[Slot], tokens: torch.Tensor) -> torch.Tensor:
        """Feed ``tokens`` [R] (one per row, in the order of ``rows``); return logits [R, V]."""
        with torch.inference_mode():
            return self._step(rows, tokens)

    def _step(self, rows: list[Slot], tokens: torch.Tensor) -> torch.Tensor:
        net, slots, prefix = self.net, self.slots, self.prefix
        self._compact(rows)
        indices = [slots.index(row) for row in rows]
        low, high = min(indices), max(indices) + 1
        columns = torch.tensor([row.length for row in rows])
        positions = torch.tensor([len(row.tokens) for row in rows])
        for row, token in zip(rows, tokens.tolist(), strict=True):
            row.tokens.append(token)
        span = slots.slots[low:high]
        width = int(columns.max()) + 1
        # Each slot of the span sees its filled columns (a dead one: at least its first).
        lengths = torch.tensor([max(slot.length, 1) for slot in span])
        row_visible = torch.arange(width)[None, :] < lengths[:, None]
        prefix_visible = None
        if any(slot.prefix_length < prefix.length for slot in span if slot.live):
            used = torch.tensor(
                [slot.prefix_length if slot.live else prefix.length for slot in span]
            )
            prefix_visible = torch.arange(prefix.length)[None, :] < used[:, None]
        index = torch.tensor(indices)
        dense = indices == list(range(low, high))
        at = index - low

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            slots.write_column(layer, index, columns, k, v)
            query = q
            if not dense:
                query = q.new_zeros((high - low, *q.shape[1:]))
                query[at] = q
            context = DecodeContext(
                prefix.keys[layer],
                prefix.values[layer],
                slots.keys[layer, low:high, :, :width],
                slots.values[layer, low:high, :, :width],
                row_visible,
                prefix_visible,
            )
            out = decode_attention(query, context, net.layer_scale(layer))
            return out if dense else out[at]

        hidden = net.forward(tokens.to(net.device), positions.to(net.device), attend)
        return net.logits(hidden)

    def _compact(self, rows: list[Slot]) -> None:
        """Swap the highest live rows with free slots below them until the live rows fill at
        least ``_COMPACT_BELOW`` of the slots they span (the free slots' content is kept)."""
        slots = self.slots
        while True:
            indices = sorted(slots.index(row) for row in rows)
            span = indices[-1] - indices[0] + 1
            if len(rows) >= _COMPACT_BELOW * span:
                return
            holes = [i for i in range(indices[0], indices[-1]) if not slots.slots[i].live]
            slots.swap(indices[-1], holes[0])

    def release(self, row: Slot) -> None:
        """The row finished; its slot keeps its content for a prompt that continues it."""
        self.slots.release(self.slots.index(row))


_PLACEHOLDER = np.zeros(1, dtype=np.int32)


def _chains(group: _Group, batch: PackedBatch, row_starts: np.ndarray) -> list[_Chain]:
    """The trie of a packed prefill cut into chains (the training forward's cut, see
    :func:`swirl.packed_forward.chain_segments`), as rows of the flat pass."""
    query_index, key_index, cu_q, cu_k = chain_segments(batch)
    length = batch.shape[1]
    queries = row_starts[query_index // length] + query_index % length
    keys = row_starts[key_index // length] + key_index % length
    chains = []
    for c in range(len(cu_q) - 1):
        q = queries[cu_q[c] : cu_q[c + 1]]
        k = keys[cu_k[c] : cu_k[c + 1]]
        together = k[-1] - k[0] + 1 == len(k)  # rows in order, so only ancestors can be apart
        chains.append(
            _Chain(
                group,
                slice(int(q[0]), int(q[-1]) + 1),
                slice(int(k[0]), int(k[-1]) + 1) if together else torch.from_numpy(k),
            )
        )
    return chains


def _path(parent: np.ndarray, leaf: int) -> np.ndarray:
    """Indices of ``leaf`` and its ancestors in a packed row, root first."""
    path = [leaf]
    while parent[path[-1]] >= 0:
        path.append(int(parent[path[-1]]))
    return np.asarray(path[::-1], dtype=np.int64)

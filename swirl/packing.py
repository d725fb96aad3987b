"""Prefix-shared packing: every step and every sampled action of a batch in one forward pass.

A trajectory's states are prefixes of one recorded token sequence (its *context*), and the G
actions sampled at a state all hang off that prefix. Each action is a :class:`Branch` attached
after the first ``offset`` context tokens; a :class:`TreeSequence` is one context with its
branches. :func:`pack` inserts every branch's full path ``context[:offset] + tokens`` into a
token trie, so each distinct prefix is computed once, and lays the tries out in rows:

- each token's position id is its depth (a branch continues the positions of its attachment
  point), and it attends to exactly its ancestors and itself (:meth:`PackedBatch.attention_mask`);
- the loss is defined on explicit (hidden row, target token, weight) triples: token j of a branch
  is predicted by the hidden row of its parent in the tree (for j = 0, the last token of its
  prefix), never by "shift by one";
- context tokens after the last branch offset predict nothing and are not packed;
- sequences are bin-packed into rows of at most ``max_tokens`` (first-fit decreasing on each
  sequence's own tree size); with ``share_prefixes`` the sequences in one row share one trie, so
  common instructions and few-shot examples are packed once per row.

The native packer (``csrc/packer.cpp``) and the pure-Python reference :func:`pack_py` implement
the same deterministic algorithm (see the comment at the top of ``csrc/packer.hpp``) and give
identical arrays.
"""

from __future__ import annotations

import operator
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

import numpy as np

from swirl import _native

if TYPE_CHECKING:
    import torch

MAX_ROW_TOKENS: int = _native.MAX_ROW_TOKENS
_INT32_LIMIT = 2**31


@dataclass(frozen=True, slots=True)
class Branch:
    """A sampled (or recorded) action attached after the first ``offset`` context tokens.

    ``offset``: in ``[1, len(context)]``; the hidden row of context token ``offset - 1`` predicts
    the first action token, so a branch needs at least one context token before it (packing
    raises on 0). ``offset == len(context)`` continues the context. ``tokens``: 1-D numpy int32
    array of the action's token ids (non-empty), exactly as generated (never decoded and
    re-tokenised). ``weight``: the factor of this branch's log-probabilities in the loss (e.g. its
    advantage).
    """

    offset: int
    tokens: np.ndarray
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class TreeSequence:
    """One trajectory: its full recorded token ids (1-D numpy int32) and the branches off it."""

    context: np.ndarray
    branches: list[Branch]


@dataclass(frozen=True, slots=True, eq=False)
class PackedBatch:
    """A packed batch of token trees: R rows of L tokens, M targets, B branches.

    Arrays (numpy; ``torch.from_numpy`` shares their memory):

    - ``input_ids [R, L] int32``: token ids, ``pad_id`` on padding.
    - ``position_ids [R, L] int32``: depth in the tree (0 on padding).
    - ``parent [R, L] int32``: in-row index of the token's parent, -1 for roots and padding.
    - ``subtree_end [R, L] int32``: rows are in depth-first preorder, so the token at ``k`` and its
      descendants are exactly ``k .. subtree_end[k] - 1``; on padding ``k + 1``.
    - ``row_lengths [R] int32``: tokens used in each row; ``[row_lengths[r], L)`` is padding.
    - ``target_rows [M] int64``: flat index ``r * L + k`` into ``R * L`` of the hidden row that
      predicts each target token. Padding is never a target.
    - ``target_ids [M] int32``: the predicted token ids.
    - ``target_weights [M] float32``: the weight of each target's branch.
    - ``target_branch [M] int32``: global branch index (sequences in order, then their branches).
      Targets come grouped by branch in this order, tokens in order: every token of every branch
      is a target, so ``M`` is the sum of ``len(tokens)``.

    Token counts: ``naive_tokens`` (every branch with its own full prefix: the sum of
    ``offset + len(tokens)``), ``packed_tokens`` (the sum of ``row_lengths``) and ``ratio``.
    """

    input_ids: np.ndarray
    position_ids: np.ndarray
    parent: np.ndarray
    subtree_end: np.ndarray
    row_lengths: np.ndarray
    target_rows: np.ndarray
    target_ids: np.ndarray
    target_weights: np.ndarray
    target_branch: np.ndarray
    num_branches: int
    naive_tokens: int
    packed_tokens: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(R, L)``: rows and row length (the longest row; shorter rows are padded)."""
        rows, length = self.input_ids.shape
        return rows, length

    @property
    def num_targets(self) -> int:
        """M, the number of (hidden row, target token) pairs."""
        return int(self.target_rows.shape[0])

    @property
    def ratio(self) -> float:
        """``naive_tokens / packed_tokens``: how many times fewer tokens the model processes."""
        return self.naive_tokens / self.packed_tokens if self.packed_tokens else 1.0

    @property
    def padding(self) -> np.ndarray:
        """``[R, L] bool``: True on padding tokens."""
        return np.arange(self.shape[1])[None, :] >= self.row_lengths[:, None]

    def attention_mask(self) -> np.ndarray:
        """``[R, 1, L, L] bool``: ``mask[r, 0, q, k]`` is True when token k is an ancestor of token q
        or q itself. A padding token sees only itself (so no attention row is empty).

        Dense: ``R * L * L`` bytes (the SDPA path's mask). Kernels that take the tree itself use
        ``subtree_end``: k is visible from q exactly when ``k <= q < subtree_end[r, k]``."""
        length = self.shape[1]
        index = np.arange(length)
        query = index[None, :, None]
        key = index[None, None, :]
        mask = (key <= query) & (query < self.subtree_end[:, None, :])
        return mask[:, None, :, :]

    @overload
    def branch_sum(self, values: np.ndarray) -> np.ndarray: ...
    @overload
    def branch_sum(self, values: torch.Tensor) -> torch.Tensor: ...
    def branch_sum(self, values):
        """Sum per-target ``values [M]`` per branch -> ``[num_branches]`` (float64 for numpy; for a
        torch tensor its dtype and device, differentiable)."""
        if values.shape != (self.num_targets,):
            raise ValueError(
                f"values must have shape ({self.num_targets},), one per target; "
                f"got {tuple(values.shape)}"
            )
        if isinstance(values, np.ndarray):
            return np.bincount(self.target_branch, weights=values, minlength=self.num_branches)
        import torch

        index = torch.from_numpy(self.target_branch).to(device=values.device, dtype=torch.long)
        out = values.new_zeros(self.num_branches)
        return out.index_add(0, index, values)

    def arrays(self) -> dict[str, np.ndarray]:
        """The array fields by name (for comparisons and serialisation)."""
        return {name: getattr(self, name) for name in _ARRAY_FIELDS}


_ARRAY_FIELDS = (
    "input_ids",
    "position_ids",
    "parent",
    "subtree_end",
    "row_lengths",
    "target_rows",
    "target_ids",
    "target_weights",
    "target_branch",
)


def _check_options(
    sequences: Sequence[TreeSequence], max_tokens: int, vocab_size: int | None, pad_id: int
) -> tuple[list[TreeSequence], int, int, int]:
    """Shared argument checks of pack and pack_py; returns (sequences, max_tokens, vocab, pad)."""
    max_tokens = operator.index(max_tokens)
    if not 1 <= max_tokens <= MAX_ROW_TOKENS:
        raise ValueError(f"max_tokens must be in [1, {MAX_ROW_TOKENS}], got {max_tokens}")
    vocab = -1 if vocab_size is None else operator.index(vocab_size)
    if vocab_size is not None and vocab < 1:
        raise ValueError(f"vocab_size must be positive, got {vocab}")
    pad_id = operator.index(pad_id)
    pad_limit = vocab if vocab_size is not None else _INT32_LIMIT
    if not 0 <= pad_id < pad_limit:
        raise ValueError(f"pad_id must be in [0, {pad_limit}), got {pad_id}")
    return list(sequences), max_tokens, vocab, pad_id


def pack(
    sequences: Sequence[TreeSequence],
    max_tokens: int,
    *,
    share_prefixes: bool = True,
    vocab_size: int | None = None,
    pad_id: int = 0,
) -> PackedBatch:
    """Pack token trees into rows of at most ``max_tokens`` tokens (native).

    Args:
        sequences: the trajectories with their branches.
        max_tokens: row capacity in tokens. A sequence whose own tree (its context up to the last
            branch offset plus its branches) is longer raises ValueError naming it.
        share_prefixes: merge the sequences of a row into one trie (shared instructions are packed
            once per row). Without it each sequence keeps its own tree; branches of one sequence
            always share its context.
        vocab_size: if given, token ids must lie in ``[0, vocab_size)``; ids are never negative.
        pad_id: token id written on padding.

    Raises:
        ValueError: bad input (non-int32 or non-1-D arrays, empty branches, offsets outside
            ``[1, len(context)]``, token ids out of range, non-finite weights), naming the sequence
            and branch.
    """
    seqs, max_tokens, vocab, pad_id = _check_options(sequences, max_tokens, vocab_size, pad_id)
    return PackedBatch(**_native.pack(seqs, max_tokens, bool(share_prefixes), vocab, pad_id))


# ---------------------------------------------------------------------------------------------
# Pure-Python reference: the same algorithm written plainly (dict tries, linear first-fit).


class _Trie:
    """Token trie in creation order; node 0 is the root. A child is found through one dict keyed
    by ``parent << 32 | token`` (arrays and int keys keep 10^7 nodes within a few GB)."""

    def __init__(self) -> None:
        self.token = array("i", [-1])
        self.parent = array("i", [-1])
        self.lookup: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.token) - 1

    def add(self, parent: int, token: int, *, share: bool = True) -> int:
        """The child of ``parent`` holding ``token`` (created if absent, or always without share)."""
        key = parent << 32 | token
        if share and (found := self.lookup.get(key)) is not None:
            return found
        node = len(self.token)
        self.token.append(token)
        self.parent.append(parent)
        if share:
            self.lookup[key] = node
        return node


def _preorder(parent: array) -> tuple[list[int], list[int], list[int]]:
    """(position, subtree size, depth) of every node of a trie given in creation order, for the
    depth-first preorder that visits children in creation order (the root has position -1)."""
    n = len(parent)
    size = [1] * n
    for k in range(n - 1, 0, -1):  # a child comes after its parent
        size[parent[k]] += size[k]
    pos, depth, next_free = [-1] * n, [-1] * n, [0] * n
    for k in range(1, n):  # siblings in creation order fill their parent's subtree left to right
        p = parent[k]
        pos[k], depth[k] = next_free[p], depth[p] + 1
        next_free[p] += size[k]
        next_free[k] = pos[k] + 1
    return pos, size, depth


def _is_int32_vector(array: object) -> bool:
    return isinstance(array, np.ndarray) and array.ndim == 1 and array.dtype == np.dtype(np.int32)


def _as_list(value: object, what: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{what} must be a list")
    return list(value)


def _read(
    sequences: list[TreeSequence],
) -> list[tuple[np.ndarray, list[tuple[int, np.ndarray, float]]]]:
    """Type checks, sequence by sequence (context, branches, each branch's offset/tokens/weight)."""
    out = []
    for i, seq in enumerate(sequences):
        context = seq.context
        if not _is_int32_vector(context):
            raise ValueError(f"sequences[{i}].context must be a 1-D numpy int32 array")
        branches = []
        for j, branch in enumerate(_as_list(seq.branches, f"sequences[{i}].branches")):
            name = f"sequences[{i}].branches[{j}]"
            try:
                offset = operator.index(branch.offset)
            except TypeError:
                offset = None
            if offset is None or not -(2**63) <= offset < 2**63:
                raise ValueError(f"{name}.offset must be an int64 integer")
            if not _is_int32_vector(branch.tokens):
                raise ValueError(f"{name}.tokens must be a 1-D numpy int32 array")
            weight = branch.weight
            try:
                if isinstance(weight, (str, bytes, bytearray)):
                    raise TypeError
                weight = float(weight)
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"{name}.weight must be a real number") from None
            branches.append((offset, branch.tokens, weight))
        out.append((context, branches))
    return out


def _check_token_range(tokens: np.ndarray, vocab: int, name: str) -> None:
    bad = np.flatnonzero((tokens < 0) | (tokens >= (vocab if vocab >= 0 else _INT32_LIMIT)))
    if bad.size:
        k = int(bad[0])
        where = f"{name}[{k}] = {int(tokens[k])}"
        if vocab >= 0:
            raise ValueError(f"{where} is outside the vocabulary [0, {vocab})")
        raise ValueError(f"{where} is negative")


def pack_py(
    sequences: Sequence[TreeSequence],
    max_tokens: int,
    *,
    share_prefixes: bool = True,
    vocab_size: int | None = None,
    pad_id: int = 0,
) -> PackedBatch:
    """Pure-Python reference of :func:`pack`: same arguments, identical arrays and errors."""
    seqs, max_tokens, vocab, pad_id = _check_options(sequences, max_tokens, vocab_size, pad_id)
    read = _read(seqs)

    # 1. Each sequence's own trie: its trunk (context up to the last offset), then its branches.
    tries: list[_Trie] = []
    branch_nodes: list[array] = []  # per global branch: the sequence-trie node of each token
    trunks: list[int] = []
    naive = 0
    for i, (context, branches) in enumerate(read):
        _check_token_range(context, vocab, f"sequences[{i}].context")
        for j, (offset, tokens, weight) in enumerate(branches):
            name = f"sequences[{i}].branches[{j}]"
            if tokens.size == 0:
                raise ValueError(f"{name}.tokens is empty")
            # The hidden row of the token before a branch predicts its first token: at offset 0
            # there is none, and the first token would silently drop out of the loss.
            if offset < 1:
                raise ValueError(
                    f"{name}.offset {offset} is below 1: a branch must follow at least one "
                    "context token, which predicts the branch's first token"
                )
            if offset > context.size:
                raise ValueError(
                    f"{name}.offset {offset} is past the end of the context ({context.size} tokens)"
                )
            _check_token_range(tokens, vocab, f"{name}.tokens")
            with np.errstate(over="ignore"):
                if not np.isfinite(np.float32(weight)):
                    raise ValueError(f"{name}.weight is not finite in float32")
        trie = _Trie()
        trunk = max((offset for offset, _, _ in branches), default=0)
        trunks.append(trunk)
        for k, token in enumerate(context[:trunk].tolist()):
            trie.add(k, token)  # context token k is node k + 1
        for offset, tokens, _ in branches:
            node, nodes = offset, array("i")
            for token in tokens.tolist():
                node = trie.add(node, token)
                nodes.append(node)
            branch_nodes.append(nodes)
            naive += offset + len(tokens)
        if len(trie) > max_tokens:
            raise ValueError(
                f"sequences[{i}] does not fit in a row of max_tokens={max_tokens} "
                "(its context up to the last branch plus its branches)"
            )
        trie.lookup = {}  # only its nodes (token, parent) are needed from here on
        tries.append(trie)

    # 2. First-fit decreasing. Every row holds the prefix common to all contexts, so a sequence
    #    adds at most (its size - common) tokens to a row it joins. Joining a row inserts the
    #    sequence's nodes in creation order.
    placed = [i for i, (_, branches) in enumerate(read) if branches]
    common = 0
    if share_prefixes and placed:
        first = read[placed[0]][0]
        common = trunks[placed[0]]
        for i in placed[1:]:
            common = min(common, trunks[i])
            mismatch = np.flatnonzero(read[i][0][:common] != first[:common])
            if mismatch.size:
                common = int(mismatch[0])
    rows: list[_Trie] = []
    seq_row = [-1] * len(read)
    row_node: list[array] = [array("i") for _ in read]  # sequence node -> row node (0: root)
    for i in sorted(placed, key=lambda i: -len(tries[i])):
        need = len(tries[i]) - common
        r = next((r for r, row in enumerate(rows) if max_tokens - len(row) >= need), len(rows))
        if r == len(rows):
            rows.append(_Trie())
        row, trie = rows[r], tries[i]
        mapping = array("i", [0])
        for k in range(1, len(trie.token)):
            mapping.append(row.add(mapping[trie.parent[k]], trie.token[k], share=share_prefixes))
        seq_row[i], row_node[i] = r, mapping
        tries[i] = _Trie()  # merged: free it

    # 3. Preorder layout of each row.
    length = max((len(row) for row in rows), default=0)
    shape = (len(rows), length)
    input_ids = np.full(shape, pad_id, np.int32)
    position_ids = np.zeros(shape, np.int32)
    parent = np.full(shape, -1, np.int32)
    subtree_end = np.tile(np.arange(1, length + 1, dtype=np.int32), (len(rows), 1))
    positions = []
    for r, row in enumerate(rows):
        pos, size, depth = (np.array(a, np.int64) for a in _preorder(row.parent))
        parents = np.frombuffer(row.parent, np.int32)[1:]
        at = pos[1:]
        input_ids[r, at] = np.frombuffer(row.token, np.int32)[1:]
        position_ids[r, at] = depth[1:]
        parent[r, at] = pos[parents]  # the root's position is -1
        subtree_end[r, at] = at + size[1:]
        positions.append(pos)

    # 4. Targets: token j of a branch is predicted by its parent in the row's tree (never the
    #    root: offsets are at least 1).
    target_rows, target_ids = array("q"), array("i")
    target_weights, target_branch = array("f"), array("i")
    b = 0
    for i, (_, branches) in enumerate(read):
        for _, _, weight in branches:
            for node in branch_nodes[b]:
                row = rows[seq_row[i]]
                rnode = row_node[i][node]
                target_rows.append(
                    seq_row[i] * length + int(positions[seq_row[i]][row.parent[rnode]])
                )
                target_ids.append(row.token[rnode])
                target_weights.append(weight)
                target_branch.append(b)
            b += 1
    return PackedBatch(
        input_ids=input_ids,
        position_ids=position_ids,
        parent=parent,
        subtree_end=subtree_end,
        row_lengths=np.array([len(row) for row in rows], np.int32),
        target_rows=np.frombuffer(target_rows, np.int64).copy(),
        target_ids=np.frombuffer(target_ids, np.int32).copy(),
        target_weights=np.frombuffer(target_weights, np.float32).copy(),
        target_branch=np.frombuffer(target_branch, np.int32).copy(),
        num_branches=b,
        naive_tokens=naive,
        packed_tokens=sum(len(row) for row in rows),
    )

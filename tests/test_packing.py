"""The native packer against its Python reference, its tree invariants, and its input errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import swirl
from swirl.packing import Branch, PackedBatch, TreeSequence, pack, pack_py

VOCAB = 6  # tiny, so that random sequences and branches share tokens often


def ids(*tokens: int) -> np.ndarray:
    return np.array(tokens, np.int32)


def assert_same(a: PackedBatch, b: PackedBatch) -> None:
    for name, array in a.arrays().items():
        other = b.arrays()[name]
        assert array.dtype == other.dtype, name
        assert array.shape == other.shape, name
        np.testing.assert_array_equal(array, other, err_msg=name)
    assert (a.num_branches, a.naive_tokens, a.packed_tokens) == (
        b.num_branches,
        b.naive_tokens,
        b.packed_tokens,
    )


def root_path(batch: PackedBatch, row: int, k: int) -> list[int]:
    """Token ids from the root down to position k of a row, by walking parent pointers."""
    path = []
    while k >= 0:
        path.append(int(batch.input_ids[row, k]))
        k = int(batch.parent[row, k])
    return path[::-1]


def check_invariants(sequences: list[TreeSequence], batch: PackedBatch, max_tokens: int) -> None:
    """What packing promises, checked from the input alone (no reference implementation)."""
    rows, length = batch.shape
    assert (batch.row_lengths <= max_tokens).all()
    assert batch.packed_tokens == int(batch.row_lengths.sum())
    assert batch.num_branches == sum(len(s.branches) for s in sequences)
    assert batch.naive_tokens == sum(
        b.offset + b.tokens.size for s in sequences for b in s.branches
    )
    assert not batch.padding.ravel()[batch.target_rows].any()
    # Every target: the predicting row's root path is the naive prefix, its position the index.
    m = 0
    for b_index, branch, context in (
        (b, br, s.context)
        for b, (s, br) in enumerate((s, br) for s in sequences for br in s.branches)
    ):
        full = np.concatenate([context[: branch.offset], branch.tokens]).tolist()
        for j in range(branch.tokens.size):
            row, k = divmod(int(batch.target_rows[m]), length)
            assert root_path(batch, row, k) == full[: branch.offset + j]
            assert batch.position_ids[row, k] == branch.offset + j - 1
            assert batch.target_ids[m] == branch.tokens[j]
            assert batch.target_branch[m] == b_index
            assert batch.target_weights[m] == np.float32(branch.weight)
            m += 1
    assert m == batch.num_targets
    # The mask is exactly "ancestor or self"; positions are depths.
    mask = batch.attention_mask()
    assert mask.shape == (rows, 1, length, length) and mask.dtype == bool
    for row in range(rows):
        expected = np.eye(length, dtype=bool)
        for k in range(int(batch.row_lengths[row])):
            a = int(batch.parent[row, k])
            if a >= 0:
                assert a < k
                expected[k] |= expected[a]
            assert batch.position_ids[row, k] == expected[k].sum() - 1
        np.testing.assert_array_equal(mask[row, 0], expected)


@st.composite
def tree_batches(draw):
    prefix = draw(st.lists(st.integers(0, VOCAB - 1), max_size=4))
    sequences: list[TreeSequence] = []
    for _ in range(draw(st.integers(0, 5))):
        if sequences and draw(st.integers(0, 4)) == 0:  # an exact duplicate
            sequences.append(sequences[draw(st.integers(0, len(sequences) - 1))])
            continue
        context = prefix + draw(st.lists(st.integers(0, VOCAB - 1), max_size=7))
        branches = []
        for _ in range(draw(st.integers(0, 4) if context else st.just(0))):
            offset = draw(
                st.one_of(st.just(1), st.just(len(context)), st.integers(1, len(context)))
            )
            kind = draw(st.sampled_from(["random", "continues", "single"]))
            if kind == "single":
                tokens = [draw(st.integers(0, VOCAB - 1))]
            else:
                tokens = draw(st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=5))
                if kind == "continues":  # the recorded action: shares the rest of the context
                    tokens = context[offset : offset + len(tokens)] + tokens
            weight = draw(st.floats(-4, 4, allow_nan=False, width=32))
            branches.append(Branch(offset, ids(*tokens), weight))
        sequences.append(TreeSequence(ids(*context), branches))
    max_tokens = draw(st.integers(1, 40))
    return sequences, max_tokens, draw(st.booleans())


def pack_both(sequences, max_tokens, **options):
    """(native, reference) results, or their ValueError messages."""
    out = []
    for fn in (pack, pack_py):
        try:
            out.append(fn(sequences, max_tokens, **options))
        except ValueError as error:
            out.append(str(error))
    return out


# `make asan` raises this to fuzz the sanitized build harder.
EXAMPLES = int(os.environ.get("SWIRL_FUZZ_EXAMPLES", "400"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree_batches())
def test_native_matches_reference_on_random_trees(case):
    sequences, max_tokens, share = case
    native, reference = pack_both(sequences, max_tokens, share_prefixes=share)
    if isinstance(native, str) or isinstance(reference, str):
        assert native == reference
        assert "does not fit in a row" in native
        return
    assert_same(native, reference)
    check_invariants(sequences, native, max_tokens)


CORRUPTIONS = {
    "offset": lambda b, n: Branch(n + 1 + b.offset, b.tokens, b.weight),
    "zero offset": lambda b, n: Branch(0, b.tokens, b.weight),
    "negative offset": lambda b, n: Branch(-1 - b.offset, b.tokens, b.weight),
    "empty": lambda b, n: Branch(b.offset, b.tokens[:0], b.weight),
    "token": lambda b, n: Branch(b.offset, np.append(b.tokens, np.int32(-3)), b.weight),
    "vocab": lambda b, n: Branch(b.offset, np.append(b.tokens, np.int32(VOCAB)), b.weight),
    "dtype": lambda b, n: Branch(b.offset, b.tokens.astype(np.int16), b.weight),
    "weight": lambda b, n: Branch(b.offset, b.tokens, float("inf")),
}


@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree_batches(), st.data())
def test_native_and_reference_reject_corrupted_input_alike(case, data):
    sequences, max_tokens, share = case
    with_branches = [i for i, s in enumerate(sequences) if s.branches]
    if not with_branches:
        return
    i = data.draw(st.sampled_from(with_branches))
    j = data.draw(st.integers(0, len(sequences[i].branches) - 1))
    kind = data.draw(st.sampled_from(sorted(CORRUPTIONS)))
    branches = list(sequences[i].branches)
    branches[j] = CORRUPTIONS[kind](branches[j], sequences[i].context.size)
    sequences = [*sequences[:i], TreeSequence(sequences[i].context, branches), *sequences[i + 1 :]]
    native, reference = pack_both(sequences, max_tokens, share_prefixes=share, vocab_size=VOCAB)
    assert isinstance(native, str) and native == reference


def test_worked_example():
    """A trunk with a recorded action, two samples at one state, and a second sequence that
    shares the instruction prefix; checked array by array."""
    seqs = [
        TreeSequence(
            ids(1, 2, 3, 4, 5),
            [Branch(3, ids(4, 5, 9), 0.5), Branch(3, ids(7, 8), 1.0), Branch(5, ids(6))],
        ),
        TreeSequence(ids(1, 2, 8), [Branch(2, ids(3, 3), 2.0)]),
    ]
    batch = pack(seqs, 16)
    assert_same(batch, pack_py(seqs, 16))
    np.testing.assert_array_equal(batch.input_ids, [[1, 2, 3, 4, 5, 9, 6, 7, 8, 3]])
    np.testing.assert_array_equal(batch.position_ids, [[0, 1, 2, 3, 4, 5, 5, 3, 4, 3]])
    np.testing.assert_array_equal(batch.parent, [[-1, 0, 1, 2, 3, 4, 4, 2, 7, 2]])
    np.testing.assert_array_equal(batch.subtree_end, [[10, 10, 10, 7, 7, 6, 7, 9, 9, 10]])
    np.testing.assert_array_equal(batch.target_rows, [2, 3, 4, 2, 7, 4, 1, 2])
    np.testing.assert_array_equal(batch.target_ids, [4, 5, 9, 7, 8, 6, 3, 3])
    np.testing.assert_array_equal(batch.target_branch, [0, 0, 0, 1, 1, 2, 3, 3])
    np.testing.assert_array_equal(batch.target_weights, [0.5] * 3 + [1.0] * 3 + [2.0] * 2)
    assert (batch.naive_tokens, batch.packed_tokens) == (6 + 5 + 6 + 4, 10)
    assert batch.ratio == pytest.approx(21 / 10)
    # Without sharing the second sequence gets its own tree (same row: 9 + 4 <= 16).
    alone = pack(seqs, 16, share_prefixes=False)
    assert_same(alone, pack_py(seqs, 16, share_prefixes=False))
    np.testing.assert_array_equal(alone.row_lengths, [13])
    np.testing.assert_array_equal(alone.parent[0, 9:], [-1, 9, 10, 11])


def test_bin_packing_first_fit_decreasing_and_full_rows():
    big = TreeSequence(ids(0, 1, 2, 3, 4), [Branch(5, ids(5, 5))])  # 7 tokens
    mid = TreeSequence(ids(0, 1, 2), [Branch(3, ids(4, 4))])  # 5 tokens, shares 0 1 2 with big
    small = TreeSequence(ids(5), [Branch(1, ids(1))])  # 2 tokens, shares nothing
    seqs = [small, mid, big]
    batch = pack(seqs, 7)
    assert_same(batch, pack_py(seqs, 7))
    # big fills row 0 exactly; mid needs 5 (common prefix 0) -> row 1; small fits beside it.
    np.testing.assert_array_equal(batch.row_lengths, [7, 7])
    np.testing.assert_array_equal(batch.input_ids[1], [0, 1, 2, 4, 4, 5, 1])
    with pytest.raises(ValueError, match=r"sequences\[2\] does not fit in a row of max_tokens=6"):
        pack(seqs, 6)
    # A common instruction prefix is counted once per row when deciding what fits.
    shared = [TreeSequence(ids(9, 9, 9, t), [Branch(4, ids(t))]) for t in range(4)]
    assert pack(shared, 11).shape == (1, 11)  # 5 + 3 * (5 - 3)
    assert pack(shared, 11, share_prefixes=False).shape == (2, 10)


def test_adversarial_shapes_match_reference():
    rng = np.random.default_rng(0)
    context = rng.integers(0, 50, 40).astype(np.int32)
    many = [Branch(20, ids(int(t)), 1.0) for t in range(40)]  # fanout 40: the hashed lookup path
    many += [Branch(20, ids(int(t), 7), 0.5) for t in range(40)]  # and back through it
    # Runs below a hashed node, then split inside them, then walked again.
    deep = [Branch(20, ids(int(t), 1, 2, 3)) for t in range(40)]
    deep += [Branch(20, ids(int(t), 1, 9)) for t in range(40)]
    deep += [Branch(20, ids(int(t), 1, 2, 5)) for t in range(0, 40, 3)]
    cases = [
        [TreeSequence(context, many)],
        [TreeSequence(context, deep), TreeSequence(context[:30].copy(), deep[::-1])],
        [TreeSequence(context, [Branch(1, ids(3)), Branch(40, ids(3))])],  # offsets 1 and len
        [TreeSequence(context, [Branch(1, context[1:].copy())])],  # offset 1 repeating the context
        [TreeSequence(context, [Branch(10, context[10:30].copy())] * 3)],  # duplicate branches
        [TreeSequence(ids(7), [Branch(1, ids(1, 2))])],  # one-token context
        [TreeSequence(context, [])] * 3,  # no branches: nothing to pack
        [],
    ]
    for seqs in cases:
        for share in (True, False):
            for max_tokens in (300, 400):
                native = pack(seqs, max_tokens, share_prefixes=share)
                assert_same(native, pack_py(seqs, max_tokens, share_prefixes=share))
                check_invariants(seqs, native, max_tokens)
    assert pack([TreeSequence(context, many)], 100).packed_tokens == 20 + 40 + 40
    assert pack([], 4).shape == (0, 0)


def test_strided_arrays_are_read_correctly():
    wide = np.arange(40, dtype=np.int32)
    strided = TreeSequence(wide[::2], [Branch(5, wide[1::4])])
    plain = TreeSequence(
        np.ascontiguousarray(wide[::2]), [Branch(5, np.ascontiguousarray(wide[1::4]))]
    )
    assert_same(pack([strided], 64), pack([plain], 64))
    assert_same(pack([strided], 64), pack_py([strided], 64))


BAD_INPUTS = [
    (
        [TreeSequence(ids(1, 2), [Branch(1, ids(1))]), TreeSequence([1, 2], [])],
        r"sequences\[1\]\.context must be a 1-D numpy int32 array",
    ),
    (
        [TreeSequence(np.array([1, 2]), [])],
        r"sequences\[0\]\.context must be a 1-D numpy int32 array",
    ),
    (
        [TreeSequence(np.array([1, 2], ">i4"), [])],
        r"sequences\[0\]\.context must be a 1-D numpy int32 array",
    ),
    (
        [TreeSequence(np.ones((2, 2), np.int32), [])],
        r"sequences\[0\]\.context must be a 1-D numpy int32 array",
    ),
    (
        [TreeSequence(ids(1), [Branch(1, ids(1)), Branch(1, ids(2, 3).astype(np.int64))])],
        r"sequences\[0\]\.branches\[1\]\.tokens must be a 1-D numpy int32 array",
    ),
    ([TreeSequence(ids(1), Branch(1, ids(1)))], r"sequences\[0\]\.branches must be a list"),
    (
        [TreeSequence(ids(1), [Branch(1.5, ids(1))])],
        r"sequences\[0\]\.branches\[0\]\.offset must be an int64 integer",
    ),
    (
        [TreeSequence(ids(1), [Branch(1, ids(1), "1.0")])],
        r"sequences\[0\]\.branches\[0\]\.weight must be a real number",
    ),
    (
        [TreeSequence(ids(1), [Branch(1, ids(1)), Branch(1, ids())])],
        r"sequences\[0\]\.branches\[1\]\.tokens is empty",
    ),
    (
        [TreeSequence(ids(1, 2), [Branch(2, ids(1)), Branch(0, ids(1))])],
        r"sequences\[0\]\.branches\[1\]\.offset 0 is below 1: a branch must follow at least one "
        r"context token, which predicts the branch's first token",
    ),
    (
        [TreeSequence(ids(), [Branch(0, ids(1))])],
        r"sequences\[0\]\.branches\[0\]\.offset 0 is below 1",
    ),
    (
        [TreeSequence(ids(1, 2), [Branch(-1, ids(1))])],
        r"sequences\[0\]\.branches\[0\]\.offset -1 is below 1",
    ),
    (
        [TreeSequence(ids(1), []), TreeSequence(ids(1, 2), [Branch(3, ids(1))])],
        r"sequences\[1\]\.branches\[0\]\.offset 3 is past the end of the context \(2 tokens\)",
    ),
    (
        [TreeSequence(ids(1, -4), [])],
        r"sequences\[0\]\.context\[1\] = -4 is negative",
    ),
    (
        [TreeSequence(ids(1), [Branch(1, ids(2, -1, 3))])],
        r"sequences\[0\]\.branches\[0\]\.tokens\[1\] = -1 is negative",
    ),
    (
        [TreeSequence(ids(1), [Branch(1, ids(2)), Branch(1, ids(1), float("nan"))])],
        r"sequences\[0\]\.branches\[1\]\.weight is not finite in float32",
    ),
    (
        [TreeSequence(ids(1), [Branch(1, ids(2), 1e39)])],
        r"sequences\[0\]\.branches\[0\]\.weight is not finite in float32",
    ),
]


@pytest.mark.parametrize(("sequences", "message"), BAD_INPUTS)
def test_bad_input_names_sequence_and_branch(sequences, message):
    for fn in (pack, pack_py):
        with pytest.raises(ValueError, match=message):
            fn(sequences, 16)


def test_vocabulary_and_option_errors():
    seqs = [TreeSequence(ids(1, 2, 9), [Branch(2, ids(3, 10))])]
    for fn in (pack, pack_py):
        with pytest.raises(
            ValueError, match=r"sequences\[0\]\.context\[2\] = 9 is outside the vocabulary \[0, 9\)"
        ):
            fn(seqs, 16, vocab_size=9)
        with pytest.raises(
            ValueError, match=r"branches\[0\]\.tokens\[1\] = 10 is outside the vocabulary \[0, 10\)"
        ):
            fn(seqs, 16, vocab_size=10)
        fn(seqs, 16, vocab_size=11)
        with pytest.raises(ValueError, match="max_tokens must be in"):
            fn(seqs, 0)
        with pytest.raises(ValueError, match="vocab_size must be positive"):
            fn(seqs, 16, vocab_size=0)
        with pytest.raises(ValueError, match=r"pad_id must be in \[0, 11\)"):
            fn(seqs, 16, vocab_size=11, pad_id=11)


def test_branch_sum_numpy_and_torch():
    seqs = [
        TreeSequence(
            ids(1, 2, 3), [Branch(1, ids(4, 5), 2.0), Branch(3, ids(6)), Branch(1, ids(7))]
        )
    ]
    batch = pack(seqs, 16)
    assert batch.num_targets == 4 and batch.num_branches == 3
    values = np.array([1.0, 2.0, 4.0, 8.0])
    np.testing.assert_array_equal(batch.branch_sum(values), [3.0, 4.0, 8.0])
    tensor = torch.tensor(values, requires_grad=True)
    summed = batch.branch_sum(tensor)
    assert torch.equal(summed, torch.tensor([3.0, 4.0, 8.0], dtype=torch.float64))
    summed[0].backward()
    assert tensor.grad.tolist() == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"one per target"):
        batch.branch_sum(np.zeros(5))


def test_top_level_exports():
    assert swirl.pack is pack and swirl.Branch is Branch and swirl.PackedBatch is PackedBatch

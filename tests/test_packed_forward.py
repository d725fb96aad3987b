"""Exactness of one packed forward: per-branch log-probs and gradients equal the naive
computation that runs every sub-trajectory (state prefix + action) as its own sequence, on a small
random Llama and the embedded model."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from swirl.packing import Branch, PackedBatch, TreeSequence, pack

# The module (swirl.packed_forward the attribute is the function of the same name).
pf = importlib.import_module("swirl.packed_forward")
TOLERANCE = 1e-4  # fp32


def random_trees(
    rng: np.random.Generator,
    vocab: int,
    *,
    sequences: int = 3,
    prefix: int = 12,
    steps: int = 3,
    samples: int = 3,
    low: int = 0,
) -> list[TreeSequence]:
    """Trajectories with a shared instruction prefix, several steps, and at every step the
    recorded action plus `samples` sampled ones (of random length, some sharing first tokens)."""
    instructions = rng.integers(low, vocab, prefix)
    out = []
    for _ in range(sequences):
        context, branches = list(instructions), []
        for _ in range(steps):
            context += rng.integers(low, vocab, rng.integers(2, 6)).tolist()  # state / tool result
            state = len(context)
            action = rng.integers(low, vocab, rng.integers(2, 5)).tolist()
            branches.append(Branch(state, np.array(action, np.int32), float(rng.normal())))
            for _ in range(samples):
                sample = rng.integers(low, vocab, rng.integers(1, 5)).tolist()
                if rng.random() < 0.3:
                    sample = action[:1] + sample  # shares its first token with the recorded one
                branches.append(Branch(state, np.array(sample, np.int32), float(rng.normal())))
            context += action
        out.append(TreeSequence(np.array(context, np.int32), branches))
    return out


def target_logprobs(model, hidden: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
    """log p(target) of every target of a packed batch -> [M] (float32)."""
    rows = torch.from_numpy(batch.target_rows)
    logits = model.lm_head(hidden.reshape(-1, hidden.shape[-1])[rows]).float()
    targets = torch.from_numpy(batch.target_ids).long()[:, None]
    return logits.log_softmax(-1).gather(1, targets).squeeze(1)


def naive_branch_logprobs(model, sequences: list[TreeSequence]) -> torch.Tensor:
    """Per-branch sums of log p(action token), one plain forward per sub-trajectory -> [B]."""
    sums = []
    for seq in sequences:
        for branch in seq.branches:
            ids = np.concatenate([seq.context[: branch.offset], branch.tokens])
            logits = model(input_ids=torch.from_numpy(ids).long()[None]).logits[0].float()
            logprobs = logits[:-1].log_softmax(-1)
            first = branch.offset  # the first action token, predicted by the row before it
            picked = logprobs[
                torch.arange(first - 1, len(ids) - 1), torch.from_numpy(ids[first:]).long()
            ]
            sums.append(picked.sum())
    return torch.stack(sums)


def weights_of(sequences: list[TreeSequence]) -> torch.Tensor:
    return torch.tensor([b.weight for s in sequences for b in s.branches])


def gradients(model, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_exact(model, sequences, batch, attention="sdpa") -> None:
    """Packed vs naive: per-branch log-prob sums within 1e-4, and gradients of a weighted loss
    within 1e-4 of each parameter's gradient scale (fp32 rounding grows with the magnitude)."""
    packed_lp = target_logprobs(model, pf.packed_forward(model, batch, attention=attention), batch)
    naive_sums = naive_branch_logprobs(model, sequences)
    torch.testing.assert_close(batch.branch_sum(packed_lp), naive_sums, rtol=0, atol=TOLERANCE)

    packed_grads = gradients(model, (torch.from_numpy(batch.target_weights) * packed_lp).sum())
    naive_grads = gradients(model, (weights_of(sequences) * naive_sums).sum())
    assert packed_grads.keys() == naive_grads.keys()
    for name, grad in packed_grads.items():
        scale = max(1.0, naive_grads[name].abs().max().item())
        torch.testing.assert_close(
            grad, naive_grads[name], rtol=0, atol=TOLERANCE * scale, msg=name
        )


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Dozens of small forwards of varying shape: on a shared 2-core machine the OpenMP
    hand-off of every op costs more than the op itself, so run these on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as in SmolLM2
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config).float().eval()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("share_prefixes", [True, False])
def test_packed_equals_naive_on_tiny_llama(tiny_llama, seed, share_prefixes):
    sequences = random_trees(np.random.default_rng(seed), tiny_llama.config.vocab_size)
    batch = pack(
        sequences, 96, share_prefixes=share_prefixes, vocab_size=tiny_llama.config.vocab_size
    )
    assert batch.shape[0] >= 2  # rows filled by the bin packer
    assert batch.ratio > 1.5
    assert_exact(tiny_llama, sequences, batch)


def test_offset_one_and_single_token_branches(tiny_llama):
    vocab = tiny_llama.config.vocab_size
    sequences = [
        TreeSequence(
            np.arange(10, 20, dtype=np.int32),
            [
                Branch(1, np.array([5, 6, 7], np.int32), 0.5),
                Branch(10, np.array([3], np.int32), -1.0),
            ],
        ),
        TreeSequence(np.arange(10, 14, dtype=np.int32), [Branch(2, np.array([9], np.int32), 2.0)]),
    ]
    assert_exact(tiny_llama, sequences, pack(sequences, 64, vocab_size=vocab))


def test_model_attention_setting_is_restored(tiny_llama):
    before = tiny_llama.config._attn_implementation
    batch = pack(random_trees(np.random.default_rng(3), 97, sequences=1), 128)
    with torch.no_grad():
        pf.packed_forward(tiny_llama, batch)
    assert tiny_llama.config._attn_implementation == before
    with pytest.raises(ValueError, match="attention must be"):
        pf.packed_forward(tiny_llama, batch, attention="dense")


def test_flex_path_forward_on_cpu_matches_sdpa(tiny_llama):
    """FlexAttention's block mask (CPU: unfused, forward only) gives the SDPA result."""
    batch = pack(random_trees(np.random.default_rng(4), 97), 96)
    with torch.no_grad(), pytest.warns(UserWarning, match="without torch.compile"):
        flex = pf.packed_forward(tiny_llama, batch, attention="flex")
    with torch.no_grad():
        sdpa = pf.packed_forward(tiny_llama, batch, attention="sdpa")
    valid = torch.from_numpy(~batch.padding)
    torch.testing.assert_close(flex[valid], sdpa[valid], rtol=0, atol=1e-5)


def test_chain_segments_cover_exactly_the_ancestors():
    batch = pack(random_trees(np.random.default_rng(5), 97), 96)
    query_index, key_index, cu_q, cu_k = pf.chain_segments(batch)
    rows, length = batch.shape
    mask = batch.attention_mask()[:, 0].reshape(rows * length, length)
    assert sorted(query_index.tolist()) == np.flatnonzero(~batch.padding.ravel()).tolist()
    for c in range(len(cu_q) - 1):
        queries = query_index[cu_q[c] : cu_q[c + 1]]
        keys = key_index[cu_k[c] : cu_k[c + 1]]
        shift = len(keys) - len(queries)
        for i, q in enumerate(queries):
            row = q // length
            seen = (keys[: i + shift + 1] - row * length).tolist()
            assert seen == np.flatnonzero(mask[q]).tolist()  # ancestors in root-first order


def test_flash_path_with_reference_varlen_matches_sdpa(tiny_llama, monkeypatch):
    """The flash plan's chains, run through a plain-torch varlen kernel, reproduce the SDPA path
    (forward and gradients); the real kernel is checked on CUDA below."""
    monkeypatch.setattr(pf, "_varlen_attention", lambda: pf.varlen_attention_reference)
    sequences = random_trees(np.random.default_rng(6), 97)
    batch = pack(sequences, 96)
    assert_exact(tiny_llama, sequences, batch, attention="flash")


def test_auto_attention_selection():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert pf.resolve_attention("auto", cpu, torch.float32) == "sdpa"
    assert pf.resolve_attention("auto", cuda, torch.float32) == "flex"
    assert pf.resolve_attention("flash", cpu, torch.float32) == "flash"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("attention", ["flex", "flash"])
def test_gpu_paths_match_sdpa(tiny_llama, attention):
    if attention == "flash":
        pytest.importorskip("flash_attn")
    model = tiny_llama.to("cuda", torch.bfloat16 if attention == "flash" else torch.float32)
    try:
        batch = pack(random_trees(np.random.default_rng(7), 97), 96)
        valid = torch.from_numpy(~batch.padding).cuda()
        with torch.no_grad():
            got = pf.packed_forward(model, batch, attention=attention)[valid].float()
            want = pf.packed_forward(model, batch, attention="sdpa")[valid].float()
        torch.testing.assert_close(got, want, rtol=0.02, atol=0.02)
    finally:
        tiny_llama.to("cpu", torch.float32)


@pytest.mark.slow
def test_packed_equals_naive_on_embedded_model(embedded_model):
    model, tokenizer = embedded_model
    vocab = model.config.vocab_size
    instructions = np.array(tokenizer("Answer with <answer>...</answer>.")["input_ids"], np.int32)
    rng = np.random.default_rng(8)
    sequences = []
    for _ in range(2):
        steps = random_trees(rng, vocab, sequences=1, prefix=0, steps=2, samples=1, low=1000)[0]
        context = np.concatenate([instructions, steps.context])
        branches = [
            Branch(b.offset + len(instructions), b.tokens, b.weight) for b in steps.branches
        ]
        sequences.append(TreeSequence(context, branches))
    batch = pack(sequences, 256, vocab_size=vocab)
    assert batch.shape[0] == 1 and batch.ratio > 2
    assert_exact(model, sequences, batch)

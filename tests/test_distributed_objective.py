"""The packed policy gradient under FSDP2 with ranks of unequal work.

Two gloo processes, one with no target at all and one with two packed rows, must run the same
number of forward and backward passes (FSDP gathers parameters on every forward and reduces
the gradients after the last backward: unequal counts hang or corrupt the update) and must
produce the gradient one process computes on the whole batch, in every normalisation mode.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = """
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from swirl.packing import Branch, TreeSequence, pack
from swirl.training import distributed as dd
from swirl.training.objective import (
    PackedPolicy, accumulate_policy_gradient, packed_logprobs, pad_passes, row_passes,
    target_loss_scale,
)

model_path, out = Path(sys.argv[1]), Path(sys.argv[2])
info = dd.init_distributed(torch.device("cpu"))
rng = np.random.default_rng(0)


def sequence(length, branches):
    context = rng.integers(1, 64, length).astype(np.int32)
    return TreeSequence(context, [
        Branch(int(offset), rng.integers(1, 64, size).astype(np.int32), float(weight))
        for offset, size, weight in branches
    ])


everything = [
    sequence(20, [(5, 4, 1.0), (20, 3, -0.5), (12, 6, 0.25)]),
    sequence(24, [(24, 2, -1.0), (9, 5, 0.75)]),
    sequence(18, [(18, 7, 0.5)]),
]
# One process packs everything; of two ranks, rank 0 gets nothing and rank 1 everything.
mine = everything if info.rank == info.world_size - 1 else []
batch = pack(mine, 64, vocab_size=64, pad_id=0)
passes = row_passes(batch)
assert len(passes) == (2 if mine else 0), len(passes)
(count,) = dd.all_reduce_max([float(len(passes))], info)
passes = pad_passes(passes, int(count), pad_id=0)
targets, branches = dd.all_reduce_sum(
    [float(batch.num_targets), float(np.unique(batch.target_branch).size)], info
)
# every branch is one sequence here; its length is its own token count
lengths = torch.from_numpy(np.bincount(batch.target_branch)[batch.target_branch]).float()
advantages = torch.from_numpy(batch.target_weights)
results = {}
for normalize in ("token", "sequence", "constant"):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    policy = dd.shard_policy(PackedPolicy(model, temperature=0.7), info)
    scale = target_loss_scale(
        lengths, normalize, total_targets=targets, total_sequences=branches, divisor=40.0,
        world_size=info.world_size,
    )
    old_logp = packed_logprobs(policy, passes)
    ref_logp = old_logp + 0.05 * torch.cos(torch.arange(old_logp.numel(), dtype=torch.float32))
    stats = accumulate_policy_gradient(
        policy, passes, scale, advantages, old_logp=old_logp, ref_logp=ref_logp,
        options={"clip_low": 0.2, "kl_coef": 0.1},
    )
    assert stats.finite
    (loss,) = dd.all_reduce_sum([stats.loss], info)
    grads = {
        name: (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad).clone()
        for name, p in policy.named_parameters()
    }
    results[normalize] = {"loss": loss / info.world_size, "grads": grads}
if info.is_main:
    torch.save(results, out)
dd.close_distributed(info)
"""


@pytest.mark.slow
def test_unequal_ranks_match_one_process_in_every_normalisation(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,  # the LM head is a root parameter of its own
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path / "tiny")
    script = tmp_path / "objective.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "tiny"), str(one)],
        check=True,
        env=env,
        timeout=300,
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    subprocess.run(
        [*torchrun, str(script), str(tmp_path / "tiny"), str(two)],
        check=True,
        env=env,
        timeout=300,  # unequal collectives would hang here
    )
    single, split = torch.load(one), torch.load(two)
    for normalize in ("token", "sequence", "constant"):
        assert split[normalize]["loss"] == pytest.approx(single[normalize]["loss"], abs=1e-6)
        grads = single[normalize]["grads"]
        assert any(g.abs().max() > 0 for g in grads.values())
        for name, grad in grads.items():
            torch.testing.assert_close(
                split[normalize]["grads"][name],
                grad,
                rtol=0,
                atol=1e-6,
                msg=lambda m, n=name, mode=normalize: f"{mode} {n}: {m}",
            )

"""Per-step training metrics: JSONL always, TensorBoard when installed, W&B when configured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# What every key of a step's record means. Statistics are over all data-parallel ranks. "First
# update" is the first of the step's ``updates_per_batch`` optimizer updates, i.e. the policy that
# sampled the step's actions; None marks a value that does not apply (e.g. no reward in SFT).
METRICS: dict[str, str] = {
    "step": "optimizer step, 1-based",
    "reward": "mean reward of the scored actions (1 GOOD, 0 BAD or invalid; not in SFT)",
    "advantage_mean": "mean advantage of the scored actions (with kl_in_reward: penalised)",
    "advantage_std": "standard deviation of the scored actions' advantages",
    "informative_frac": "fraction of baseline groups whose rewards are not all equal (the "
    "others have advantage 0; drop_zero_variance_groups leaves them out of the loss)",
    "loss": "batch loss, mean over the step's finite updates",
    "logp_mean": "mean log-prob of a target token under the policy, first update",
    "entropy": "mean entropy (nats) of the policy's next-token distribution, first update",
    "kl": "online/outcome with kl_coef > 0: mean k3 estimate of KL(policy || reference) per "
    "sampled token (the value, whichever kl_estimator shapes the gradient), first update",
    "sampler_gap": "mean of log p_sampler - log p_learner per sampled token, first update: 0 "
    "when the sampler is exactly the learner; drift shows here",
    "sampler_abs_gap": "mean |log p_sampler - log p_learner| per sampled token, first update",
    "tis_capped_frac": "fraction of sampled tokens whose importance weight the tis_cap truncated, "
    "first update",
    "ratio_mean": "mean PPO ratio exp(logp - old_logp) over targets and updates "
    "(updates_per_batch > 1)",
    "clip_frac": "fraction of targets whose gradient the PPO clip removed, over targets and "
    "updates (clip_low set, updates_per_batch > 1)",
    "clip_frac_pos": "clip_frac among targets with a positive advantage (the clip at 1 + high)",
    "clip_frac_neg": "clip_frac among targets with a negative advantage (the clip at 1 - low)",
    "grad_norm": "gradient norm before clipping, first update",
    "lr": "learning rate after the step",
    "states": "states drawn",
    "actions": "samples: actions sampled (online) or drawn (offline, SFT), or whole "
    "trajectories rolled out (outcome)",
    "unscored": "samples without a reward (the judge could not decide, or no label)",
    "oversize_dropped": "samples dropped because an action with its state is longer than "
    "tokens_per_micro_batch",
    "tokens_packed": "tokens in the packed batch (what the model processed per forward)",
    "sampled_tokens": "tokens the policy generated for the step (online, outcome; 0 otherwise)",
    "tokens_naive": "tokens the naive layout would process (every action with its own state)",
    "pack_ratio": "tokens_naive / tokens_packed",
    "tokens_per_s": "tokens_packed per second of the step's update part (after sampling)",
    "sample_time_s": "seconds spent getting actions and rewards (sampling and judging)",
    "step_time_s": "seconds of the whole step",
    "skipped_updates": "updates skipped because a loss, gradient or log-prob was not finite",
    "no_gradient": "1 when the loss had no gradient on any rank (every advantage 0 and no KL or "
    "entropy term), so the optimizer did not step",
    "policy_version": "optimizer updates applied to the weights that sampled the step's actions",
    "weight_sync_s": "seconds the rollout server's weight sync took before the step's sampling "
    "(0 for the in-process engine)",
}


class MetricsLog:
    """Append one JSON object per optimizer step to ``path`` (flushed per line).

    On resume from step ``resume_step`` the records after it (logged by the interrupted run after
    its last checkpoint) are dropped, so the file never holds a step twice.
    """

    def __init__(
        self,
        path: Path,
        *,
        resume_step: int = 0,
        tensorboard_dir: Path | None = None,
        wandb_project: str | None = None,
        run_name: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = (
            [r for r in read_metrics(path) if r.get("step", 0) <= resume_step]
            if path.exists()
            else []
        )
        with path.open("w") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in kept)
        self._handle = path.open("a")
        self._tensorboard = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tensorboard = SummaryWriter(str(tensorboard_dir))
        self._wandb = None
        if wandb_project:
            import wandb  # configured explicitly: a missing package is an error worth seeing

            self._wandb = wandb.init(
                project=wandb_project, name=run_name, config=config, resume="allow"
            )

    def log(self, record: dict[str, Any]) -> None:
        """Write one step's record (must contain an int ``step``)."""
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        step = int(record["step"])
        numbers = {k: v for k, v in record.items() if isinstance(v, int | float) and k != "step"}
        if self._tensorboard is not None:
            for key, value in numbers.items():
                self._tensorboard.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(numbers, step=step)

    def close(self) -> None:
        self._handle.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics JSONL file (a torn last line is ignored)."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records

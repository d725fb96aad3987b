"""What a set of trajectories looks like: terminations, steps, tool calls (for run summaries)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec

from swirl.schema import Trajectory


class RolloutSummary(msgspec.Struct, kw_only=True):
    """Counts over trajectories. ``steps_*`` count actions per trajectory; ``tool_calls`` counts
    executed search/math actions by kind; ``actions`` counts every parsed action kind."""

    trajectories: int = 0
    terminations: dict[str, int] = {}
    steps_total: int = 0
    steps_min: int = 0
    steps_max: int = 0
    tool_calls: dict[str, int] = {}
    actions: dict[str, int] = {}
    generated_tokens: int = 0

    @property
    def steps_mean(self) -> float:
        return self.steps_total / self.trajectories if self.trajectories else 0.0

    def lines(self) -> list[str]:
        """The summary as text lines for a terminal."""

        def share(counts: dict[str, int]) -> str:
            total = sum(counts.values()) or 1
            return ", ".join(
                f"{key} {value} ({100 * value / total:.0f}%)"
                for key, value in sorted(counts.items(), key=lambda kv: -kv[1])
            )

        return [
            f"trajectories: {self.trajectories}",
            f"termination: {share(self.terminations) or '-'}",
            f"steps per trajectory: mean {self.steps_mean:.2f}, min {self.steps_min}, "
            f"max {self.steps_max}",
            f"tool calls: {sum(self.tool_calls.values())}"
            + (f" ({share(self.tool_calls)})" if self.tool_calls else ""),
            f"actions: {share(self.actions) or '-'}",
            f"generated tokens: {self.generated_tokens}",
        ]


def summarize(trajectories: Iterable[Trajectory]) -> RolloutSummary:
    """One pass over the trajectories."""
    terminations: Counter[str] = Counter()
    tools: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    summary = RolloutSummary()
    steps_seen: list[int] = []
    for trajectory in trajectories:
        terminations[trajectory.termination] += 1
        steps_seen.append(len(trajectory.steps))
        for step in trajectory.steps:
            actions[step.action.kind] += 1
            summary.generated_tokens += len(step.token_ids)
            if step.action.kind in ("search", "math"):
                tools[step.action.kind] += 1
    summary.trajectories = len(steps_seen)
    summary.terminations = dict(terminations)
    summary.tool_calls = dict(tools)
    summary.actions = dict(actions)
    if steps_seen:
        summary.steps_total = sum(steps_seen)
        summary.steps_min, summary.steps_max = min(steps_seen), max(steps_seen)
    return summary

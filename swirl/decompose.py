"""Split a trajectory into its K per-step training states (paper: sub-trajectories)."""

from __future__ import annotations

from swirl.schema import SubTrajectory, Trajectory


def decompose(trajectory: Trajectory) -> list[SubTrajectory]:
    """Return the K sub-trajectories ``(s_i, a_i)`` of a K-action trajectory.

    ``state_token_ids`` of step i is exactly the context the model was given before sampling action
    i: the prompt, then every earlier action with the observation appended after it. Token ids and
    texts are concatenated, never re-tokenised. Cost O(total tokens * K) for the copies.
    """
    out: list[SubTrajectory] = []
    state_ids: list[int] = list(trajectory.prompt_token_ids)
    state_text_parts: list[str] = [trajectory.prompt_text]
    for index, step in enumerate(trajectory.steps):
        out.append(
            SubTrajectory(
                trajectory_id=trajectory.id,
                example_id=trajectory.example_id,
                step_index=index,
                state_token_ids=list(state_ids),
                action_token_ids=list(step.token_ids),
                state_text="".join(state_text_parts),
                action_text=step.text,
                action=step.action,
                process=step.process,
            )
        )
        state_ids += step.token_ids
        state_ids += step.observation_token_ids
        state_text_parts += (step.text, step.observation_text)
    return out

"""Stage-2 training states of 10k trajectories: copies (``decompose``) vs views (``State``).

Each trajectory has a 400-token prompt and 5 steps of a 40-token action and an 80-token tool
result, as a demo-qa trajectory with two few-shot examples. ``decompose`` copies every prefix
(O(K * tokens) per trajectory, the states the trainer used to hold); ``training_states`` makes
one shared int32 sequence per trajectory and K (offset) views of it. Prints the time and the
memory the states add (tracemalloc peak above the trajectories themselves), and both ratios.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from benches.timing import fastest
from swirl.decompose import decompose
from swirl.schema import Action, Step, Trajectory
from swirl.training.states import training_states

COUNT, PROMPT, STEPS, ACTION, RESULT = 10_000, 400, 5, 40, 80
results: dict[str, tuple[float, float]] = {}


def make_trajectories() -> list[Trajectory]:
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, 49_152, PROMPT).tolist()
    action = Action(kind="search", payload="q", thought="", start=0, end=1)

    def ids(size: int) -> list[int]:
        return rng.integers(0, 49_152, size).tolist()

    return [
        Trajectory(
            id=f"t{index}",
            example_id=f"e{index}",
            prompt_text="",
            prompt_token_ids=prompt,
            steps=[
                Step(
                    text="", token_ids=ids(ACTION), action=action, observation_token_ids=ids(RESULT)
                )
                for _ in range(STEPS)
            ],
            termination="step_cap",
        )
        for index in range(COUNT)
    ]


TRAJECTORIES = make_trajectories()
CASES = {
    "copies (decompose)": lambda: [s for t in TRAJECTORIES for s in decompose(t)],
    "views (State)": lambda: training_states(TRAJECTORIES),
}


def added_memory(build) -> float:
    """MiB the built states hold beyond the trajectories (tracemalloc's peak during the build)."""
    tracemalloc.start()
    states = build()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(states) == COUNT * STEPS
    return peak / 2**20


@pytest.mark.parametrize("name", list(CASES))
def test_training_states(benchmark, name: str) -> None:
    build = CASES[name]
    _, seconds = fastest(benchmark, build, rounds=3)
    memory = added_memory(build)
    results[name] = (seconds, memory)
    print(f"\n{name}: {seconds:.2f} s, {memory:.0f} MiB for {COUNT * STEPS} states")
    if len(results) == len(CASES):
        (copy_s, copy_m), (view_s, view_m) = results.values()
        print(f"views vs copies: {copy_s / view_s:.1f}x faster, {copy_m / view_m:.1f}x less memory")

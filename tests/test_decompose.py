"""decompose(): K actions give K states, each the exact context before its action."""

from __future__ import annotations

from swirl import decompose
from swirl.schema import Action, Judgment, Step, Trajectory


def step(tokens: list[int], observation: list[int], text: str, verdict: bool) -> Step:
    return Step(
        text=text,
        token_ids=tokens,
        action=Action("math", text, "", 0, len(text)),
        observation_text=f"<obs {text}>",
        observation_token_ids=observation,
        process=Judgment(judge="reference", verdict=verdict),
    )


def test_states_are_prefixes() -> None:
    trajectory = Trajectory(
        id="t",
        example_id="e",
        prompt_text="P",
        prompt_token_ids=[1, 2],
        steps=[
            step([3, 4], [5], "a", True),
            step([6], [7, 8], "b", False),
            step([9], [], "c", True),
        ],
        termination="answer",
    )
    subs = decompose(trajectory)
    assert [s.state_token_ids for s in subs] == [[1, 2], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6, 7, 8]]
    assert [s.action_token_ids for s in subs] == [[3, 4], [6], [9]]
    assert [s.state_text for s in subs] == ["P", "Pa<obs a>", "Pa<obs a>b<obs b>"]
    assert [s.step_index for s in subs] == [0, 1, 2]
    assert [s.process.verdict for s in subs] == [True, False, True]
    # The last state plus its action is a prefix of the whole recorded sequence.
    whole = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert subs[-1].state_token_ids + subs[-1].action_token_ids == whole


def test_no_steps_no_states() -> None:
    empty = Trajectory(
        id="t", example_id="e", prompt_text="", prompt_token_ids=[1], termination="length"
    )
    assert decompose(empty) == []

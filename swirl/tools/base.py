"""The contract every tool honours, so the environment loop can run any of them."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from swirl.schema import ActionKind


@runtime_checkable
class Tool(Protocol):
    """A tool answers the payload of one action with the text shown to the model.

    ``kind`` is the action kind it serves ("search" or "math"). ``__call__`` never raises on bad
    input from the model: problems come back as a short error string, which the model then sees as
    the tool result. It must return promptly (well under a second for local tools).
    """

    kind: ActionKind

    def __call__(self, payload: str) -> str: ...

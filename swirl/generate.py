"""Stage 1 into a file: roll out trajectories and append them, resumably.

The output file is append-only: every finished trajectory is written and flushed at once, so
Ctrl-C or a kill loses nothing finished, and a rerun skips every (example id, sample index)
already in the file. Turns are seeded per (seed, example, sample, step), so a resumed run writes
the same records as an uninterrupted one (bit for bit when episodes run one at a time; with
larger batches the local backend's float32 rounding depends on the batch's shape, which can
rarely flip a sampled token).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence

from swirl.backends.base import GenerationBackend, SamplingParams
from swirl.env import EnvConfig, run_episodes
from swirl.jsonl import JsonlReader, JsonlWriter
from swirl.schema import Example, Trajectory
from swirl.settings import RecordedSettings, write_settings
from swirl.summary import RolloutSummary, summarize
from swirl.tools.base import Tool


def generate_to_file(
    examples: Sequence[Example],
    out: str | os.PathLike[str],
    *,
    backend: Callable[[], GenerationBackend],
    tools: Callable[[], Sequence[Tool]],
    params: SamplingParams,
    config: EnvConfig | None = None,
    samples_per_question: int = 1,
    settings: RecordedSettings | None = None,
    progress: bool = True,
) -> RolloutSummary:
    """Roll out ``samples_per_question`` trajectories per example into ``out`` (appending).

    ``backend`` and ``tools`` are factories, called only when something is left to generate (a
    finished file loads no model). ``settings`` are recorded beside ``out``
    (:func:`swirl.settings.write_settings`; resuming with other settings is refused). Returns the
    summary of the wanted trajectories in the file.
    """
    from tqdm import tqdm

    if samples_per_question < 1:
        raise ValueError(f"samples per question must be >= 1, got {samples_per_question}")
    if not examples:
        raise ValueError("no questions to run")
    if settings is not None:
        write_settings(out, settings)
    wanted = {(e.id, s) for e in examples for s in range(samples_per_question)}
    with JsonlWriter(out) as writer:  # opening drops a torn last line of a killed run
        done = {(t.example_id, t.sample_index) for t in JsonlReader(out, Trajectory)}
        todo = len(wanted - done)
        if done and progress:
            print(f"{out}: {len(done & wanted)} of {len(wanted)} trajectories already done")
        if todo:
            episodes = run_episodes(
                examples,
                backend(),
                tools=tools(),
                params=params,
                config=config,
                samples_per_question=samples_per_question,
                skip=done,
            )
            started = time.perf_counter()
            tokens = 0
            with tqdm(
                total=todo, unit="traj", desc="generate", file=sys.stderr, disable=not progress
            ) as bar:
                for trajectory in episodes:
                    writer.write(trajectory)
                    tokens += sum(len(step.token_ids) for step in trajectory.steps)
                    elapsed = max(time.perf_counter() - started, 1e-9)
                    bar.set_postfix_str(
                        f"{(bar.n + 1) / elapsed:.2f} traj/s, {tokens / elapsed:.1f} tok/s"
                    )
                    bar.update(1)
    return summarize(
        t for t in JsonlReader(out, Trajectory) if (t.example_id, t.sample_index) in wanted
    )

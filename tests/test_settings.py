"""One source of truth for rollout, tool and judge settings: flags generated from the Structs,
settings recorded with Stage-1 data and reused (or overridden, with a warning) downstream."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from swirl.cli import main
from swirl.flags import add_struct_flags, given_values
from swirl.settings import (
    JudgeSettings,
    RecordedSettings,
    RolloutSettings,
    ToolSettings,
    read_settings,
    settings_path,
    with_overrides,
    write_settings,
)


def test_every_train_flag_has_a_description(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    options = text[text.index("options:") :]
    # every option line is followed (on it or the next line) by words, not just a default
    entries = re.split(r"\n  (?=-)", options)[1:]
    assert len(entries) > 40
    for entry in entries:
        flag, _, rest = entry.strip().partition("  ")
        words = re.sub(r"\(default: [^)]*\)", "", rest.strip()).strip()
        assert re.search(r"[a-z]{3}", words), f"{flag!r} has no description"


def test_flags_come_from_the_structs_and_only_given_ones_count() -> None:
    parser = argparse.ArgumentParser()
    add_struct_flags(parser, ToolSettings)
    add_struct_flags(parser, JudgeSettings)
    args = parser.parse_args(["--top-k", "3", "--no-judge-cache", "--search", "dense"])
    assert given_values(args, ToolSettings) == {"top_k": 3, "search": "dense"}
    assert given_values(args, JudgeSettings) == {"no_judge_cache": True}
    with pytest.raises(SystemExit):
        parser.parse_args(["--search", "grep"])  # choices come from the Literal


def test_overrides_warn_by_field_and_are_validated() -> None:
    recorded = ToolSettings(top_k=2, observation_tokens=64)
    with pytest.warns(UserWarning, match=r"top_k = 5 overrides 2, recorded with runs/qa\.jsonl"):
        merged = with_overrides(recorded, ToolSettings, {"top_k": 5}, source="runs/qa.jsonl")
    assert merged == ToolSettings(top_k=5, observation_tokens=64)
    assert with_overrides(None, ToolSettings, {}) == ToolSettings()
    with pytest.raises(ValueError, match=r"invalid ToolSettings: .*>= 1.*top_k"):
        with_overrides(None, ToolSettings, {"top_k": 0})


def test_settings_file_refuses_appending_with_other_settings(tmp_path: Path) -> None:
    data = tmp_path / "qa.jsonl"
    first = RecordedSettings(data="demo-qa", tools=ToolSettings(top_k=2))
    write_settings(data, first)
    assert settings_path(data) == tmp_path / "qa.settings.json"
    assert read_settings(data) == first
    data.write_text("{}\n")  # some records exist now
    write_settings(data, first)  # same settings: resuming is fine
    other = msgspec.structs.replace(
        first, rollout=RolloutSettings(few_shot=0), tools=ToolSettings(top_k=3)
    )
    with pytest.raises(ValueError, match=r"rollout\.few_shot, tools\.top_k differ"):
        write_settings(data, other)
    settings_path(data).write_text("{not json")
    with pytest.raises(ValueError, match=r"qa\.settings\.json: invalid settings"):
        read_settings(data)


def start_search_server(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """`swirl index --serve 0` over demo-qa's corpus; returns the process and its base URL."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "swirl.cli",
            "index",
            "--data",
            "demo-qa",
            "--out",
            str(tmp_path / "index"),
            "--serve",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"on (http://[\d.]+:\d+)/retrieve", line)
        if found:
            return process, found.group(1)
    process.kill()
    raise AssertionError("the search server did not start")


@pytest.mark.slow
def test_online_training_rewards_with_the_recorded_tools(tmp_path: Path) -> None:
    """Stage 1 with top-k 2 against a Search-R1 server and a 64-token observation cap; judging
    needs no --data and carries the settings on; online training on the output builds its
    scorer with exactly those tools and that cap, and a flag given to `swirl train` overrides
    one of them with a warning."""
    from swirl.commands.train import config_from_args, configure
    from swirl.tools.remote_search import RemoteSearch
    from swirl.training.trainer import Trainer

    server, url = start_search_server(tmp_path)
    try:
        trajectories = tmp_path / "qa.jsonl"
        assert (
            main(
                [
                    "generate",
                    "--data",
                    "demo-qa",
                    "--limit",
                    "2",
                    "--out",
                    str(trajectories),
                    "--top-k",
                    "2",
                    "--retriever-url",
                    url,
                    "--observation-tokens",
                    "64",
                    "--max-steps",
                    "1",
                    "--max-new-tokens",
                    "24",
                    "--threads",
                    "2",
                ]
            )
            == 0
        )
        recorded = read_settings(trajectories)
        assert recorded is not None
        assert recorded.tools == ToolSettings(top_k=2, retriever_url=url, observation_tokens=64)
        assert recorded.rollout.max_new_tokens == 24 and recorded.data == "demo-qa"
        labelled = tmp_path / "qa-labelled.jsonl"  # judged without --data: the recorded data
        assert main(["judge", "--in", str(trajectories), "--out", str(labelled)]) == 0
        carried = read_settings(labelled)
        assert carried == msgspec.structs.replace(recorded, judge=JudgeSettings())

        parser = argparse.ArgumentParser()
        configure(parser)
        args = parser.parse_args(
            [
                "--trajectories",
                str(trajectories),
                "--out",
                str(tmp_path / "train"),
                "--steps",
                "1",
                "--states-per-step",
                "1",
                "--samples-per-state",
                "2",
            ]
        )
        trainer = Trainer(config_from_args(args), progress=False)
        scorer = trainer.source.scorer
        search = scorer.tools["search"]
        assert isinstance(search, RemoteSearch) and search.top_k == 2
        assert search.url.startswith(url)
        assert scorer.observation_max_tokens == 64
        assert trainer.config.max_new_tokens == 24 and trainer.config.data == "demo-qa"
        record = trainer.train().metrics[-1]
        assert record["actions"] == 2 and record["unscored"] == 0

        args = parser.parse_args(
            ["--trajectories", str(trajectories), "--out", str(tmp_path / "other"), "--top-k", "1"]
        )
        with pytest.warns(UserWarning, match=r"tools\.top_k = 1 overrides 2"):
            overridden = Trainer(config_from_args(args), progress=False)
        assert overridden.source.scorer.tools["search"].top_k == 1
        assert overridden.source.scorer.tools["search"].url.startswith(url)  # the rest is kept
    finally:
        server.terminate()
        server.wait(timeout=10)

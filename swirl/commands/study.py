"""``swirl study``: arms (base, SFT, offline, SWiRL, outcome RL, variants) x seeds on one
dataset, each cell resumable, optionally after a tuning grid on the validation split, then a
report of comparisons across seeds on the same held-out questions (see :mod:`swirl.study`,
:mod:`swirl.tuning` and :mod:`swirl.study_report`)."""

from __future__ import annotations

import argparse

HELP = "compare training arms x seeds on the same questions: metrics, paired tests, cost"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        help="study TOML: seeds, reference, transfer, primary = ['ARM - OTHER', ...] and "
        "primary_metric, a [run] table (with [run.train], ...), [[arms]] (name, mode = "
        "base|sft|offline|online|outcome|stepwise-outcome|trajectory-process, filter, rounds, "
        "judge, train) and a [tuning] grid (seeds, "
        "metric, arms, and a list of values per TrainConfig field, e.g. lr = [...]); default: the "
        "five standard arms, one seed, the run defaults",
    )
    parser.add_argument("--out", required=True, help="study directory (a rerun resumes)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only rewrite the report from the finished cells",
    )
    parser.add_argument(
        "--tuning-only",
        action="store_true",
        help="run the [tuning] grid on the validation split and stop (tuning.md, tuning.json)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from swirl.commands.rollout_options import apply_threads
    from swirl.study import Study, load_study_config
    from swirl.study_report import write_study_report

    apply_threads(args)
    config = load_study_config(args.config)
    study = Study(config, args.out)
    if args.tuning_only and config.tuning is None:
        raise ValueError(
            f"--tuning-only: {args.config or 'the default config'} has no [tuning] grid"
        )
    if args.report_only:
        report = write_study_report(Path(args.out), config)
    else:
        report = study.run(tuning_only=args.tuning_only)
    print(report.read_text())
    if args.tuning_only:
        print(f"-> {report}, tuning.json")
    else:
        print(f"-> {report}, study.json, study_metrics.png, study_differences.png")
    return 0

"""``swirl study``: arms (base, SFT, offline, SWiRL, outcome RL, variants) x seeds on one
dataset, each cell resumable, then a report of paired comparisons on the same held-out questions
(see :mod:`swirl.study` and :mod:`swirl.study_report`)."""

from __future__ import annotations

import argparse

HELP = "compare training arms x seeds on the same questions: metrics, paired tests, cost"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        help="study TOML: seeds, reference, transfer, a [run] table (with [run.train], ...) and "
        "[[arms]] (name, mode = base|sft|offline|online|outcome, filter, rounds, train); "
        "default: the five standard arms, one seed, the run defaults",
    )
    parser.add_argument("--out", required=True, help="study directory (a rerun resumes)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only rewrite the report from the finished cells",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from swirl.commands.rollout_options import apply_threads
    from swirl.study import Study, load_study_config
    from swirl.study_report import write_study_report

    apply_threads(args)
    config = load_study_config(args.config)
    study = Study(config, args.out)
    report = write_study_report(Path(args.out), config) if args.report_only else study.run()
    print(report.read_text())
    print(f"-> {report}, study.json, study_metrics.png, study_differences.png")
    return 0

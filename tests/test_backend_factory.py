"""Choosing a backend from flags: clear errors for inconsistent ones."""

from __future__ import annotations

import argparse

import pytest

from swirl.backends.factory import add_backend_arguments, backend_from_args, make_backend


@pytest.mark.parametrize(
    "kind,options,message",
    [
        ("local", {"base_url": "http://127.0.0.1:8000"}, "--base-url is for --backend openai"),
        ("openai", {}, "--backend openai needs --base-url"),
        ("tgi", {}, "unknown backend 'tgi'"),
        ("vllm", {"base_url": "http://localhost:8000/v1"}, "--base-url is for --backend openai"),
        ("local", {"batch_size": 0}, "--batch-size must be >= 1"),
        (
            "openai",
            {"base_url": "http://127.0.0.1:9", "tokenizer": "/no/such/tokenizer"},
            "pass --tokenizer",
        ),
    ],
)
def test_bad_backend_choices(kind, options, message):
    with pytest.raises(ValueError, match=message):
        make_backend(kind, **options)


def test_prefixed_flags_for_a_second_backend():
    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    add_backend_arguments(parser, prefix="judge-")
    args = parser.parse_args(["--judge-backend", "openai", "--judge-batch-size", "4"])
    assert args.backend == "local" and args.judge_backend == "openai" and args.judge_batch_size == 4
    with pytest.raises(ValueError, match="needs --base-url"):
        backend_from_args(args, prefix="judge-")

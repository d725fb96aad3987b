"""The built-in generated datasets: correct answers, GSM8K/HotPotQA formats, seeds, disjoint splits."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from swirl.data import demo_math, demo_qa, load_corpus, load_examples
from swirl.tools.calculator import Calculator


def test_demo_math_steps_are_correct_and_chain_to_the_answer() -> None:
    calculator = Calculator()
    examples = load_examples("demo-math", limit=400)
    assert len(examples) == 400 and len({e.id for e in examples}) == 400
    for example in examples:
        assert example.task == "math" and example.dataset == "demo-math"
        assert 2 <= len(example.reference_steps) <= 4, example
        results = []
        for step in example.reference_steps:
            expression, result = step.split("=")
            assert calculator(expression) == result, step
            results.append(result)
        assert results[-1] == example.answers[0]
        # small numbers: every operand and result below 1000
        assert all(
            int(n) < 1000 for step in example.reference_steps for n in re.findall(r"\d+", step)
        )
    # every step count appears
    assert set(Counter(len(e.reference_steps) for e in examples)) == {2, 3, 4}


def test_demo_math_records_are_gsm8k_files(tmp_path: Path) -> None:
    records = demo_math.generate_records("train", 20, seed=3)
    path = tmp_path / "demo.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    from_file = load_examples(path)
    generated = load_examples("demo-math", limit=20, seed=3)
    assert [e.question for e in from_file] == [e.question for e in generated]
    assert [e.reference_steps for e in from_file] == [e.reference_steps for e in generated]
    assert all("<<" in r["answer"] and "\n#### " in r["answer"] for r in records)


def test_demo_math_seeds_sizes_and_splits() -> None:
    first = load_examples("demo-math", limit=50, seed=0)
    assert load_examples("demo-math", limit=50, seed=0) == first  # deterministic
    assert load_examples("demo-math", limit=20, seed=0) == first[:20]  # a prefix: ids stay stable
    assert [e.question for e in load_examples("demo-math", limit=50, seed=1)] != [
        e.question for e in first
    ]
    assert len(load_examples("demo-math", split="train")) == demo_math.DEFAULT_SIZES["train"]
    train = {
        e.question for seed in (0, 1) for e in load_examples("demo-math", limit=1500, seed=seed)
    }
    test = {
        e.question
        for seed in (0, 1)
        for e in load_examples("demo-math", split="test", limit=300, seed=seed)
    }
    assert not train & test
    assert load_examples("demo-math", limit=0) == []


def test_demo_qa_world_is_consistent_and_unambiguous() -> None:
    world = demo_qa.build_world(demo_qa.DEFAULT_PEOPLE)
    names = [
        e.name
        for group in (world.people, world.cities, world.companies, world.countries)
        for e in group
    ]
    assert len(names) == len(set(names))
    # no two entities share a name word (first names of people aside), so name searches are exact
    words = Counter(
        w for e in world.cities + world.companies + world.countries for w in e.name.split()[:1]
    )
    words.update(p.name.split()[1] for p in world.people)
    assert max(words.values()) == 1
    for city in world.cities:
        assert city.country in world.country and city.mayor in world.person
    for country in world.countries:
        assert world.city[country.capital].country == country.name
    for company in world.companies:
        assert world.person[company.founder].employer == company.name
    corpus = load_corpus("demo-qa")
    assert len(corpus) == len(names) and len({d.id for d in corpus}) == len(corpus)


def test_demo_qa_answers_follow_from_the_supporting_sentences() -> None:
    world_articles = demo_qa.articles(demo_qa.build_world(demo_qa.DEFAULT_PEOPLE))
    examples = load_examples("demo-qa", limit=600)
    kinds = Counter(e.metadata["type"] for e in examples)
    assert kinds["bridge"] > 150 and kinds["comparison"] > 150
    assert {"yes", "no"} <= {e.answers[0] for e in examples}
    for example in examples:
        (answer,) = example.answers
        assert len(example.supporting_facts) >= 2
        facts = [world_articles[f.title][f.sentence] for f in example.supporting_facts]
        titles = [f.title for f in example.supporting_facts]
        if example.metadata["type"] == "bridge":
            # the first fact names the next hop's article; the last fact states the answer
            for fact, next_title in zip(facts, titles[1:], strict=False):
                assert next_title in fact
            assert answer in facts[-1]
            assert titles[0] in example.question
        elif answer not in ("yes", "no"):
            assert answer in titles and all(t in example.question for t in titles)


def test_demo_qa_records_are_hotpotqa_files(tmp_path: Path) -> None:
    records = demo_qa.generate_records("test", 15, seed=2)
    assert all(
        len(r["context"]) == len({t for t, _ in r["supporting_facts"]}) + demo_qa.DISTRACTORS
        for r in records
    )
    path = tmp_path / "demo_qa.json"
    path.write_text(json.dumps(records))
    assert load_examples(path) == [
        e.__class__(**{**{f: getattr(e, f) for f in e.__struct_fields__}, "dataset": "hotpotqa"})
        for e in load_examples("demo-qa", split="test", limit=15, seed=2)
    ]
    # the context articles are articles of the world corpus
    corpus = {d.title: d.text for d in load_corpus("demo-qa")}
    assert all(corpus[d.title] == d.text for d in load_corpus(path))


def test_demo_qa_splits_seeds_and_world_sizes() -> None:
    train = {e.question for seed in (0, 1) for e in load_examples("demo-qa", limit=800, seed=seed)}
    test = {
        e.question
        for seed in (0, 1)
        for e in load_examples("demo-qa", split="test", limit=150, seed=seed)
    }
    assert not train & test
    assert load_examples("demo-qa", limit=30, seed=5) == load_examples("demo-qa", limit=30, seed=5)
    assert (
        load_examples("demo-qa", limit=10, seed=5)
        == load_examples("demo-qa", limit=30, seed=5)[:10]
    )
    big = load_corpus("demo-qa:1000")
    assert len(big) == sum(demo_qa.world_sizes(1000).values())
    questions = load_examples("demo-qa:1000", limit=20)
    titles = {d.title for d in big}
    assert all(f.title in titles for e in questions for f in e.supporting_facts)
    with pytest.raises(ValueError, match="at least 20 people"):
        load_corpus("demo-qa:5")
    with pytest.raises(ValueError, match=r"only \d+ distinct test questions"):
        load_examples("demo-qa:20", split="test", limit=100_000)
    with pytest.raises(ValueError, match="no documents"):
        load_corpus("demo-math")

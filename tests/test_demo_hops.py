"""demo-hops, the benchmark built to measure multi-hop tool use: its splits and strata, that no
answer can be read off the question, the held-out world, the evidence chains, retrieval with the
real bm25 index, and the pinned fingerprints (a changed generator needs a new dataset name)."""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from itertools import pairwise

import pytest

from swirl.baselines import options
from swirl.cli import main
from swirl.corpus import corpus_fingerprint
from swirl.data import demo_hops, load_corpus, load_examples
from swirl.data.fingerprint import questions_fingerprint
from swirl.data.strata import stratum_counts
from swirl.prompts import (
    QA_EXAMPLES,
    TEMPLATES,
    dataset_template,
    observation_content,
    template_for,
)
from swirl.schema import Example

HELD_OUT = ("validation", "test")
# Pinned: any change to the generator, the world or the encoding changes one of these. A changed
# benchmark is a new benchmark: give it a new name instead of updating these.
FINGERPRINTS = {
    "train": "514307b9d1d93263e4e25aaf42520e1046e59fe68ef1f19cc2c133f4ed7d3d2f",
    "validation": "9fa416bdd232a0947e5906b12f37b5601859338b14c065840b6088aae7871452",
    "test": "da4aa65cdf98779acf2705a2ba18a3618ed324e648274dfbd7c6ecedacf75253",
    "corpus": "ebbe8da36c4016f85a0099a0dc7a2cbe8c479f358d62ac1f35f4b501c7aa27d0",
}


@cache
def split(name: str) -> tuple[Example, ...]:
    return tuple(load_examples("demo-hops", split=name))


@cache
def entity_pattern() -> re.Pattern[str]:
    """Every entity name of the world as whole words, longest first."""
    names = sorted(demo_hops.build_world().entity, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")


def mentioned(text: str) -> set[str]:
    return set(entity_pattern().findall(text))


def test_splits_sizes_and_strata() -> None:
    strata = [f"{kind} {hops}-hop" for kind, hops in demo_hops.STRATA]
    for name, size in demo_hops.SIZES.items():
        examples = split(name)
        assert len(examples) == size and len({e.id for e in examples}) == size
        assert all(e.dataset == "demo-hops" and e.task == "qa" for e in examples)
        assert all({"type", "hops"} <= e.metadata.keys() for e in examples)
        assert stratum_counts(examples) == dict.fromkeys(strata, size // len(strata))
        # interleaved: a prefix (the first questions a run takes) is balanced too
        assert stratum_counts(examples[:50]) == dict.fromkeys(strata, 10)
        for example in examples:
            assert len({f.title for f in example.supporting_facts}) == example.metadata["hops"]
    assert len(split("train")) >= 1000 and len(split("validation")) >= 200
    assert len(split("test")) >= 400
    assert load_examples("demo-hops", split="test", limit=7) == list(split("test")[:7])
    assert load_examples("demo-hops", split="test", seed=3) == list(split("test"))  # fixed
    with pytest.raises(ValueError, match="has 250 questions, 251 requested"):
        load_examples("demo-hops", split="validation", limit=251)
    with pytest.raises(ValueError, match="no 'dev' split"):
        load_examples("demo-hops", split="dev")


def test_no_answer_can_be_read_off_the_question() -> None:
    """Nor guessed from how often it occurs: no answer is more than 3% of the training split's
    (a year range clipped at its end once put 3.2% of the answers on one year)."""
    counts = Counter(e.answers[0] for e in split("train"))
    assert counts.most_common(1)[0][1] <= 0.03 * len(split("train")), counts.most_common(3)
    for name in demo_hops.SPLITS:
        for example in split(name):
            (answer,) = example.answers
            assert answer not in mentioned(example.question), example
            assert answer.casefold() not in example.question.casefold(), example
            assert answer.casefold() not in ("yes", "no")
            assert options(example.question) == [], example  # nothing to pick from


def test_held_out_world() -> None:
    """Validation and test questions name only entities no training question mentions (in its
    text, answer or evidence); no held-out question is answerable from training evidence alone;
    validation and test share no entity either."""
    seen_in_training: set[str] = set()
    training_documents: set[str] = set()
    for example in split("train"):
        seen_in_training |= mentioned(example.question) | set(example.answers)
        seen_in_training |= {f.title for f in example.supporting_facts}
        training_documents |= {f.title for f in example.supporting_facts}
    subjects: dict[str, set[str]] = {}
    for name in HELD_OUT:
        subjects[name] = set()
        for example in split(name):
            named = mentioned(example.question)
            assert named, example
            assert not named & seen_in_training, example
            assert not {f.title for f in example.supporting_facts} <= training_documents, example
            subjects[name] |= named
    assert not subjects["validation"] & subjects["test"]
    assert not {e.question for e in split("validation")} & {e.question for e in split("test")}


def test_answers_follow_from_the_supporting_sentences() -> None:
    """The last fact states the answer and each fact names the next article of the chain; a
    comparison first reads the two entities it compares (both named in the question), and its
    chain starts at one of them."""
    sentences = demo_hops.articles(demo_hops.build_world())
    for name in demo_hops.SPLITS:
        for example in split(name):
            facts = example.supporting_facts
            assert example.answers[0] in sentences[facts[-1].title][facts[-1].sentence], example
            chain = facts
            if example.metadata["type"] == "comparison":
                compared = {facts[0].title, facts[1].title}
                assert len(compared) == 2 and compared <= mentioned(example.question), example
                # only the comparison tells the answer: the other entity's answer differs
                path = tuple(str(example.metadata["template"]).split(".")[1:])
                world = demo_hops.build_world()
                answers = {demo_hops.walk(world, world.entity[t], path)[0] for t in compared}
                assert len(answers) == 2 and example.answers[0] in answers, example
                chain = facts[2:]
                assert not chain or chain[0].title in compared, example
            else:
                assert facts[0].title in example.question, example
            for before, after in pairwise(chain):
                if after.title != before.title:
                    assert after.title in sentences[before.title][before.sentence], example


def test_every_name_retrieves_its_own_article_with_bm25() -> None:
    from swirl.tools.search import search_tool

    documents = load_corpus("demo-hops")
    assert len({d.id for d in documents}) == len(documents)
    search = search_tool(documents, backend="bm25", top_k=1)
    wrong = [d.title for d in documents if [r.title for r in search.search(d.title)] != [d.title]]
    assert wrong == []
    # every article a question needs is in the corpus
    titles = {d.title for d in documents}
    assert all(
        f.title in titles for s in demo_hops.SPLITS for e in split(s) for f in e.supporting_facts
    )


def worked_text(worked) -> str:
    return " ".join([worked.question, *(t for turn in worked.turns for t in turn if t)])


def test_the_prompt_shows_training_questions_solved_as_the_tools_would() -> None:
    """demo-hops questions get their own worked examples (a bridge and a comparison of the
    training split, each search answered as the real search tool answers it); they name no
    entity of the held-out splits. The generic QA examples name no demo-hops entity at all."""
    from swirl.env import run_tool
    from swirl.model import load_tokenizer
    from swirl.tools.search import search_tool

    template = template_for(split("test")[0])
    assert template is dataset_template("demo-hops") and template.task == "qa"
    assert template_for(load_examples("demo-qa", limit=1)[0]) is TEMPLATES["qa"]
    custom = {"qa": TEMPLATES["qa"]}
    assert template_for(split("test")[0], custom) is custom["qa"]  # a caller's own templates
    training = {e.question: e for e in split("train")}
    held_out = {n for s in HELD_OUT for e in split(s) for n in mentioned(e.question)}
    search = search_tool(load_corpus("demo-hops"), backend="bm25", top_k=1)
    tokenizer = load_tokenizer()
    kinds = []
    for worked in template.examples:
        example = training[worked.question]
        kinds.append(example.metadata["type"])
        assert not mentioned(worked_text(worked)) & held_out
        for turn, observation in worked.turns[:-1]:
            query = turn.removeprefix("<search_query>").removesuffix("</search_query>")
            result, _titles = run_tool(search, query, tokenizer, 256)
            assert observation == observation_content(query, result)
        assert worked.turns[-1][0].endswith(f"<answer>{example.answers[0]}</answer>")
    assert kinds == ["bridge", "comparison"]
    for worked in QA_EXAMPLES:
        assert mentioned(worked_text(worked)) == set()


def test_fingerprints_are_pinned(capsys: pytest.CaptureFixture[str]) -> None:
    for name in demo_hops.SPLITS:
        assert questions_fingerprint(split(name)) == FINGERPRINTS[name], name
    assert corpus_fingerprint(load_corpus("demo-hops")) == FINGERPRINTS["corpus"]
    assert main(["data", "demo-hops", "--split", "validation", "--show", "1"]) == 0
    out = capsys.readouterr().out
    for name in demo_hops.SPLITS:
        assert re.search(
            rf"\| {name} \| {demo_hops.SIZES[name]} \| .* {FINGERPRINTS[name]} \|", out
        )
    assert f"corpus: 1710 documents, sha256 {FINGERPRINTS['corpus']}" in out
    assert "| attribute 1-hop | bridge 2-hop | bridge 3-hop |" in out
    assert "demo-hops (validation): 250 examples" in out


def test_question_kinds_are_varied() -> None:
    """Every template of every stratum occurs in every split: the held-out splits ask what the
    training split teaches."""
    for name in demo_hops.SPLITS:
        used = Counter(
            (e.metadata["type"], e.metadata["hops"], e.metadata["template"]) for e in split(name)
        )
        for kind, hops in demo_hops.STRATA:
            for template in demo_hops.templates_of(kind, hops):
                assert used[(kind, hops, template.name)] > 0, (name, kind, hops, template.name)

"""Loaders for the real dataset formats, on small files written here in each format, and their
errors on malformed files (which must name the file, the line or record, and the field)."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
from pathlib import Path

import pytest

from swirl.cli import main
from swirl.corpus import Document, read_corpus, write_corpus
from swirl.data import (
    DataFormatError,
    add_data_arguments,
    detect_format,
    examples_from_args,
    load_corpus,
    load_examples,
)
from swirl.jsonl import write_jsonl
from swirl.schema import Example, SupportingFact

HOTPOT = [
    {
        "_id": "5a8b57f25542995d1e6f1371",
        "question": "Were Scott Derrickson and Ed Wood of the same nationality?",
        "answer": "yes",
        "supporting_facts": [["Scott Derrickson", 0], ["Ed Wood", 0]],
        "context": [
            ["Scott Derrickson", ["Scott Derrickson (born July 16, 1966) is an American director.", " He lives in Los Angeles."]],
            ["Ed Wood", ["Edward Davis Wood Jr. was an American filmmaker."]],
        ],
        "type": "comparison",
        "level": "hard",
    },
    {
        "_id": "5a8c7595554299585d9e36b6",
        "question": "What government position was held by the woman who portrayed Corliss Archer?",
        "answer": "Chief of Protocol",
        "supporting_facts": [["Kiss and Tell (1945 film)", 0], ["Shirley Temple", 1]],
        "context": [
            ["Kiss and Tell (1945 film)", ["Kiss and Tell is a 1945 film starring Shirley Temple."]],
            ["Shirley Temple", ["Shirley Temple was an actress.", " She was Chief of Protocol."]],
            ["Ed Wood", ["Edward Davis Wood Jr. was an American filmmaker."]],
        ],
        "type": "bridge",
        "level": "medium",
    },
]  # fmt: skip

MUSIQUE = [
    {
        "id": "2hop__13548_13529",
        "paragraphs": [
            {"idx": 0, "title": "Lionel Messi", "paragraph_text": "Messi plays for Inter Miami.", "is_supporting": True},
            {"idx": 1, "title": "Inter Miami", "paragraph_text": "Inter Miami was founded in 2018.", "is_supporting": True},
            {"idx": 2, "title": "Inter Miami", "paragraph_text": "Its stadium is in Fort Lauderdale.", "is_supporting": False},
        ],
        "question": "When was the club Messi plays for founded?",
        "question_decomposition": [
            {"id": 13548, "question": "Which club does Messi play for?", "answer": "Inter Miami", "paragraph_support_idx": 0},
            {"id": 13529, "question": "When was #1 founded?", "answer": "2018", "paragraph_support_idx": 1},
        ],
        "answer": "2018",
        "answer_aliases": ["in 2018", "2018"],
        "answerable": True,
    },
]  # fmt: skip

BEERQA = {
    "version": "1.0",
    "split": "dev",
    "data": [
        {
            "id": "b3d50a40b29d4283609de1d3f426",
            "src": "hotpotqa",
            "question": "Which genus contains more species, Ortegocactus or Eschscholzia?",
            "answers": ["Eschscholzia"],
            "context": [["Ortegocactus", "Ortegocactus is a genus with one species."], ["Eschscholzia", "Eschscholzia has 12 species."]],
        },
        {
            "id": "q2",
            "src": "squad",
            "question": "How many species does Eschscholzia have?",
            "answers": ["12", "twelve"],
            "context": [["Eschscholzia", "Eschscholzia has 12 species."]],
        },
    ],
}  # fmt: skip

# The official test file: the same wrapper, records without answers or context.
BEERQA_TEST = {
    "version": "1.0",
    "split": "test",
    "data": [
        {"id": "0b1a2c3d4e5f", "question": "Which genus of cactus has exactly one species?"},
        {"id": "6a7b8c9d0e1f", "question": "Who painted the ceiling of the Sistine Chapel?"},
    ],
}

COFCA = [
    {
        "id": "cf-1-2hop",
        "question": "Which river flows through the capital of Veltria?",
        "answer": "Orn",
        "passage": [["Veltria", "Veltria's capital is Mosk."], ["Mosk", "The Orn flows through Mosk."]],
        "sub_qa": [
            {"question": "What is the capital of Veltria?", "answer": "Mosk"},
            {"question": "Which river flows through Mosk?", "answer": "Orn"},
        ],
    },
    {"question": "Who founded Mosk?", "answers": ["Ada", "Ada Vel"], "passage": "Mosk was founded by Ada.", "title": "Mosk founding"},
]  # fmt: skip

GSM8K = [
    {
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
        "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
    },
    {"question": "Weng earns $12 an hour. How much does she earn for 50 minutes?", "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"},
]  # fmt: skip


def _write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, indent=1))
    return path


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_hotpotqa(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "hotpot_dev_distractor_v1.json", HOTPOT)
    assert detect_format(path) == "hotpotqa"
    examples = load_examples(path)
    assert [e.id for e in examples] == ["5a8b57f25542995d1e6f1371", "5a8c7595554299585d9e36b6"]
    first = examples[0]
    assert first.answers == ["yes"] and first.task == "qa" and first.dataset == "hotpotqa"
    assert first.supporting_facts == [
        SupportingFact("Scott Derrickson", 0, "Scott Derrickson"),
        SupportingFact("Ed Wood", 0, "Ed Wood"),
    ]
    assert first.metadata == {"type": "comparison", "level": "hard"}
    corpus = load_corpus(path)
    # "Ed Wood" appears in both records' contexts: one document
    assert [d.title for d in corpus] == [
        "Scott Derrickson",
        "Ed Wood",
        "Kiss and Tell (1945 film)",
        "Shirley Temple",
    ]
    assert (
        corpus[0].text
        == "Scott Derrickson (born July 16, 1966) is an American director. He lives in Los Angeles."
    )
    assert load_examples(path, limit=1) == examples[:1]


def test_hotpotqa_hub_columns_and_unanswered(tmp_path: Path) -> None:
    """The Hugging Face copy stores context and supporting facts column-wise; test records lack
    answers."""
    record = {
        "id": "abc",
        "question": "Q?",
        "answer": "A",
        "supporting_facts": {"title": ["T1", "T2"], "sent_id": [0, 2]},
        "context": {"title": ["T1", "T2"], "sentences": [["One."], ["Two.", " Three."]]},
    }
    unanswered = {"_id": "t1", "question": "Q2?", "context": [["T3", ["Four."]]]}
    path = _write_json(tmp_path / "hub.json", [record, unanswered])
    examples = load_examples(path, format="hotpotqa")
    assert examples[0].supporting_facts == [
        SupportingFact("T1", 0, "T1"),
        SupportingFact("T2", 2, "T2"),
    ]
    assert examples[1].answers == [] and examples[1].supporting_facts == []
    assert [d.text for d in load_corpus(path, format="hotpotqa")] == [
        "One.",
        "Two. Three.",
        "Four.",
    ]


def test_musique(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "musique_ans_v1.0_dev.jsonl", MUSIQUE)
    assert detect_format(path) == "musique"
    (example,) = load_examples(path)
    assert example.id == "2hop__13548_13529"
    assert example.answers == ["2018", "in 2018"]
    assert example.supporting_facts == [
        SupportingFact("Lionel Messi", 0, "Lionel Messi"),
        SupportingFact("Inter Miami", 0, "Inter Miami"),
    ]
    assert example.reference_steps == [
        "Which club does Messi play for? -> Inter Miami",
        "When was #1 founded? -> 2018",
    ]
    assert example.metadata == {"answerable": True}
    corpus = load_corpus(path)
    # two different paragraphs titled "Inter Miami" are two documents with distinct ids
    assert [(d.id, d.title) for d in corpus] == [
        ("Lionel Messi", "Lionel Messi"),
        ("Inter Miami", "Inter Miami"),
        ("Inter Miami#2", "Inter Miami"),
    ]


def test_supporting_facts_name_the_corpus_documents(tmp_path: Path) -> None:
    """Paragraphs that share a title are distinct corpus documents (``title``, ``title#2``, ...,
    numbered over the whole file); each supporting fact names its own."""
    second = {
        **MUSIQUE[0],
        "id": "2hop__1_2",
        "paragraphs": [
            {"idx": 0, "title": "Inter Miami", "paragraph_text": "Its stadium is in Fort Lauderdale.", "is_supporting": True},
            {"idx": 1, "title": "Inter Miami", "paragraph_text": "Inter Miami plays in MLS.", "is_supporting": True},
            {"idx": 2, "title": "Lionel Messi", "paragraph_text": "Messi plays for Inter Miami.", "is_supporting": False},
        ],
    }  # fmt: skip
    path = _write_jsonl(tmp_path / "musique_ans_v1.0_dev.jsonl", [MUSIQUE[0], second])
    first, example = load_examples(path)
    assert example.supporting_facts == [
        SupportingFact("Inter Miami", 0, "Inter Miami#2"),
        SupportingFact("Inter Miami", 0, "Inter Miami#3"),
    ]
    assert [f.document for f in first.supporting_facts] == ["Lionel Messi", "Inter Miami"]
    texts = {d.id: d.text for d in load_corpus(path)}
    supporting = [p for p in second["paragraphs"] if p["is_supporting"]]
    assert [texts[f.document] for f in example.supporting_facts] == [
        p["paragraph_text"] for p in supporting
    ]
    # BeerQA contexts repeat titles the same way
    beerqa = {
        "version": "1.0",
        "split": "dev",
        "data": [
            {**BEERQA["data"][0], "context": [["Eschscholzia", "Eschscholzia has 12 species."], ["Eschscholzia", "It is a poppy."]]},
        ],
    }  # fmt: skip
    beerqa_path = _write_json(tmp_path / "beerqa_dev_v1.0.json", beerqa)
    (example,) = load_examples(beerqa_path)
    assert [f.document for f in example.supporting_facts] == ["Eschscholzia", "Eschscholzia#2"]
    assert {d.id for d in load_corpus(beerqa_path)} == {"Eschscholzia", "Eschscholzia#2"}
    # HotPotQA: an article whose text differs in a later record is a second document
    edited = {**HOTPOT[1], "supporting_facts": [["Ed Wood", 0]], "context": [["Ed Wood", ["Ed Wood directed films."]]]}  # fmt: skip
    hotpot_path = _write_json(tmp_path / "hotpot.json", [HOTPOT[0], edited])
    assert load_examples(hotpot_path)[1].supporting_facts == [
        SupportingFact("Ed Wood", 0, "Ed Wood#2")
    ]
    assert load_corpus(hotpot_path)[-1].id == "Ed Wood#2"


def test_beerqa(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "beerqa_dev_v1.0.json", BEERQA)
    assert detect_format(path) == "beerqa"
    examples = load_examples(path)
    assert [e.answers for e in examples] == [["Eschscholzia"], ["12", "twelve"]]
    assert examples[0].supporting_facts == [
        SupportingFact("Ortegocactus", 0, "Ortegocactus"),
        SupportingFact("Eschscholzia", 0, "Eschscholzia"),
    ]
    assert examples[1].metadata == {"src": "squad"}
    assert [d.title for d in load_corpus(path)] == ["Ortegocactus", "Eschscholzia"]


def test_beerqa_test_file_is_detected_by_its_wrapper(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "beerqa_test_questions_v1.0.json", BEERQA_TEST)
    assert detect_format(path) == "beerqa"
    examples = load_examples(path)
    assert [(e.id, e.dataset, e.task) for e in examples] == [
        ("0b1a2c3d4e5f", "beerqa", "qa"),
        ("6a7b8c9d0e1f", "beerqa", "qa"),
    ]
    assert examples[1].question == "Who painted the ceiling of the Sistine Chapel?"
    assert all(e.answers == [] and e.supporting_facts == [] for e in examples)


def test_empty_corpus_is_refused_or_warned_naming_the_dataset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A test split without contexts has no documents: an error where search needs them, a
    warning where the file is only exported (``swirl data --corpus-out``)."""
    path = _write_json(tmp_path / "beerqa_test_questions_v1.0.json", BEERQA_TEST)
    named = (
        r"beerqa_test_questions_v1\.0\.json: no documents to search: "
        r"its beerqa records have no context paragraphs"
    )
    with pytest.raises(DataFormatError, match=named):
        load_corpus(path)
    with caplog.at_level(logging.WARNING, logger="swirl.data"):
        assert load_corpus(path, allow_empty=True) == []
        assert re.search(named, caplog.text)
        caplog.clear()
        corpus = tmp_path / "corpus.jsonl"
        assert main(["data", "--data", str(path), "--corpus-out", str(corpus)]) == 0
        assert "wrote 0 documents" in capsys.readouterr().out
        assert re.search(named, caplog.text)
    index = tmp_path / "index"
    assert main(["index", "--data", str(path), "--out", str(index)]) == 2
    assert re.search(named, capsys.readouterr().err)
    assert main(["index", "--corpus", str(corpus), "--out", str(index)]) == 2
    assert f"{corpus}: no documents (an empty corpus file)" in capsys.readouterr().err
    assert not index.exists()
    # HotPotQA test records without context: the same
    hotpot = _write_json(tmp_path / "hotpot_test.json", [{"_id": "t1", "question": "Q?"}])
    with pytest.raises(DataFormatError, match=r"hotpot_test\.json: no documents to search"):
        load_corpus(hotpot)


def test_cofca_assumed_format(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "cofca.json", COFCA)
    assert detect_format(path) == "cofca"
    first, second = load_examples(path)
    assert first.id == "cf-1-2hop" and first.answers == ["Orn"]
    assert first.supporting_facts == [
        SupportingFact("Veltria", 0, "Veltria"),
        SupportingFact("Mosk", 0, "Mosk"),
    ]
    assert first.reference_steps == [
        "What is the capital of Veltria? -> Mosk",
        "Which river flows through Mosk? -> Orn",
    ]
    assert second.id == "cofca-1" and second.answers == ["Ada", "Ada Vel"]
    assert second.supporting_facts == [SupportingFact("Mosk founding", 0, "Mosk founding")]
    assert [d.title for d in load_corpus(path)] == ["Veltria", "Mosk", "Mosk founding"]
    # the {"data": [...]} wrapper and JSONL hold the same records
    assert load_examples(
        _write_json(tmp_path / "wrapped.json", {"data": COFCA}), format="cofca"
    ) == [first, second]


def test_gsm8k(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "gsm8k_test.jsonl", GSM8K)
    assert detect_format(path) == "gsm8k"
    first, second = load_examples(path)
    assert first.id == "gsm8k-" + hashlib.sha256(GSM8K[0]["question"].encode()).hexdigest()[:12]
    assert second.id.startswith("gsm8k-") and second.id != first.id
    assert first.task == "math" and first.answers == ["72"]
    assert first.reference_steps == ["48/2=24", "48+24=72"]
    assert second.reference_steps == ["12/60=0.2", "0.2*50=10"]
    with pytest.raises(ValueError, match="no documents"):
        load_corpus(path)


def test_gsm8k_ids_come_from_the_question_not_the_file(tmp_path: Path) -> None:
    """Renaming or reordering a file keeps every id (resume and joins key on them); a repeated
    question gets a numbered id in reading order."""
    ids = {e.question: e.id for e in load_examples(_write_jsonl(tmp_path / "test.jsonl", GSM8K))}
    renamed = load_examples(_write_jsonl(tmp_path / "gsm8k_main_test.jsonl", GSM8K[::-1]))
    assert {e.question: e.id for e in renamed} == ids
    repeated = load_examples(_write_jsonl(tmp_path / "repeated.jsonl", [GSM8K[1], *GSM8K]))
    first = ids[GSM8K[1]["question"]]
    assert [e.id for e in repeated] == [first, ids[GSM8K[0]["question"]], f"{first}-2"]
    # a record's own id wins
    own = load_examples(_write_jsonl(tmp_path / "own.jsonl", [{**GSM8K[0], "id": "q7"}]))
    assert own[0].id == "q7"


def test_swirl_examples_and_corpus_files(tmp_path: Path) -> None:
    examples = [Example(id="e1", question="Q?", answers=["A"], dataset="mine")]
    write_jsonl(tmp_path / "examples.jsonl", examples)
    assert detect_format(tmp_path / "examples.jsonl") == "examples"
    assert load_examples(tmp_path / "examples.jsonl") == examples
    documents = [Document(id="d1", title="T", text="body")]
    write_corpus(tmp_path / "corpus.jsonl", documents)
    assert detect_format(tmp_path / "corpus.jsonl") == "corpus"
    assert load_corpus(tmp_path / "corpus.jsonl") == documents
    with pytest.raises(ValueError, match="is a corpus"):
        load_examples(tmp_path / "corpus.jsonl")


def test_command_line_convention(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    path = _write_jsonl(tmp_path / "g.jsonl", GSM8K)
    args = parser.parse_args(["--data", str(path), "--data-format", "gsm8k"])
    assert [e.answers for e in examples_from_args(args, limit=1)] == [["72"]]
    args = parser.parse_args(["--data", "demo-math", "--split", "test"])
    assert len(examples_from_args(args, limit=3)) == 3


def test_data_command_exports_examples_and_corpus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, corpus = tmp_path / "qa.jsonl", tmp_path / "corpus.jsonl"
    argv = ["data", "--data", "demo-qa", "--split", "test", "--limit", "7", "--out", str(out)]
    assert main([*argv, "--corpus-out", str(corpus), "--show", "2"]) == 0
    printed = capsys.readouterr().out
    assert "\ndemo-qa (test): 7 examples, task qa" in printed
    # a built-in dataset's every split first: size per stratum and fingerprint
    assert printed.startswith("demo-qa (seed 0): questions per stratum and fingerprint per split")
    assert "| test | 7 | " in printed and "corpus: 281 documents, sha256 " in printed
    assert "wrote 7 examples" in printed and "wrote 281 documents" in printed
    assert load_examples(out) == load_examples("demo-qa", split="test", limit=7)
    assert read_corpus(corpus) == load_corpus("demo-qa")
    assert main(["data", "--data", str(tmp_path / "nope.json")]) == 2
    assert "not a dataset name" in capsys.readouterr().err


# --- malformed files -------------------------------------------------------------------------


def test_invalid_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GSM8K[0]) + "\n" + '{"question": "x", "answer": \n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: invalid JSON"):
        load_examples(path, format="gsm8k")


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"_id": "a",\n   "question": "q" "answer": "x"}\n]')
    with pytest.raises(DataFormatError, match=r"bad\.json:3:\d+: invalid JSON"):
        load_examples(path, format="hotpotqa")


@pytest.mark.parametrize(
    ("records", "pattern"),
    [
        ([{**HOTPOT[0], "supporting_facts": "Scott Derrickson"}], r"record 0 \(_id '5a8b57f25542995d1e6f1371'\): field 'supporting_facts': expected"),
        ([HOTPOT[0], {**HOTPOT[1], "supporting_facts": [["Shirley Temple", "one"]]}], r"record 1 \(_id '5a8c7595554299585d9e36b6'\): field 'supporting_facts': expected a list of \[title, sentence index\] pairs"),
        ([{k: v for k, v in HOTPOT[0].items() if k != "question"}], r"record 0 .*field 'question': missing"),
        ([{**HOTPOT[0], "question": 7}], r"field 'question': expected str, got int"),
        ([{**HOTPOT[0], "context": [["Ed Wood", "not a list"]]}], r"field 'context': expected \[title, \[sentence, ...\]\] entries"),
        (["just a string"], r"record 0: expected an object, got str"),
    ],
)  # fmt: skip
def test_malformed_hotpotqa_records(tmp_path: Path, records: list, pattern: str) -> None:
    path = _write_json(tmp_path / "h.json", records)
    with pytest.raises(DataFormatError, match=pattern):
        load_examples(path, format="hotpotqa")
        load_corpus(path, format="hotpotqa")


@pytest.mark.parametrize(
    ("kind", "name", "content", "pattern"),
    [
        ("gsm8k", "g.jsonl", [{"question": "q", "answer": "no final line"}], r"g\.jsonl:1: field 'answer': no final '#### <answer>' line"),
        ("gsm8k", "g.jsonl", [{"question": "q"}], r"g\.jsonl:1: field 'answer': missing"),
        ("musique", "m.jsonl", [{**MUSIQUE[0], "answer_aliases": [1]}], r"m\.jsonl:1 \(id '2hop__13548_13529'\): field 'answer_aliases': expected a list of strings"),
        ("musique", "m.jsonl", [{**MUSIQUE[0], "paragraphs": [{"title": "x"}]}], r"field 'paragraphs': expected objects with 'title' and 'paragraph_text'"),
        ("musique", "m.jsonl", [{**MUSIQUE[0], "question_decomposition": [{"question": "q"}]}], r"field 'question_decomposition': expected objects"),
        ("beerqa", "b.json", {"version": "1"}, r"b\.json: expected a top-level field 'data'"),
        ("beerqa", "b.json", {"data": [{**BEERQA["data"][0], "context": [["t"]]}]}, r"b\.json: record 0 \(id 'b3d50a40b29d4283609de1d3f426'\): field 'context': expected a list of \[title, paragraph\] pairs"),
        ("beerqa", "b.json", {"data": [{**BEERQA["data"][0], "answers": "x"}]}, r"field 'answers': expected list, got str"),
        ("cofca", "c.json", [{"question": "q", "answer": "a"}], r"c\.json: record 0: field 'passage': missing \(a 'context' field is accepted too\)"),
        ("cofca", "c.json", [{"question": "q", "answer": "a", "passage": [3]}], r"field 'passage': expected a string"),
        ("cofca", "c.json", [{"question": "q", "answer": "a", "passage": "p", "sub_qa": ["x"]}], r"field 'sub_qa': expected objects"),
        ("hotpotqa", "h.json", {"not": "a list"}, r"h\.json: expected a list of records, got object"),
    ],
)  # fmt: skip
def test_malformed_files_name_the_problem(
    tmp_path: Path, kind: str, name: str, content: object, pattern: str
) -> None:
    path = tmp_path / name
    if name.endswith(".jsonl"):
        _write_jsonl(path, content)  # type: ignore[arg-type]
    else:
        _write_json(path, content)
    with pytest.raises(DataFormatError, match=pattern):
        load_examples(path, format=kind)


def test_undetectable_and_missing_files(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "odd.jsonl", [{"foo": 1, "bar": 2}])
    with pytest.raises(
        DataFormatError,
        match=r"odd\.jsonl: cannot tell the dataset format \(fields seen: bar, foo\)",
    ):
        load_examples(path)
    with pytest.raises(DataFormatError, match=r"expected a \.json or \.jsonl file"):
        detect_format(_write_json(tmp_path / "data.txt", []))
    with pytest.raises(FileNotFoundError, match="not a dataset name"):
        load_examples(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="unknown dataset format 'parquet'"):
        load_examples(path, format="parquet")
    with pytest.raises(
        ValueError, match=r"demo-math: no 'validation' split \(it has train, test\)"
    ):
        load_examples("demo-math", split="validation")
    with pytest.raises(ValueError, match=r"demo-qa: no 'dev' split"):
        load_examples("demo-qa", split="dev")


def test_hub_names_fail_clearly_offline() -> None:
    """No hub here: the message says what to do instead (install datasets, or pass a file)."""
    with pytest.raises(ValueError, match=r"gsm8k: .*(datasets|download the file)"):
        load_examples("gsm8k", limit=1)

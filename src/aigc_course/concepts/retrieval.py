"""Knowledge graphs and TF-IDF retrieval.

Taught in notebook 2.6 "Knowledge graphs, retrieval and a concept map"
(notebooks/02_concepts/06_knowledge_and_retrieval.ipynb).

* :class:`TripleStore`: facts as (subject, relation, object) triples with pattern queries
  (``None`` is a wildcard), neighbours and two-hop paths (Hogan et al. 2021, "Knowledge Graphs").
* :class:`TfidfRetriever`: a bag-of-words retriever, tf-idf weights and cosine similarity,
  the sparse ancestor of the dense retrievers used by RAG (Lewis et al. 2020).
* :func:`recall_at_k`: the fraction of relevant documents found in the top k.

The graphs are drawn with :mod:`aigc_course.concepts.graphs`.
"""

from __future__ import annotations

import re
from collections import Counter

import torch

# ----------------------------------------------------------------------------- knowledge graph


class TripleStore:
    """A tiny in-memory knowledge graph: a set of (subject, relation, object) string triples.

    >>> kg = TripleStore([("GPT-3", "is_a", "language model")])
    >>> kg.query(r="is_a")
    [('GPT-3', 'is_a', 'language model')]
    """

    def __init__(self, triples=()):
        self.triples: list[tuple[str, str, str]] = []
        self._seen: set[tuple[str, str, str]] = set()
        for t in triples:
            self.add(t)

    def add(self, *triple) -> bool:
        """Add one fact, ``add(s, r, o)`` or ``add((s, r, o))``; returns False for a duplicate."""
        if len(triple) == 1 and isinstance(triple[0], (tuple, list)):
            triple = tuple(triple[0])
        if len(triple) != 3:
            raise ValueError(f"A triple is (subject, relation, object): got {len(triple)} "
                             f"element(s) {triple!r}.")
        if not all(isinstance(x, str) and x for x in triple):
            raise TypeError(f"Triple elements must be non-empty strings, got {triple!r}.")
        if triple in self._seen:
            return False
        self._seen.add(triple)
        self.triples.append(triple)
        return True

    def __len__(self) -> int:
        return len(self.triples)

    def __iter__(self):
        return iter(self.triples)

    def __contains__(self, triple) -> bool:
        return tuple(triple) in self._seen

    def query(self, s: str | None = None, r: str | None = None, o: str | None = None):
        """All triples matching the pattern, in insertion order; ``None`` matches anything."""
        return [t for t in self.triples
                if (s is None or t[0] == s) and (r is None or t[1] == r) and (o is None or t[2] == o)]

    def entities(self) -> list[str]:
        """Every subject and object, in order of first appearance."""
        return list(dict.fromkeys(x for s, _, o in self.triples for x in (s, o)))

    def relations(self) -> list[str]:
        return list(dict.fromkeys(r for _, r, _ in self.triples))

    def neighbours(self, node: str) -> list[tuple[str, str, str]]:
        """Edges touching ``node`` as (relation, other node, direction) with direction 'out'/'in'."""
        out = [(r, o, "out") for s, r, o in self.triples if s == node]
        inc = [(r, s, "in") for s, r, o in self.triples if o == node]
        return out + inc

    def two_hop(self, s: str, r1: str | None = None, r2: str | None = None):
        """Paths s -r1-> x -r2-> y as tuples (s, r1, x, r2, y); ``None`` relations match anything."""
        return [(s, ra, x, rb, y)
                for _, ra, x in self.query(s=s, r=r1)
                for _, rb, y in self.query(s=x, r=r2)]


# ----------------------------------------------------------------------------- retrieval

_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-case words; hyphenated names stay whole ("GPT-3" -> "gpt-3")."""
    return _TOKEN.findall(text.lower())


class TfidfRetriever:
    """Rank documents by the cosine similarity of their tf-idf vectors to the query's.

    Step 1, term frequency: tf(t, d) = count of term t in document d.
    Step 2, inverse document frequency (smoothed, as in scikit-learn):
        idf(t) = ln((1 + N) / (1 + df(t))) + 1, with N documents and df(t) of them containing t.
    Step 3, each vector tf * idf is scaled to unit length, so a dot product is a cosine.
    ``use_idf=False`` gives plain bag-of-words (every idf = 1). Words absent from the fitted
    vocabulary are ignored in queries.
    """

    def __init__(self, use_idf: bool = True, stop_words=()):
        self.use_idf = use_idf
        self.stop_words = set(stop_words)
        self.vocab: dict[str, int] | None = None
        self.idf: torch.Tensor | None = None
        self.doc_vectors: torch.Tensor | None = None

    def _tokens(self, text: str) -> list[str]:
        if not isinstance(text, str):
            raise TypeError(f"Documents and queries must be strings, got {type(text).__name__}.")
        return [w for w in tokenize(text) if w not in self.stop_words]

    def fit(self, docs) -> TfidfRetriever:
        """Build the vocabulary, the idf weights and the (N, V) matrix of unit document vectors."""
        docs = list(docs)
        if not docs:
            raise ValueError("fit needs at least one document.")
        tokens = [self._tokens(d) for d in docs]
        self.vocab = {w: i for i, w in enumerate(sorted({w for ts in tokens for w in ts}))}
        df = torch.zeros(len(self.vocab))
        for ts in tokens:
            for w in set(ts):
                df[self.vocab[w]] += 1
        n = len(docs)
        self.idf = torch.log((1 + n) / (1 + df)) + 1 if self.use_idf else torch.ones_like(df)
        self.doc_vectors = torch.stack([self._vector(ts) for ts in tokens])  # (N, V)
        return self

    def _vector(self, tokens) -> torch.Tensor:
        v = torch.zeros(len(self.vocab))
        for w, c in Counter(tokens).items():
            if w in self.vocab:
                v[self.vocab[w]] = c
        v = v * self.idf
        norm = v.norm()
        return v / norm if norm > 0 else v

    def _check_fitted(self) -> None:
        if self.doc_vectors is None:
            raise RuntimeError("TfidfRetriever is not fitted: call fit(docs) before transform/search.")

    def transform(self, texts) -> torch.Tensor:
        """Unit tf-idf vectors (len(texts), V) in the fitted vocabulary."""
        self._check_fitted()
        if isinstance(texts, str):
            texts = [texts]
        return torch.stack([self._vector(self._tokens(t)) for t in texts])

    def search(self, query: str, k: int = 5):
        """The k best documents: (indices (k,) long, cosine scores (k,) float), best first."""
        self._check_fitted()
        if not isinstance(query, str):
            raise TypeError(f"The query must be a string, got {type(query).__name__}.")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        scores = self.doc_vectors @ self.transform(query)[0]  # (N,)
        k = min(k, len(scores))
        # a stable sort: equal scores keep document order, so results are deterministic
        order = torch.sort(scores, descending=True, stable=True).indices[:k]
        return order, scores[order]


def recall_at_k(retrieved, relevant, k: int) -> float:
    """Mean over queries of |relevant ∩ top-k retrieved| / |relevant|.

    ``retrieved``: one ranked sequence of document indices per query; ``relevant``: one
    collection of relevant indices per query (non-empty).
    """
    retrieved, relevant = list(retrieved), list(relevant)
    if len(retrieved) != len(relevant):
        raise ValueError(f"{len(retrieved)} rankings but {len(relevant)} relevance sets.")
    if not retrieved:
        raise ValueError("recall_at_k needs at least one query.")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    total = 0.0
    for ranking, rel in zip(retrieved, relevant):
        rel = {int(i) for i in rel}
        if not rel:
            raise ValueError("Each query needs at least one relevant document.")
        top = {int(i) for i in list(ranking)[:k]}
        total += len(top & rel) / len(rel)
    return total / len(retrieved)

"""Tests for aigc_course.concepts.retrieval (notebook 2.6, knowledge graphs and retrieval)."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from aigc_course.concepts.graphs import circular_layout, draw_graph, layered_layout, spring_layout
from aigc_course.concepts.retrieval import TfidfRetriever, TripleStore, recall_at_k, tokenize

FACTS = [
    ("GPT-3", "is_a", "language model"),
    ("BERT", "is_a", "language model"),
    ("language model", "is_a", "generative model"),
    ("GPT-3", "based_on", "Transformer"),
    ("BERT", "based_on", "Transformer"),
    ("Transformer", "introduced_in", "2017"),
]


@pytest.fixture
def kg():
    return TripleStore(FACTS)


def test_add_and_duplicates(kg):
    assert len(kg) == 6
    assert kg.add("GPT-3", "is_a", "language model") is False
    assert kg.add(("DDPM", "is_a", "diffusion model")) is True
    assert ("DDPM", "is_a", "diffusion model") in kg and len(kg) == 7


def test_query_patterns(kg):
    assert kg.query() == FACTS
    assert kg.query(s="GPT-3") == [FACTS[0], FACTS[3]]
    assert kg.query(r="based_on", o="Transformer") == [FACTS[3], FACTS[4]]
    assert kg.query(s="BERT", r="is_a", o="language model") == [FACTS[1]]
    assert kg.query(s="nobody") == []


def test_neighbours_and_two_hop(kg):
    assert kg.neighbours("Transformer") == [
        ("introduced_in", "2017", "out"), ("based_on", "GPT-3", "in"), ("based_on", "BERT", "in")]
    assert kg.two_hop("GPT-3", "is_a", "is_a") == [
        ("GPT-3", "is_a", "language model", "is_a", "generative model")]
    assert kg.two_hop("GPT-3", "based_on") == [
        ("GPT-3", "based_on", "Transformer", "introduced_in", "2017")]
    assert set(kg.entities()) >= {"GPT-3", "2017"} and kg.relations()[0] == "is_a"


def test_bad_triples():
    kg = TripleStore()
    with pytest.raises(ValueError, match="subject, relation, object"):
        kg.add("GPT-3", "is_a")
    with pytest.raises(ValueError, match="subject, relation, object"):
        TripleStore([("a", "b", "c", "d")])
    with pytest.raises(TypeError, match="non-empty strings"):
        kg.add("GPT-3", "introduced_in", 2020)


def test_tokenize():
    assert tokenize("GPT-3 is a Language model.") == ["gpt-3", "is", "a", "language", "model"]


def test_tfidf_matches_hand_computation():
    docs = ["the cat sat", "the dog ran", "a cat and a dog"]
    r = TfidfRetriever().fit(docs)
    assert list(r.vocab) == ["a", "and", "cat", "dog", "ran", "sat", "the"]
    # idf = ln((1 + 3) / (1 + df)) + 1: df(a) = 1, df(cat) = 2
    idf_a, idf_cat = math.log(4 / 2) + 1, math.log(4 / 3) + 1
    torch.testing.assert_close(r.idf[r.vocab["a"]], torch.tensor(idf_a))
    torch.testing.assert_close(r.idf[r.vocab["cat"]], torch.tensor(idf_cat))
    # document 2: tf(a) = 2, tf(and) = 1, tf(cat) = 1, tf(dog) = 1, then unit length
    raw = torch.tensor([2 * idf_a, idf_a, idf_cat, idf_cat, 0, 0, 0])
    torch.testing.assert_close(r.doc_vectors[2], raw / raw.norm())
    torch.testing.assert_close(r.doc_vectors.norm(dim=1), torch.ones(3))


def test_bag_of_words_without_idf():
    r = TfidfRetriever(use_idf=False).fit(["b a a", "b"])
    torch.testing.assert_close(r.doc_vectors[0], torch.tensor([2.0, 1.0]) / math.sqrt(5))


def test_search_ranks_exact_match_first():
    docs = ["GPT-3 was developed by OpenAI.", "BERT was developed by Google.",
            "The Transformer was introduced in 2017.", "DDPM is a diffusion model."]
    r = TfidfRetriever().fit(docs)
    for i, d in enumerate(docs):
        idx, scores = r.search(d, k=2)
        assert idx[0].item() == i
        torch.testing.assert_close(scores[0], torch.tensor(1.0))
        assert scores[0] >= scores[1]
    idx, scores = r.search("completely unrelated words", k=10)
    assert len(idx) == 4 and torch.all(scores == 0)


def test_search_errors():
    r = TfidfRetriever()
    with pytest.raises(RuntimeError, match="not fitted"):
        r.search("anything")
    with pytest.raises(ValueError, match="at least one document"):
        r.fit([])
    r.fit(["one doc"])
    with pytest.raises(ValueError, match="k must be"):
        r.search("doc", k=0)
    with pytest.raises(TypeError, match="string"):
        r.search(3)


def test_recall_at_k():
    retrieved = [[0, 1, 2], [2, 0, 1]]
    relevant = [{1}, {0, 1}]
    assert recall_at_k(retrieved, relevant, 1) == pytest.approx((0 + 0) / 2)
    assert recall_at_k(retrieved, relevant, 2) == pytest.approx((1 + 0.5) / 2)
    assert recall_at_k(retrieved, relevant, 3) == pytest.approx(1.0)
    assert recall_at_k([torch.tensor([1, 0])], [[1]], 1) == 1.0
    with pytest.raises(ValueError):
        recall_at_k(retrieved, relevant[:1], 1)
    with pytest.raises(ValueError):
        recall_at_k([[0]], [set()], 1)


def test_layouts():
    nodes = ["a", "b", "c", "d"]
    edges = [("a", None, "b"), ("b", None, "c"), ("a", None, "d")]
    for pos in (circular_layout(nodes), spring_layout(nodes, edges, seed=1)):
        xy = np.stack([pos[v] for v in nodes])
        assert xy.shape == (4, 2) and np.abs(xy).max() <= 1 + 1e-9
    p1, p2 = spring_layout(nodes, edges, seed=3), spring_layout(nodes, edges, seed=3)
    assert all(np.allclose(p1[v], p2[v]) for v in nodes)
    lay = layered_layout(nodes, edges)
    assert lay["a"][0] == 0 and lay["b"][0] == 1 and lay["c"][0] == 2
    with pytest.raises(ValueError, match="acyclic"):
        layered_layout(["x", "y"], [("x", None, "y"), ("y", None, "x")])


@pytest.mark.parametrize("layout", ["spring", "circular", "layered", "dict"])
def test_draw_graph_labels(kg, layout):
    if layout == "dict":
        layout = {v: (i, i % 2) for i, v in enumerate(kg.entities())}
    ax = draw_graph(kg, layout=layout)
    labels = sorted(t.get_text() for t in ax.texts if (t.get_gid() or "").startswith("node:"))
    assert labels == sorted(kg.entities())
    edge_labels = [t.get_text() for t in ax.texts if not t.get_gid()]
    assert len(edge_labels) == len(kg) and "is a" in edge_labels
    ax.figure.canvas.draw()  # arrows clipped to boxes must render without error
    plt.close(ax.figure)


def test_draw_graph_pairs_and_errors():
    ax = draw_graph([("AIGC", "deep learning"), ("deep learning", "NLP")], layout="layered")
    assert sum((t.get_gid() or "").startswith("node:") for t in ax.texts) == 3
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="edge"):
        draw_graph([("a", "b", "c", "d")])
    with pytest.raises(ValueError, match="layout"):
        draw_graph([("a", "b")], layout="radial")
    with pytest.raises(ValueError, match="no position"):
        draw_graph([("a", "b")], layout={"a": (0, 0)})
    with pytest.raises(ValueError, match="at least one edge"):
        draw_graph([])

"""Drawing a directed graph with matplotlib alone: a knowledge graph, a concept map, a pipeline.

Taught in chapter 2.6 ("Knowledge graphs, retrieval and a concept map"), which draws the triples
of :class:`aigc_course.concepts.retrieval.TripleStore`; chapter 1.1 and later chapters reuse it
for diagrams. :func:`draw_graph` takes edges as (u, v) pairs or (u, relation, v) triples and a
spring (force-directed, Fruchterman & Reingold 1991), circular or layered layout, or your own
positions; labels are pushed apart so that they stay readable.
"""

from __future__ import annotations

import math
from collections import defaultdict

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch

from aigc_course.plotting import PALETTE


def _edge_list(edges):
    """Edges as (u, label or None, v); accepts (u, v) pairs and (u, relation, v) triples."""
    out = []
    for e in edges:
        e = tuple(e)
        if len(e) == 2:
            out.append((str(e[0]), None, str(e[1])))
        elif len(e) == 3:
            out.append((str(e[0]), None if e[1] is None else str(e[1]), str(e[2])))
        else:
            raise ValueError(f"An edge is (u, v) or (u, label, v), got {e!r}.")
    return out


def circular_layout(nodes) -> dict[str, np.ndarray]:
    """Nodes evenly spaced on the unit circle, the first at the top."""
    n = len(nodes)
    return {v: np.array([math.sin(2 * math.pi * i / n), math.cos(2 * math.pi * i / n)])
            for i, v in enumerate(nodes)}


def _graph_distances(nodes, edges) -> np.ndarray:
    """All-pairs shortest path lengths (n, n), edges taken as undirected (breadth-first search)."""
    index = {v: i for i, v in enumerate(nodes)}
    adj = defaultdict(set)
    for u, _, v in edges:
        adj[index[u]].add(index[v])
        adj[index[v]].add(index[u])
    n = len(nodes)
    dist = np.full((n, n), np.inf)
    for src in range(n):
        dist[src, src], frontier = 0, [src]
        while frontier:
            nxt = [j for i in frontier for j in adj[i] if dist[src, j] == np.inf]
            for j in nxt:
                dist[src, j] = dist[src, frontier[0]] + 1
            frontier = list(dict.fromkeys(nxt))
    finite = dist[np.isfinite(dist)]
    dist[~np.isfinite(dist)] = finite.max() + 1  # separate components sit one step apart
    return dist


def spring_layout(nodes, edges, iterations: int = 300, seed: int = 0) -> dict[str, np.ndarray]:
    """A spring model (Kamada & Kawai 1989): every pair of nodes is joined by a spring whose rest
    length is their graph distance d_ij, and the layout minimises the stress
    sum_ij (|x_i - x_j| - d_ij)^2 / d_ij^2, by stress majorisation (Gansner et al. 2004):
        x_i <- sum_j w_ij (x_j + d_ij (x_i - x_j) / |x_i - x_j|) / sum_j w_ij,  w_ij = d_ij^-2.
    Returns positions scaled into [-1, 1]^2; deterministic for a given ``seed``.
    """
    n = len(nodes)
    if n == 1:
        return {nodes[0]: np.zeros(2)}
    d = _graph_distances(nodes, _edge_list(edges))  # (n, n)
    w = np.where(d > 0, 1.0 / np.maximum(d, 1e-9) ** 2, 0.0)  # (n, n), zero on the diagonal
    x = np.random.default_rng(seed).normal(size=(n, 2))  # (n, 2)
    for _ in range(iterations):
        delta = x[:, None, :] - x[None, :, :]  # (n, n, 2): x_i - x_j
        norm = np.linalg.norm(delta, axis=-1, keepdims=True).clip(min=1e-9)
        target = x[None, :, :] + d[..., None] * delta / norm  # where j's spring wants i
        x = (w[..., None] * target).sum(1) / w.sum(1, keepdims=True)
    x -= x.mean(0)
    x /= np.abs(x).max()
    return {v: x[i] for i, v in enumerate(nodes)}


def layered_layout(nodes, edges, direction: str = "LR") -> dict[str, np.ndarray]:
    """Hierarchy: a node's layer is the longest path to it from a root; within a layer nodes are
    ordered by the mean position of their parents (fewer crossings). ``direction`` 'LR' or 'TB'.
    """
    parents = defaultdict(list)
    for u, _, v in _edge_list(edges):
        parents[v].append(u)
    layer: dict[str, int] = {}

    def depth(v, stack=()):
        if v in stack:
            raise ValueError(f"layered layout needs an acyclic graph; {v!r} is on a cycle.")
        if v not in layer:
            layer[v] = max((depth(p, stack + (v,)) + 1 for p in parents[v]), default=0)
        return layer[v]

    for v in nodes:
        depth(v)
    pos: dict[str, np.ndarray] = {}
    for L in range(max(layer.values()) + 1):
        members = [v for v in nodes if layer[v] == L]
        if L > 0:
            members.sort(key=lambda v: -np.mean([pos[p][1] for p in parents[v]] or [0.0]))
        for i, v in enumerate(members):
            pos[v] = np.array([float(L), (len(members) - 1) / 2 - i])  # first member on top
    if direction == "TB":
        return {v: np.array([-p[1], -p[0]]) for v, p in pos.items()}
    if direction != "LR":
        raise ValueError(f"direction must be 'LR' or 'TB', got {direction!r}.")
    return pos


def _limits(pos, margin: float = 0.12):
    xy = np.stack(list(pos.values()))
    span = np.ptp(xy, axis=0).clip(min=1.0)
    return xy.min(0) - margin * span, xy.max(0) + margin * span


def _separate_labels(pos, ax, font_size: float, iterations: int = 200):
    """Nudge nodes apart until their label boxes (estimated from the text length) do not overlap.

    Layouts treat nodes as points, but labels are wide; each overlapping pair is pushed apart
    along the axis where the overlap is smaller, half each, with the axes' data-per-pixel scale.
    """
    pos = {v: p.astype(float).copy() for v, p in pos.items()}
    names = list(pos)
    box = ax.get_window_extent()  # the axes in pixels
    px_per_pt = ax.figure.dpi / 72
    # (n, 2) label size in pixels: about 0.6 em per character, 1.3 em per line, plus padding
    # plus a gap of about 4 em across and 3 em down, so that short edges and their labels show
    size = np.array([[0.6 * font_size * max(map(len, v.split("\n"))) + 4.0 * font_size,
                      1.3 * font_size * (v.count("\n") + 1) + 3.0 * font_size] for v in names]) * px_per_pt
    for _ in range(iterations):
        lo, hi = _limits(pos)
        scale = (hi - lo) / np.array([box.width, box.height])  # data units per pixel
        half = size * scale / 2  # (n, 2) half sizes in data units
        xy = np.stack([pos[v] for v in names])
        moved = False
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                d = xy[i] - xy[j]
                overlap = half[i] + half[j] - np.abs(d)
                if (overlap > 0).all():
                    axis = int(np.argmin(overlap / (half[i] + half[j])))
                    sign = np.sign(d[axis]) or (1.0 if i < j else -1.0)
                    step = sign * (overlap[axis] / 2 + 1e-3)
                    xy[i, axis] += step
                    xy[j, axis] -= step
                    moved = True
        pos = {v: xy[k] for k, v in enumerate(names)}
        if not moved:
            break
    return pos


def draw_graph(edges, ax=None, layout="spring", node_color=None, edge_labels: bool = True,
               font_size: float = 9, title: str | None = None, seed: int = 0, figsize=(8, 6)):
    """Draw a directed graph: nodes are labelled boxes, edges arrows (with relation labels).

    ``edges``: (u, v) pairs or (u, relation, v) triples (a :class:`TripleStore` works).
    ``layout``: 'spring', 'circular', 'layered' (left to right) or a dict node -> (x, y).
    ``node_color``: one colour, or a dict node -> colour (missing nodes get the first palette
    colour). Returns the axes; node labels are Text artists with gid ``"node:<name>"``.
    """
    edges = _edge_list(edges)
    if not edges:
        raise ValueError("draw_graph needs at least one edge.")
    nodes = list(dict.fromkeys(x for u, _, v in edges for x in (u, v)))
    if isinstance(layout, dict):
        missing = [v for v in nodes if v not in layout]
        if missing:
            raise ValueError(f"layout has no position for node(s) {missing}.")
        pos = {v: np.asarray(layout[v], dtype=float) for v in nodes}
    elif layout == "spring":
        pos = spring_layout(nodes, edges, seed=seed)
    elif layout == "circular":
        pos = circular_layout(nodes)
    elif layout == "layered":
        pos = layered_layout(nodes, edges)
    else:
        raise ValueError(f"layout must be 'spring', 'circular', 'layered' or a dict, got {layout!r}.")

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    if not isinstance(layout, dict):
        pos = _separate_labels(pos, ax, font_size)
    lo, hi = _limits(pos)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_axis_off()

    # Node boxes are drawn first (zorder 2) so that their outlines are known when the arrows
    # (zorder 3) are clipped to them: each arrow then runs from box edge to box edge.
    boxes = {}
    for v in nodes:
        color = node_color.get(v, PALETTE[0]) if isinstance(node_color, dict) else (node_color or PALETTE[0])
        t = ax.text(*pos[v], v, ha="center", va="center", fontsize=font_size, zorder=2, gid=f"node:{v}",
                    bbox=dict(boxstyle="round,pad=0.35", fc="white", ec=color, lw=1.6))
        boxes[v] = t.get_bbox_patch()
    for u, label, v in edges:
        arrow = FancyArrowPatch(pos[u], pos[v], arrowstyle="-|>", mutation_scale=11, color="0.45",
                                lw=1.0, patchA=boxes[u], patchB=boxes[v], shrinkA=1, shrinkB=1,
                                zorder=3)
        ax.add_patch(arrow)
        if label and edge_labels:
            mid = (pos[u] + pos[v]) / 2
            ax.text(*mid, label.replace("_", " "), ha="center", va="center", fontsize=font_size - 2,
                    color="0.3", zorder=4, bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none",
                                                     alpha=0.8))
    if title:
        ax.set_title(title)
    return ax

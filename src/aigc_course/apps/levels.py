"""ASCII game levels: a procedural generator, a path checker and the scores of chapter 6.2.

Taught in chapter 6.2 ("Games and entertainment"). No public level data set ships with the
course, so the training levels come from :func:`generate_level`, a classic rooms-and-corridors
generator (rectangular rooms joined by L-shaped corridors, a start ``S`` and an exit ``E``, and in
about half of the levels a door ``D`` on a chokepoint with its key ``K`` on the near side). A GPT
trained on their text learns to write new ones; the functions below decide whether they work:

1. :func:`check_valid`: the text is a ``height x width`` rectangle of known tiles with exactly one
   start and one exit (and a key exactly when there is a door);
2. :func:`find_path`: breadth-first search from ``S`` to ``E`` over (row, column, has_key) states,
   walls block, a door opens only once the key was picked up: the level is *playable* when a
   path exists;
3. :func:`novelty` and :func:`diversity`: Hamming distances to the training levels (a copy has
   distance 0) and between the generated levels.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

WALL, FLOOR, START, EXIT, KEY, DOOR = "#", ".", "S", "E", "K", "D"
TILES = WALL + FLOOR + START + EXIT + KEY + DOOR
SEPARATOR = "\n\n"  # between two levels of the training text
MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right: no diagonal steps


@dataclass(frozen=True)
class LevelConfig:
    """Shape of the generated levels (``height`` rows of ``width`` tiles, walls all around)."""

    width: int = 16
    height: int = 10
    min_rooms: int = 3
    max_rooms: int = 5
    room_w: tuple[int, int] = (3, 5)  # smallest, largest room width (inside its walls)
    room_h: tuple[int, int] = (2, 4)
    p_key: float = 0.5  # share of levels with a locked door and its key

    def __post_init__(self):
        if self.width < 8 or self.height < 6:
            raise ValueError(f"A level needs width >= 8 and height >= 6, got {self.width} x {self.height}.")
        if not 1 <= self.min_rooms <= self.max_rooms:
            raise ValueError(f"Need 1 <= min_rooms <= max_rooms, got {self.min_rooms}, {self.max_rooms}.")


# ---------------------------------------------------------------- the generator
def _place_rooms(cfg: LevelConfig, rng: random.Random) -> list[tuple[int, int, int, int]]:
    """Non-overlapping rooms (top, left, h, w) with at least one wall between two rooms."""
    rooms = []
    n_target = rng.randint(cfg.min_rooms, cfg.max_rooms)
    for _ in range(200):
        if len(rooms) == n_target:
            break
        h, w = rng.randint(*cfg.room_h), rng.randint(*cfg.room_w)
        top, left = rng.randint(1, cfg.height - 1 - h), rng.randint(1, cfg.width - 1 - w)
        if all(top + h + 1 <= t or t + rh + 1 <= top or left + w + 1 <= lf or lf + rw + 1 <= left
               for t, lf, rh, rw in rooms):
            rooms.append((top, left, h, w))
    return sorted(rooms, key=lambda r: (r[1], r[0]))  # left to right: the chain of the level


def _cells(grid: list[list[str]], tile: str) -> list[tuple[int, int]]:
    return [(r, c) for r, row in enumerate(grid) for c, t in enumerate(row) if t == tile]


def generate_level(cfg: LevelConfig = LevelConfig(), rng: random.Random | None = None) -> str:
    """One playable level as text (``height`` lines of ``width`` tiles, no final newline)."""
    rng = rng or random.Random(0)
    while True:
        grid = [[WALL] * cfg.width for _ in range(cfg.height)]
        rooms = _place_rooms(cfg, rng)
        if len(rooms) < cfg.min_rooms:
            continue
        for top, left, h, w in rooms:
            for r in range(top, top + h):
                grid[r][left:left + w] = [FLOOR] * w
        centres = [(rng.randint(t, t + h - 1), rng.randint(lf, lf + w - 1)) for t, lf, h, w in rooms]
        for (r0, c0), (r1, c1) in zip(centres, centres[1:]):  # L-shaped corridor to the next room
            bend = (r0, c1) if rng.random() < 0.5 else (r1, c0)
            for (ra, ca), (rb, cb) in (((r0, c0), bend), (bend, (r1, c1))):
                for r in range(min(ra, rb), max(ra, rb) + 1):
                    for c in range(min(ca, cb), max(ca, cb) + 1):
                        grid[r][c] = FLOOR
        first = [p for p in _cells(grid, FLOOR) if _in_room(p, rooms[0])]
        last = [p for p in _cells(grid, FLOOR) if _in_room(p, rooms[-1])]
        (sr, sc), (er, ec) = rng.choice(first), rng.choice(last)
        grid[sr][sc], grid[er][ec] = START, EXIT
        if rng.random() < cfg.p_key:
            _add_key_and_door(grid, rng)
        level = "\n".join("".join(row) for row in grid)
        if find_path(level) is not None:
            return level


def _in_room(p: tuple[int, int], room: tuple[int, int, int, int]) -> bool:
    top, left, h, w = room
    return top <= p[0] < top + h and left <= p[1] < left + w


def _add_key_and_door(grid: list[list[str]], rng: random.Random) -> None:
    """Lock a chokepoint (a floor cell without which S cannot reach E) and hide its key before it."""
    (sr, sc), (er, ec) = _cells(grid, START)[0], _cells(grid, EXIT)[0]
    chokepoints = []
    for r, c in find_path("\n".join("".join(row) for row in grid)):  # every path passes a chokepoint
        if grid[r][c] == FLOOR:
            grid[r][c] = DOOR
            if (er, ec) not in _reachable(grid, (sr, sc)):
                chokepoints.append((r, c))
            grid[r][c] = FLOOR
    if not chokepoints:
        return
    dr, dc = rng.choice(chokepoints)
    grid[dr][dc] = DOOR
    near = [p for p in _reachable(grid, (sr, sc)) if grid[p[0]][p[1]] == FLOOR]
    if not near:  # the start sits right at the door: no room for a key
        grid[dr][dc] = FLOOR
        return
    kr, kc = rng.choice(near)
    grid[kr][kc] = KEY


def _reachable(grid, start: tuple[int, int]) -> set[tuple[int, int]]:
    """Cells reachable from ``start`` without passing a wall or a door."""
    seen, todo = {start}, [start]
    while todo:
        r, c = todo.pop()
        for dr, dc in MOVES:
            q = (r + dr, c + dc)
            if 0 <= q[0] < len(grid) and 0 <= q[1] < len(grid[0]) and q not in seen \
                    and grid[q[0]][q[1]] not in (WALL, DOOR):
                seen.add(q)
                todo.append(q)
    return seen


def generate_levels(n: int, cfg: LevelConfig = LevelConfig(), seed: int = 0) -> list[str]:
    """``n`` levels from one seeded random stream (the same seed gives the same levels)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    rng = random.Random(seed)
    return [generate_level(cfg, rng) for _ in range(n)]


# ---------------------------------------------------------------- text <-> levels
def level_corpus(levels: list[str]) -> str:
    """The training text: every level followed by a blank line."""
    return "".join(level + SEPARATOR for level in levels)


def split_sample(text: str) -> str:
    """The first level of a generated text: everything before the first blank line."""
    return text.lstrip("\n").split(SEPARATOR)[0].rstrip("\n")


# ---------------------------------------------------------------- the checks
def check_valid(level: str, width: int | None = None, height: int | None = None) -> str | None:
    """None when ``level`` is a valid level, else the reason it is not (one short phrase)."""
    rows = level.split("\n")
    if len({len(row) for row in rows}) != 1:
        return "not rectangular"
    if (height is not None and len(rows) != height) or (width is not None and len(rows[0]) != width):
        return "wrong size"
    unknown = set(level) - set(TILES) - {"\n"}
    if unknown:
        return "unknown tile"
    for tile, name in ((START, "start"), (EXIT, "exit")):
        if level.count(tile) != 1:
            return f"{level.count(tile)} {name}s"
    if level.count(KEY) > 1 or level.count(DOOR) > 1 or level.count(KEY) != level.count(DOOR):
        return "key/door mismatch"
    return None


def find_path(level: str) -> list[tuple[int, int]] | None:
    """Shortest path from ``S`` to ``E`` as a list of (row, col), or None when there is none.

    Breadth-first search over states (row, col, has_key): walls never open, a door opens only
    in states that hold the key, and stepping on ``K`` picks it up. BFS visits states in order of
    distance, so the first time it reaches ``E`` the path is a shortest one.
    """
    rows = level.split("\n")
    if len({len(row) for row in rows}) != 1:
        raise ValueError("find_path needs a rectangular level; check it with check_valid first.")
    starts = [(r, c) for r, row in enumerate(rows) for c, t in enumerate(row) if t == START]
    if len(starts) != 1:
        raise ValueError(f"find_path needs exactly one start 'S', found {len(starts)}.")
    start = (*starts[0], False)
    parent = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        r, c, has_key = state
        if rows[r][c] == EXIT:
            path = []
            while state is not None:
                path.append(state[:2])
                state = parent[state]
            return path[::-1]
        for dr, dc in MOVES:
            rr, cc = r + dr, c + dc
            if not (0 <= rr < len(rows) and 0 <= cc < len(rows[0])):
                continue
            tile = rows[rr][cc]
            if tile == WALL or (tile == DOOR and not has_key):
                continue
            nxt = (rr, cc, has_key or tile == KEY)
            if nxt not in parent:
                parent[nxt] = state
                queue.append(nxt)
    return None


def is_playable(level: str, width: int | None = None, height: int | None = None) -> bool:
    """Valid and solvable: a path from start to exit exists."""
    return check_valid(level, width, height) is None and find_path(level) is not None


def verdict(level: str, width: int | None = None, height: int | None = None) -> str:
    """"playable", "no path" or the reason :func:`check_valid` gives."""
    reason = check_valid(level, width, height)
    if reason is not None:
        return reason
    return "playable" if find_path(level) is not None else "no path"


# ---------------------------------------------------------------- novelty and diversity
def as_array(levels: list[str]) -> np.ndarray:
    """Levels of one shape -> (N, H * W) uint8 array of tile codes (newlines dropped)."""
    flat = [level.replace("\n", "") for level in levels]
    if len({len(f) for f in flat}) > 1:
        raise ValueError("as_array needs levels of one shape; keep the valid ones first.")
    return np.frombuffer("".join(flat).encode("ascii", "replace"), dtype=np.uint8).reshape(len(flat), -1)


def nearest_distances(levels: list[str], reference: list[str], exclude_self: bool = False) -> np.ndarray:
    """Hamming distance (tiles that differ) from each level to its nearest reference level."""
    if not levels:
        return np.zeros(0, dtype=np.int64)
    a, b = as_array(levels), as_array(reference)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"Levels have {a.shape[1]} tiles, the reference {b.shape[1]}: shapes differ.")
    out = np.empty(len(a), dtype=np.int64)
    for i in range(0, len(a), 64):  # chunks keep the (chunk, N_ref, tiles) array small
        d = (a[i:i + 64, None, :] != b[None, :, :]).sum(-1)  # (chunk, N_ref)
        if exclude_self:
            d[d == 0] = a.shape[1] + 1  # a level is not its own neighbour (levels == reference)
        out[i:i + 64] = d.min(1)
    return out


def novelty(levels: list[str], training: list[str]) -> dict:
    """Share of ``levels`` that are not copies of a training level, and nearest-neighbour distances."""
    if not levels:
        raise ValueError("novelty needs at least one level.")
    seen = set(training)
    nn = nearest_distances(levels, training)
    return {"novel": float(np.mean([lv not in seen for lv in levels])), "nn_distance": nn,
            "nn_mean": float(nn.mean())}


def diversity(levels: list[str]) -> float:
    """Mean Hamming distance over all pairs of ``levels`` (0 when every level is the same)."""
    a = as_array(levels)
    if len(a) < 2:
        raise ValueError("diversity needs at least two levels.")
    d = (a[:, None, :] != a[None, :, :]).sum(-1)  # (N, N)
    return float(d[np.triu_indices(len(a), 1)].mean())


# ---------------------------------------------------------------- sampling and drawing
@torch.no_grad()
def sample_levels(model, tokenizer, n: int, cfg: LevelConfig = LevelConfig(), temperature: float = 1.0,
                  top_k: int | None = None, seed: int = 0) -> list[str]:
    """``n`` levels written by a GPT trained on :func:`level_corpus` text (prompted with a blank line)."""
    device = next(model.parameters()).device
    prompt = tokenizer.encode_tensor(SEPARATOR).repeat(n, 1).to(device)  # (n, 2)
    length = cfg.height * (cfg.width + 1) + 1  # the level, its newlines and one spare character
    gen = torch.Generator(device=device).manual_seed(seed)
    ids = model.generate(prompt, length, temperature=temperature, top_k=top_k, generator=gen)
    return [split_sample(tokenizer.decode(row[prompt.shape[1]:])) for row in ids.cpu()]


@torch.no_grad()
def sample_levels_constrained(model, tokenizer, n: int, cfg: LevelConfig = LevelConfig(), temperature: float = 1.0,
                              seed: int = 0, once: str = "") -> list[str]:
    """Like :func:`sample_levels`, but the grid's shape is enforced while sampling (constrained
    decoding): after ``width`` tiles the newline is the only allowed token, elsewhere it is
    forbidden, and sampling stops after ``height`` rows. Each tile in ``once`` (e.g. "SEKD") is
    forbidden after its first use. The model still picks every tile among those allowed."""
    from aigc_course.runtime import multinomial
    from aigc_course.text.decoding import apply_temperature, gpt_next_logits

    device = next(model.parameters()).device
    next_logits = gpt_next_logits(model)
    newline = tokenizer.stoi["\n"]
    ids = tokenizer.encode_tensor(SEPARATOR).repeat(n, 1).to(device)  # (n, 2)
    gen = torch.Generator(device=device).manual_seed(seed)
    for pos in range(cfg.height * (cfg.width + 1) - 1):
        logits = apply_temperature(next_logits(ids), temperature)  # (n, V)
        allowed = torch.zeros_like(logits, dtype=torch.bool)
        if pos % (cfg.width + 1) == cfg.width:  # the end of a row
            allowed[:, newline] = True
        else:
            allowed[:, :] = True
            allowed[:, newline] = False
            for tile in once:  # a tile that may appear once is banned in rows that already hold it
                t = tokenizer.stoi[tile]
                allowed[:, t] &= ~(ids[:, 2:] == t).any(dim=1)
        probs = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
        ids = torch.cat([ids, multinomial(probs, 1, gen)], dim=1)
    return [tokenizer.decode(row[2:]) for row in ids.cpu()]


COLOURS = {WALL: (0.2, 0.2, 0.25), FLOOR: (0.93, 0.91, 0.85), START: (0.2, 0.6, 0.2),
           EXIT: (0.85, 0.3, 0.2), KEY: (0.95, 0.75, 0.1), DOOR: (0.5, 0.3, 0.1)}


def draw_level(level: str, ax, title: str | None = None, path: bool = True) -> None:
    """Draw ``level`` as coloured tiles (unknown tiles magenta), with its BFS path if it has one."""
    rows = level.split("\n")
    width = max(len(row) for row in rows)
    img = np.ones((len(rows), width, 3))
    for r, row in enumerate(rows):
        for c, t in enumerate(row):
            img[r, c] = COLOURS.get(t, (0.9, 0.2, 0.9))
    ax.imshow(img, interpolation="nearest")
    if path and check_valid(level) is None:
        p = find_path(level)
        if p is not None:
            ys, xs = zip(*p)
            ax.plot(xs, ys, color=(0.2, 0.4, 0.9), lw=1.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)

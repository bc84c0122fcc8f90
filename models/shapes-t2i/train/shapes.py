"""The procedural captioned dataset: 32x32 RGB images of one or two objects, their captions,
the word-level vocabulary, and the fixed held-out prompt set.

An object is (size, colour, shape, position). Two objects in one image never share a position.
Some objects and some object pairs never appear in training: the held-out prompts are built from
them, so evaluation asks for attribute combinations the model has not seen drawn.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

IMAGE = 32
SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue", "yellow")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom")
# Position phrases as the captions say them.
PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}
RGB = {"red": (0.95, 0.15, 0.1), "green": (0.1, 0.85, 0.2), "blue": (0.15, 0.3, 1.0), "yellow": (1.0, 0.9, 0.1)}
# Object centres (x, y) in pixels: far enough apart that two large objects barely touch.
CENTRES = {"left": (7.0, 16.0), "right": (25.0, 16.0), "top": (16.0, 7.0), "bottom": (16.0, 25.0)}
RADII = {"small": 4.0, "large": 6.5}
JITTER = 1.0
SUPERSAMPLE = 4

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
WORDS = ("a", "and", "on", "at", "the") + SIZES + COLOURS + SHAPES + POSITIONS
VOCAB = (PAD, BOS, EOS, UNK) + WORDS
MAX_LENGTH = 20


@dataclass(frozen=True, order=True)
class Obj:
    size: str
    colour: str
    shape: str
    position: str

    def phrase(self) -> str:
        return f"a {self.size} {self.colour} {self.shape} {PHRASES[self.position]}"


ALL_OBJECTS = [Obj(*t) for t in itertools.product(SIZES, COLOURS, SHAPES, POSITIONS)]


def caption(objects: list[Obj]) -> str:
    return " and ".join(o.phrase() for o in objects)


def tokenize(text: str) -> list[int]:
    """BOS, the words, EOS, padding to MAX_LENGTH (the tokenizer.json export does the same)."""
    words = [VOCAB.index(w) if w in WORDS else VOCAB.index(UNK) for w in text.lower().split()]
    ids = [VOCAB.index(BOS)] + words + [VOCAB.index(EOS)]
    assert len(ids) <= MAX_LENGTH, text
    return ids + [VOCAB.index(PAD)] * (MAX_LENGTH - len(ids))


@dataclass
class Split:
    """Which objects and pairs training never shows, and the prompts that ask for them."""

    unseen_objects: set[Obj]
    unseen_pairs: set[frozenset[Obj]]
    prompts: list[list[Obj]]


def held_out(seed: int = 1234, n_objects: int = 8, n_pairs: int = 40, n_singles: int = 8) -> Split:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ALL_OBJECTS))
    unseen = [ALL_OBJECTS[i] for i in order[:n_objects]]
    seen = [ALL_OBJECTS[i] for i in order[n_objects:]]
    prompts: list[list[Obj]] = [[o] for o in unseen]
    prompts += [[seen[i]] for i in rng.choice(len(seen), n_singles, replace=False)]
    pairs: list[list[Obj]] = []
    # Half the pairs include an unseen object, half combine two seen ones in an unseen pairing.
    while len(pairs) < n_pairs:
        first = unseen[rng.integers(len(unseen))] if len(pairs) % 2 == 0 else seen[rng.integers(len(seen))]
        second = seen[rng.integers(len(seen))]
        pair = [first, second] if rng.random() < 0.5 else [second, first]
        if first.position != second.position and frozenset(pair) not in {frozenset(p) for p in pairs}:
            pairs.append(pair)
    prompts += pairs
    return Split(set(unseen), {frozenset(p) for p in pairs}, prompts)


def sample_scenes(n: int, split: Split, rng: np.random.Generator) -> list[list[Obj]]:
    """Random scenes of one or two objects, none of them using an unseen object or pair."""
    allowed = [o for o in ALL_OBJECTS if o not in split.unseen_objects]
    scenes: list[list[Obj]] = []
    while len(scenes) < n:
        first = allowed[rng.integers(len(allowed))]
        if rng.random() < 0.4:
            scenes.append([first])
            continue
        second = allowed[rng.integers(len(allowed))]
        if second.position == first.position or frozenset((first, second)) in split.unseen_pairs:
            continue
        scenes.append([first, second])
    return scenes


# Per-token description targets: slot, shape, colour, size; the last class of each means "none".
TARGET_CLASSES = (len(POSITIONS) + 1, len(SHAPES) + 1, len(COLOURS) + 1, len(SIZES) + 1)


def token_targets(scene: list[Obj]) -> np.ndarray:
    """[MAX_LENGTH, 4]: for every token of an object's clause, that object's slot, shape, colour
    and size; "none" for BOS, "and", EOS and padding. The text encoder is taught to put each
    object's whole description on every token of its clause, so that the UNet's cross-attention
    finds an object's attributes next to its position (attribute binding)."""
    none = np.array([c - 1 for c in TARGET_CLASSES], np.int64)
    out = np.tile(none, (MAX_LENGTH, 1))
    start = 1  # after BOS
    for o in scene:
        words = len(o.phrase().split())
        out[start : start + words] = (POSITIONS.index(o.position), SHAPES.index(o.shape),
                                      COLOURS.index(o.colour), SIZES.index(o.size))
        start += words + 1  # and the "and" that follows
    return out


def _mask(obj: Obj, dx: float, dy: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    cx, cy = CENTRES[obj.position]
    cx, cy, r = cx + dx, cy + dy, RADII[obj.size]
    u, v = xs - cx, ys - cy
    if obj.shape == "circle":
        return u * u + v * v <= r * r
    if obj.shape == "square":
        s = r * 0.85  # a square of the circle's area would look larger; this keeps sizes comparable
        return (np.abs(u) <= s) & (np.abs(v) <= s)
    # An upward triangle inscribed in the circle of radius r (apex at the top).
    top, bottom = -r, r * 0.75
    inside_y = (v >= top) & (v <= bottom)
    half_width = (v - top) / (bottom - top) * r * 1.05
    return inside_y & (np.abs(u) <= half_width)


def render(scene: list[Obj], rng: np.random.Generator) -> np.ndarray:
    """One image [3, 32, 32] in [-1, 1]: objects on black, antialiased by supersampling."""
    size = IMAGE * SUPERSAMPLE
    grid = (np.arange(size) + 0.5) / SUPERSAMPLE
    xs, ys = np.meshgrid(grid, grid)
    canvas = np.zeros((3, size, size), np.float32)
    for obj in scene:
        dx, dy = rng.uniform(-JITTER, JITTER, 2)
        mask = _mask(obj, dx, dy, xs, ys)
        canvas[:, mask] = np.array(RGB[obj.colour], np.float32)[:, None]
    image = canvas.reshape(3, IMAGE, SUPERSAMPLE, IMAGE, SUPERSAMPLE).mean(axis=(2, 4))
    return image * 2.0 - 1.0


def labels(scene: list[Obj]) -> np.ndarray:
    """Per position slot: [present, shape, colour, size]; -1 where absent."""
    out = np.full((len(POSITIONS), 4), -1, np.int64)
    out[:, 0] = 0
    for o in scene:
        out[POSITIONS.index(o.position)] = (1, SHAPES.index(o.shape), COLOURS.index(o.colour), SIZES.index(o.size))
    return out


def dataset(n: int, split: Split, seed: int) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """n images [n, 3, 32, 32], token ids [n, MAX_LENGTH], captions and slot labels [n, 4, 4]."""
    rng = np.random.default_rng(seed)
    scenes = sample_scenes(n, split, rng)
    images = np.stack([render(s, rng) for s in scenes])
    captions = [caption(s) for s in scenes]
    ids = np.array([tokenize(c) for c in captions], np.int64)
    return images, ids, captions, np.stack([labels(s) for s in scenes])

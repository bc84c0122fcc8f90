"""Writes calibration_prompts.txt: prompts drawn from the training distribution (no unseen
object, no held-out pair, no held-out prompt), for sensitivity runs and activation calibration,
so that `bitsearch eval` can measure on heldout_prompts.txt without reusing them; and
calibration_prompts_64.txt: those 16 and 48 more drawn the same way, for sensitivity runs whose
plans must not fit a few prompts; and calibration_prompts_deploy.txt: 128 prompts mixed as the
held-out set is (half of them hold an object training never shows; the first 64 and the last 64
each so mixed), none of them held out, for plans that must hold on prompts unlike the training
captions.

Standard library only; deterministic. Usage: python3 calibration_prompts.py MODEL_DIR
"""

import itertools
import random
import sys
from pathlib import Path

SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue", "yellow")
SIZES = ("small", "large")
PHRASES = ("on the left", "on the right", "at the top", "at the bottom")
SINGLES, PAIRS = 6, 10
# The wider set: 24 single objects and 40 pairs, the first 16 prompts those above.
WIDE_SINGLES, WIDE_PAIRS = 24, 40
# The deployment-like set: seen singles, pairs with one unseen object, pairs of seen objects.
DEPLOY_SINGLES, DEPLOY_UNSEEN_PAIRS, DEPLOY_SEEN_PAIRS = 8, 32, 24


def main(model_dir: Path) -> None:
    held = [line.strip() for line in (model_dir / "heldout_prompts.txt").read_text().splitlines() if line.strip()]
    # The held-out set starts with one prompt per object training never shows.
    unseen = set(held[:8])
    objects = [f"a {s} {c} {h} {p}" for s, c, h, p in itertools.product(SIZES, COLOURS, SHAPES, PHRASES)]
    seen = [o for o in objects if o not in unseen]
    position = {o: next(p for p in PHRASES if o.endswith(p)) for o in objects}
    rng = random.Random(2026)

    def two_seen() -> tuple:
        return tuple(rng.sample(seen, 2))

    def one_unseen() -> tuple:
        pair = (rng.choice(sorted(unseen)), rng.choice(seen))
        return pair if rng.random() < 0.5 else pair[::-1]

    def add_pairs(prompts: list, count: int, draw=two_seen) -> None:
        goal = len(prompts) + count
        while len(prompts) < goal:
            first, second = draw()
            pair = f"{first} and {second}"
            swapped = f"{second} and {first}"
            fresh = pair not in prompts and swapped not in prompts
            if position[first] != position[second] and pair not in held and swapped not in held and fresh:
                prompts.append(pair)

    singles = rng.sample([o for o in seen if o not in held], SINGLES)
    prompts = list(singles)
    add_pairs(prompts, PAIRS)
    (model_dir / "calibration_prompts.txt").write_text("\n".join(prompts) + "\n")
    more = [o for o in seen if o not in held and o not in singles]
    wide = prompts + rng.sample(more, WIDE_SINGLES - SINGLES)
    add_pairs(wide, WIDE_PAIRS - PAIRS)
    (model_dir / "calibration_prompts_64.txt").write_text("\n".join(wide) + "\n")
    # Twice the mix: the first 64 prompts are a smaller set of the same kind.
    deploy: list = []
    for _ in range(2):
        deploy += rng.sample([o for o in seen if o not in held and o not in deploy], DEPLOY_SINGLES)
        add_pairs(deploy, DEPLOY_UNSEEN_PAIRS, one_unseen)
        add_pairs(deploy, DEPLOY_SEEN_PAIRS)
    (model_dir / "calibration_prompts_deploy.txt").write_text("\n".join(deploy) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""A realistic corpus of model turns for the tag-parser benchmark (seeded, no files)."""

from __future__ import annotations

import random

WORDS = (
    "the of to and a in is it you that was for on are with as I his they be at one have this "
    "from or had by hot word but what some we can out other were all there when up use your "
    "how said an each she which do their time if will way about many then them write would "
    "like so these her long make thing see him two has look more day could go come did number "
    "sound no most people my over know water than call first who may down side been now find "
    "population capital founded river mountain born married director company total price "
    "apples hours "
).split()
UNICODE = ["café", "Zürich", "naïve", "東京", "Μαρία", "€", "—", "😀", "“quoted”"]


def make_turn(rng: random.Random) -> str:
    """One turn: a few sentences of reasoning, then (usually) one action tag, sometimes junk."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(15, 90))]
    if rng.random() < 0.2:
        words[rng.randrange(len(words))] = rng.choice(UNICODE)
    thought = " ".join(words) + "."
    roll = rng.random()
    if roll < 0.45:
        query = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8)))
        return f"{thought} <search_query>{query}</search_query>"
    if roll < 0.8:
        a, b, c = (rng.randint(1, 999) for _ in range(3))
        return f"{thought}\n<math_exp>({a} + {b}) * {c} / 7</math_exp>"
    if roll < 0.95:
        return f"{thought} So the answer is <answer>{rng.choice(WORDS)}</answer>"
    return rng.choice([thought, f"{thought} <answer>unclosed", f"</answer>{thought}"])


def make_corpus(size: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [make_turn(rng) for _ in range(size)]

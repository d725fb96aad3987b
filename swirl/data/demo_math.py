"""``demo-math``: generated multi-step arithmetic word problems in GSM8K format.

Every problem takes 2 to 4 calculations on small whole numbers (operands up to about 20, results
up to a few hundred, every division exact), and its worked answer annotates each calculation the
GSM8K way, e.g.::

    Liam has 4*6=<<4*6=24>>24 pencils.
    After giving away 5, he has 24-5=<<24-5=19>>19 pencils.
    #### 19

Six story families (items in boxes, savings, reading, shopping, planting, school teams) keep the
wording varied. Generation is seeded; the split of a problem is a function of its text
(:mod:`swirl.data.synthetic`), so train and test never share a question.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from swirl.data import gsm8k
from swirl.data.records import Record
from swirl.data.synthetic import Split, draw_distinct
from swirl.schema import Example

NAME = "demo-math"
DEFAULT_SIZES: dict[str, int] = {"train": 2000, "test": 300}

_PEOPLE = [
    ("Liam", "he", "his"), ("Emma", "she", "her"), ("Noah", "he", "his"), ("Olivia", "she", "her"),
    ("Ava", "she", "her"), ("Lucas", "he", "his"), ("Mia", "she", "her"), ("Ethan", "he", "his"),
    ("Zoe", "she", "her"), ("Omar", "he", "his"), ("Lena", "she", "her"), ("Ravi", "he", "his"),
    ("Sofia", "she", "her"), ("Mateo", "he", "his"), ("Aisha", "she", "her"), ("Kenji", "he", "his"),
    ("Nora", "she", "her"), ("Felix", "he", "his"), ("Ines", "she", "her"), ("Tom", "he", "his"),
]  # fmt: skip
_ITEMS = ["pencils", "stickers", "marbles", "cookies", "stamps", "shells", "cards", "beads",
          "apples", "crayons"]  # fmt: skip
_CONTAINERS = [("box", "boxes"), ("bag", "bags"), ("pack", "packs"), ("jar", "jars")]
_RELATIVES = ["grandmother", "uncle", "aunt", "grandfather", "neighbor"]
_GIFTS = ["book", "game", "kite", "puzzle", "scarf"]
_GOODS = [("notebooks", "pens"), ("apples", "pears"), ("cups", "plates"), ("balls", "hats")]
_PLANTS = ["tomato plants", "sunflowers", "carrots", "rose bushes", "pepper plants"]


class _Story:
    """Collects the question sentences and the worked-answer lines of one problem."""

    def __init__(self) -> None:
        self.question: list[str] = []
        self.lines: list[str] = []

    def ask(self, sentence: str) -> None:
        self.question.append(sentence)

    def step(self, sentence: str | None, left: int, op: str, right: int, line: str) -> int:
        """Add ``sentence`` to the question (if any), compute ``left op right`` (integers;
        divisions exact) and add the answer ``line``, whose ``{}`` becomes the annotated
        calculation ``a*b=<<a*b=c>>c``. Returns the result."""
        if sentence is not None:
            self.question.append(sentence)
        result = {"+": left + right, "-": left - right, "*": left * right}.get(op)
        if op == "/":
            assert left % right == 0, "divisions in demo problems are exact"
            result = left // right
        assert result is not None and result >= 0
        expression = f"{left}{op}{right}"
        self.lines.append(line.format(f"{expression}=<<{expression}={result}>>{result}"))
        return result

    def record(self, answer: int) -> dict[str, str]:
        return {
            "question": " ".join(self.question),
            "answer": "\n".join([*self.lines, f"#### {answer}"]),
        }


def _divisor(rng: random.Random, total: int) -> int | None:
    options = [k for k in range(2, 11) if total % k == 0]
    return rng.choice(options) if options else None


def _items_in_boxes(rng: random.Random) -> dict[str, str]:
    name, he, his = rng.choice(_PEOPLE)
    He = he.capitalize()
    items = rng.choice(_ITEMS)
    box, boxes = rng.choice(_CONTAINERS)
    count, per_box = rng.randint(2, 9), rng.randint(3, 12)
    story = _Story()
    opening = f"{name} buys {count} {boxes} of {items} with {per_box} {items} in each {box}."
    total = story.step(opening, count, "*", per_box, f"{name} has {{}} {items}.")
    for _ in range(rng.randint(0, 2)):
        if rng.random() < 0.5 and total > 2:
            given = rng.randint(1, min(20, total - 1))
            total = story.step(f"{He} gives {given} {items} to a friend.", total, "-", given,
                               f"After giving away {given}, {he} has {{}} {items}.")  # fmt: skip
        else:
            found = rng.randint(2, 20)
            total = story.step(f"Then {he} gets {found} more {items} from {his} {rng.choice(_RELATIVES)}.", total, "+", found,
                               f"After getting {found} more, {he} has {{}} {items}.")  # fmt: skip
    ending = rng.random()
    friends = _divisor(rng, total)
    if ending < 0.4 and friends is not None:
        total = story.step(f"{He} shares all the {items} equally among {friends} friends. How many {items} does each friend get?",
                           total, "/", friends, f"Each friend gets {{}} {items}.")  # fmt: skip
    elif ending < 0.7 or len(story.lines) < 2:
        price = rng.randint(2, 5)
        total = story.step(f"{He} sells every one of them for ${price}. How many dollars does {he} earn?",
                           total, "*", price, f"{He} earns {{}} dollars.")  # fmt: skip
    else:
        story.ask(f"How many {items} does {name} have now?")
    return story.record(total)


def _savings(rng: random.Random) -> dict[str, str]:
    name, he, his = rng.choice(_PEOPLE)
    He = he.capitalize()
    weekly, weeks = rng.randint(2, 15), rng.randint(2, 10)
    story = _Story()
    total = story.step(f"{name} saves ${weekly} every week for {weeks} weeks.", weekly, "*", weeks,
                       f"{name} saves {{}} dollars.")  # fmt: skip
    if rng.random() < 0.5:
        gift = rng.randint(5, 30)
        total = story.step(f"{his.capitalize()} {rng.choice(_RELATIVES)} gives {_object(he)} ${gift} more.", total, "+", gift,
                           f"With the gift {he} has {{}} dollars.")  # fmt: skip
    spent = rng.randint(1, total - 1)
    total = story.step(f"Then {he} spends ${spent} on a {rng.choice(_GIFTS)}.", total, "-", spent,
                       f"After shopping {he} has {{}} dollars.")  # fmt: skip
    jars = _divisor(rng, total)
    if jars is not None and rng.random() < 0.4:
        total = story.step(f"{He} puts the rest equally into {jars} jars. How many dollars go into each jar?",
                           total, "/", jars, "Each jar gets {} dollars.")  # fmt: skip
    else:
        story.ask(f"How many dollars does {name} have left?")
    return story.record(total)


def _object(pronoun: str) -> str:
    return "him" if pronoun == "he" else "her"


def _reading(rng: random.Random) -> dict[str, str]:
    name, he, _his = rng.choice(_PEOPLE)
    per_day, days = rng.randint(5, 20), rng.randint(2, 7)
    pages = per_day * days + rng.randint(20, 150)
    story = _Story()
    read = story.step(f"A book has {pages} pages. {name} reads {per_day} pages every day for {days} days.",
                      per_day, "*", days, f"{name} reads {{}} pages.")  # fmt: skip
    if rng.random() < 0.5:
        extra = rng.randint(3, min(15, pages - read - 1))
        read = story.step(f"On the next day {he} reads {extra} more pages.", read, "+", extra,
                          f"In total {he} reads {{}} pages.")  # fmt: skip
    left = story.step(f"How many pages does {he} still have to read?", pages, "-", read,
                      f"{he.capitalize()} still has {{}} pages to read.")  # fmt: skip
    return story.record(left)


def _shopping(rng: random.Random) -> dict[str, str]:
    name, he, _his = rng.choice(_PEOPLE)
    first, second = rng.choice(_GOODS)
    count_a, price_a = rng.randint(2, 8), rng.randint(1, 9)
    count_b, price_b = rng.randint(2, 8), rng.randint(1, 9)
    story = _Story()
    story.ask(
        f"{name} buys {count_a} {first} for ${price_a} each and {count_b} {second} for ${price_b} each."
    )
    cost_a = story.step(None, count_a, "*", price_a, f"The {first} cost {{}} dollars.")
    cost_b = story.step(None, count_b, "*", price_b, f"The {second} cost {{}} dollars.")
    total = story.step(None, cost_a, "+", cost_b, "Together they cost {} dollars.")
    bill = next(b for b in (20, 50, 100, 200) if b > total)
    if rng.random() < 0.5:
        total = story.step(f"{he.capitalize()} pays with a ${bill} bill. How many dollars of change does {he} get?",
                           bill, "-", total, "The change is {} dollars.")  # fmt: skip
    else:
        story.ask(f"How many dollars does {he} spend in total?")
    return story.record(total)


def _planting(rng: random.Random) -> dict[str, str]:
    plant = rng.choice(_PLANTS)
    rows, per_row = rng.randint(2, 9), rng.randint(3, 12)
    story = _Story()
    total = story.step(f"A farmer plants {rows} rows of {plant} with {per_row} {plant} in each row.", rows, "*", per_row,
                       f"The farmer plants {{}} {plant}.")  # fmt: skip
    bunch = rng.randint(2, 6)
    # Choose the losses so the survivors split into whole bunches.
    losses = [lost for lost in range(1, min(12, total - bunch)) if (total - lost) % bunch == 0]
    lost = rng.choice(losses) if losses else 0
    if lost:
        total = story.step(f"{lost} of them do not grow.", total, "-", lost, f"{{}} {plant} grow.")
    if total % bunch == 0 and rng.random() < 0.6:
        total = story.step(f"The farmer sells them in bunches of {bunch}. How many bunches does the farmer sell?",
                           total, "/", bunch, "The farmer sells {} bunches.")  # fmt: skip
    elif len(story.lines) >= 2:
        story.ask(f"How many {plant} does the farmer have?")
    if len(story.lines) < 2:  # too short: ask for the whole field's worth at a price
        price = rng.randint(2, 6)
        total = story.step(f"Each one sells for ${price}. How many dollars does the farmer earn?",
                           total, "*", price, "The farmer earns {} dollars.")  # fmt: skip
    return story.record(total)


def _teams(rng: random.Random) -> dict[str, str]:
    classes, students = rng.randint(2, 6), rng.randint(12, 25)
    team = rng.randint(2, 6)
    story = _Story()
    total = story.step(f"A school has {classes} classes with {students} students in each class.", classes, "*", students,
                       "There are {} students.")  # fmt: skip
    absent = rng.choice([a for a in range(1, 15) if (total - a) % team == 0])
    total = story.step(
        f"Today {absent} students are absent.", total, "-", absent, "{} students are present."
    )
    total = story.step(f"The students who are present form teams of {team}. How many teams are there?",
                       total, "/", team, "There are {} teams.")  # fmt: skip
    return story.record(total)


FAMILIES: list[Callable[[random.Random], dict[str, str]]] = [
    _items_in_boxes, _savings, _reading, _shopping, _planting, _teams,
]  # fmt: skip


def generate_records(split: Split, count: int, *, seed: int = 0) -> list[dict[str, str]]:
    """``count`` distinct problems of ``split`` as GSM8K records ``{"question", "answer"}``."""
    rng = random.Random(f"{NAME}/{seed}/{split}")
    return draw_distinct(
        lambda: rng.choice(FAMILIES)(rng),
        lambda record: record["question"],
        split=split,
        count=count,
        name=NAME,
    )


def load(split: Split, limit: int | None = None, *, seed: int = 0) -> list[Example]:
    """The demo-math examples of ``split`` (``limit`` of them, default :data:`DEFAULT_SIZES`)."""
    count = DEFAULT_SIZES[split] if limit is None else limit
    records = generate_records(split, count, seed=seed)
    # The id is a function of the question, like the split: stable across seeds and sizes.
    return gsm8k.load(
        (Record(record, f"{NAME} {split} #{index}", index) for index, record in enumerate(records)),
        dataset=NAME,
        id_prefix=NAME,
    )

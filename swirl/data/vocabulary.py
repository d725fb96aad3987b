"""The vocabulary of the generated QA worlds (``demo-qa``, ``demo-hops``): invented name stems,
first names, occupations, industries, place suffixes and currencies.

An invented stem is never reused within one world, so no two entities share a name word and a
search for an entity's name finds its own article first.
"""

from __future__ import annotations

import random

SYLLABLES = [
    "ka",
    "lo",
    "mir",
    "ven",
    "ta",
    "ros",
    "bel",
    "dor",
    "fen",
    "gil",
    "har",
    "jun",
    "kel",
    "lun",
    "mar",
    "nor",
    "pel",
    "quin",
    "ras",
    "sol",
    "tor",
    "ul",
    "vin",
    "wen",
    "yar",
    "zel",
    "bra",
    "cor",
    "dra",
    "el",
    "fa",
    "gro",
    "is",
    "kra",
    "mon",
    "ny",
    "or",
    "pra",
    "sen",
    "tri",
    "vo",
    "sa",
    "ri",
    "ne",
]
FIRST_NAMES = [
    ("Alina", True), ("Bruno", False), ("Clara", True), ("Dario", False), ("Elena", True),
    ("Farid", False), ("Greta", True), ("Hugo", False), ("Irena", True), ("Jonas", False),
    ("Katya", True), ("Lorenz", False), ("Marta", True), ("Nikolai", False), ("Odile", True),
    ("Pavel", False), ("Rosa", True), ("Stefan", False), ("Tamsin", True), ("Viktor", False),
    ("Wanda", True), ("Yusuf", False), ("Zora", True), ("Anton", False), ("Beatrix", True),
    ("Casimir", False), ("Delia", True), ("Emil", False), ("Freya", True), ("Gustav", False),
]  # fmt: skip
OCCUPATIONS = ["chemist", "painter", "engineer", "architect", "pilot", "novelist", "surgeon",
               "violinist", "geologist", "teacher", "lawyer", "photographer"]  # fmt: skip
INDUSTRIES = [("Robotics", "robotics"), ("Textiles", "textile"), ("Shipping", "shipping"),
              ("Foods", "food"), ("Pharma", "pharmaceutical"), ("Energy", "energy"),
              ("Optics", "optics"), ("Motors", "car")]  # fmt: skip
CITY_SUFFIXES = ["ford", "holm", "vale", "port", "burg", "ton", "mere", "wick"]
COUNTRY_SUFFIXES = ["ia", "land", "stan", "ary"]
CURRENCIES = ["crown", "mark", "florin", "lira", "thaler", "ducat", "shilling", "peso", "rand",
              "guilder", "tael", "zloty"]  # fmt: skip


class InventedNames:
    """Unique invented words; a stem is never reused, so entities share no name word."""

    def __init__(self, rng: random.Random, dataset: str) -> None:
        """``rng``: the world's generator (the stems are its draws); ``dataset``: named in errors."""
        self.rng = rng
        self.dataset = dataset
        self.used: set[str] = set()
        self.syllables = 2

    def stem(self) -> str:
        # Two syllables while they last (about 1,900 words), then three, then four: 200 misses
        # in a row move on for good, so a big world does not retry an exhausted length.
        while self.syllables <= 4:
            for _ in range(200):
                word = "".join(self.rng.choice(SYLLABLES) for _ in range(self.syllables))
                word = word.capitalize()
                if word not in self.used and len(word) >= 4:
                    self.used.add(word)
                    return word
            self.syllables += 1
        raise RuntimeError(f"{self.dataset}: ran out of invented names")

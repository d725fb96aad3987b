"""``demo-qa``: a generated world of fictional people, companies, cities and countries, rendered as
a corpus of short articles, with multi-hop questions in HotPotQA format.

The world is a function of its size alone (``demo-qa`` = :data:`DEFAULT_PEOPLE` people,
``demo-qa:N`` = N people; companies, cities and countries scale with it), so its corpus is the
same for every seed and split. Every name is unique and no two entities share a name word, so a
search for an entity's name finds its own article first. Articles say one fact per sentence, in a
fixed order (the sentence indices of the supporting facts), e.g.::

    Vesna Kortel is a geologist who was born in 1954. She was born in the city of Dravenholm.
    She works for Belmar Optics.

Questions need two or three searches and have short answers (a name, a year, yes/no):

- bridge: "In which city was the founder of Belmar Optics born?", "In which country was Vesna
  Kortel born?", "What is the currency of the country where Vesna Kortel was born?" (three hops);
- comparison: "Who is older, Vesna Kortel or Ilan Sorvek?", "Which company was founded first, X
  or Y?", "Which city has a larger population, X or Y?", "Were A and B born in the same city?".

Records carry the gold articles plus two distractors as ``context``, like HotPotQA's distractor
setting. The seed picks which questions are drawn; the split is a function of the question
(:mod:`swirl.data.synthetic`).
"""

from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass, field

from swirl.corpus import Document
from swirl.data import hotpotqa
from swirl.data.records import Record
from swirl.data.synthetic import Split, draw_distinct
from swirl.data.vocabulary import (
    CITY_SUFFIXES,
    COUNTRY_SUFFIXES,
    CURRENCIES,
    FIRST_NAMES,
    INDUSTRIES,
    OCCUPATIONS,
    InventedNames,
)
from swirl.schema import Example

NAME = "demo-qa"
DEFAULT_PEOPLE = 200
MIN_PEOPLE = 20
DEFAULT_SIZES: dict[str, int] = {"train": 1000, "test": 200}
DISTRACTORS = 2


@dataclass
class Person:
    name: str
    female: bool
    birth_year: int
    occupation: str
    birth_city: str = ""
    employer: str = ""

    @property
    def pronoun(self) -> str:
        return "She" if self.female else "He"


@dataclass
class City:
    name: str
    country: str
    founded: int
    population: int
    mayor: str = ""


@dataclass
class Company:
    name: str
    industry: str
    founded: int
    founder: str = ""
    headquarters: str = ""


@dataclass
class Country:
    name: str
    currency: str
    capital: str = ""


@dataclass
class World:
    people: list[Person] = field(default_factory=list)
    cities: list[City] = field(default_factory=list)
    companies: list[Company] = field(default_factory=list)
    countries: list[Country] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.person = {p.name: p for p in self.people}
        self.city = {c.name: c for c in self.cities}
        self.company = {c.name: c for c in self.companies}
        self.country = {c.name: c for c in self.countries}


def world_sizes(people: int) -> dict[str, int]:
    """Entity counts for a world of ``people`` people."""
    return {
        "people": people,
        "companies": max(6, people // 4),
        "cities": max(8, people // 8),
        "countries": min(len(CURRENCIES), max(4, people // 30)),
    }


@functools.lru_cache(maxsize=4)
def build_world(people: int = DEFAULT_PEOPLE) -> World:
    """The world of ``people`` people (deterministic: the same size gives the same world)."""
    if people < MIN_PEOPLE:
        raise ValueError(f"{NAME}: a world needs at least {MIN_PEOPLE} people, got {people}")
    sizes = world_sizes(people)
    rng = random.Random(f"{NAME}/world/{people}")
    names = InventedNames(rng, NAME)
    currencies = rng.sample(CURRENCIES, sizes["countries"])
    countries = [
        Country(names.stem() + rng.choice(COUNTRY_SUFFIXES), currency) for currency in currencies
    ]
    cities = []
    for index in range(sizes["cities"]):
        # The first cities go one to each country, so every country has a city for its capital.
        country = countries[index] if index < len(countries) else rng.choice(countries)
        population = rng.randint(5, 950) * 1000 + rng.randint(0, 999)
        cities.append(
            City(
                names.stem() + rng.choice(CITY_SUFFIXES),
                country.name,
                rng.randint(900, 1900),
                population,
            )
        )
    for country in countries:
        country.capital = rng.choice([city.name for city in cities if city.country == country.name])
    companies = []
    for _ in range(sizes["companies"]):
        word, kind = rng.choice(INDUSTRIES)
        companies.append(
            Company(
                f"{names.stem()} {word}",
                kind,
                rng.randint(1850, 2015),
                headquarters=rng.choice(cities).name,
            )
        )
    persons = []
    for _ in range(people):
        first, female = rng.choice(FIRST_NAMES)
        persons.append(
            Person(
                f"{first} {names.stem()}",
                female,
                rng.randint(1900, 2000),
                rng.choice(OCCUPATIONS),
                birth_city=rng.choice(cities).name,
                employer=rng.choice(companies).name,
            )
        )
    for company, founder in zip(companies, rng.sample(persons, len(companies)), strict=True):
        company.founder = founder.name
        founder.employer = company.name  # founders work for their own company
    for city, mayor in zip(cities, rng.sample(persons, len(cities)), strict=True):
        city.mayor = mayor.name
    return World(persons, cities, companies, countries)


# Sentence indices of each fact in an article (the supporting facts point at them).
PERSON_BORN_YEAR, PERSON_BORN_CITY, PERSON_EMPLOYER = 0, 1, 2
CITY_COUNTRY, CITY_FOUNDED, CITY_POPULATION, CITY_MAYOR = 0, 1, 2, 3
COMPANY_FOUNDED, COMPANY_FOUNDER, COMPANY_HEADQUARTERS = 0, 1, 2
COUNTRY_CAPITAL, COUNTRY_CURRENCY = 0, 1


def articles(world: World) -> dict[str, list[str]]:
    """Title -> sentences (HotPotQA style: every sentence after the first has a leading space)."""
    result: dict[str, list[str]] = {}
    for p in world.people:
        result[p.name] = [
            f"{p.name} is a {p.occupation} who was born in {p.birth_year}.",
            f" {p.pronoun} was born in the city of {p.birth_city}.",
            f" {p.pronoun} works for {p.employer}.",
        ]
    for c in world.cities:
        result[c.name] = [
            f"{c.name} is a city in {c.country}.",
            f" {c.name} was founded in {c.founded}.",
            f" {c.name} has a population of {c.population:,}.",
            f" The mayor of {c.name} is {c.mayor}.",
        ]
    for c in world.companies:
        result[c.name] = [
            f"{c.name} is a {c.industry} company founded in {c.founded}.",
            f" {c.name} was founded by {c.founder}.",
            f" The headquarters of {c.name} are in {c.headquarters}.",
        ]
    for c in world.countries:
        result[c.name] = [
            f"{c.name} is a country whose capital is {c.capital}.",
            f" The currency of {c.name} is the {c.currency}.",
        ]
    return result


def corpus(people: int = DEFAULT_PEOPLE) -> list[Document]:
    """Every article of the world as a search corpus (ids are the titles)."""
    return [
        Document(id=title, title=title, text="".join(sentences))
        for title, sentences in articles(build_world(people)).items()
    ]


@dataclass(frozen=True)
class _Question:
    text: str
    answer: str
    kind: str  # "bridge" or "comparison"
    facts: tuple[tuple[str, int], ...]


def _bridge(world: World, rng: random.Random) -> _Question:
    kind = rng.randrange(8)
    if kind < 3:
        company = rng.choice(world.companies)
        founder = world.person[company.founder]
        if kind == 0:
            return _Question(f"In which city was the founder of {company.name} born?", founder.birth_city, "bridge",
                             ((company.name, COMPANY_FOUNDER), (founder.name, PERSON_BORN_CITY)))  # fmt: skip
        if kind == 1:
            return _Question(f"In which year was the founder of {company.name} born?", str(founder.birth_year), "bridge",
                             ((company.name, COMPANY_FOUNDER), (founder.name, PERSON_BORN_YEAR)))  # fmt: skip
        city = world.city[company.headquarters]
        return _Question(f"In which country are the headquarters of {company.name}?", city.country, "bridge",
                         ((company.name, COMPANY_HEADQUARTERS), (city.name, CITY_COUNTRY)))  # fmt: skip
    person = rng.choice(world.people)
    employer = world.company[person.employer]
    city = world.city[person.birth_city]
    if kind == 3:
        return _Question(f"In which year was the company that {person.name} works for founded?", str(employer.founded), "bridge",
                         ((person.name, PERSON_EMPLOYER), (employer.name, COMPANY_FOUNDED)))  # fmt: skip
    if kind == 4:
        return _Question(f"In which city are the headquarters of the company that {person.name} works for?", employer.headquarters, "bridge",
                         ((person.name, PERSON_EMPLOYER), (employer.name, COMPANY_HEADQUARTERS)))  # fmt: skip
    if kind == 5:
        return _Question(f"In which country was {person.name} born?", city.country, "bridge",
                         ((person.name, PERSON_BORN_CITY), (city.name, CITY_COUNTRY)))  # fmt: skip
    if kind == 6:
        return _Question(f"Who is the mayor of the city where {person.name} was born?", city.mayor, "bridge",
                         ((person.name, PERSON_BORN_CITY), (city.name, CITY_MAYOR)))  # fmt: skip
    country = world.country[city.country]
    return _Question(f"What is the currency of the country where {person.name} was born?", country.currency, "bridge",
                     ((person.name, PERSON_BORN_CITY), (city.name, CITY_COUNTRY), (country.name, COUNTRY_CURRENCY)))  # fmt: skip


def _comparison(world: World, rng: random.Random) -> _Question | None:
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.sample(world.people, 2)
        if a.birth_year == b.birth_year:
            return None
        older = a if a.birth_year < b.birth_year else b
        return _Question(f"Who is older, {a.name} or {b.name}?", older.name, "comparison",
                         ((a.name, PERSON_BORN_YEAR), (b.name, PERSON_BORN_YEAR)))  # fmt: skip
    if kind == 1:
        x, y = rng.sample(world.companies, 2)
        if x.founded == y.founded:
            return None
        first = x if x.founded < y.founded else y
        return _Question(f"Which company was founded first, {x.name} or {y.name}?", first.name, "comparison",
                         ((x.name, COMPANY_FOUNDED), (y.name, COMPANY_FOUNDED)))  # fmt: skip
    if kind == 2:
        x, y = rng.sample(world.cities, 2)
        larger = x if x.population > y.population else y
        return _Question(f"Which city has a larger population, {x.name} or {y.name}?", larger.name, "comparison",
                         ((x.name, CITY_POPULATION), (y.name, CITY_POPULATION)))  # fmt: skip
    a = rng.choice(world.people)
    # Half the time pick someone from the same city, so "yes" and "no" are both common.
    same_city = [p for p in world.people if p.birth_city == a.birth_city and p is not a]
    b = rng.choice(same_city) if same_city and rng.random() < 0.5 else rng.choice(world.people)
    if b is a:
        return None
    answer = "yes" if a.birth_city == b.birth_city else "no"
    return _Question(f"Were {a.name} and {b.name} born in the same city?", answer, "comparison",
                     ((a.name, PERSON_BORN_CITY), (b.name, PERSON_BORN_CITY)))  # fmt: skip


def _record(
    question: _Question, world_articles: dict[str, list[str]], titles: list[str], rng: random.Random
) -> dict:
    gold = list(dict.fromkeys(title for title, _ in question.facts))
    distractors = rng.sample([t for t in titles if t not in gold], DISTRACTORS)
    context = [[title, world_articles[title]] for title in gold + distractors]
    rng.shuffle(context)
    return {
        "_id": f"{NAME}-{hashlib.sha256(question.text.encode()).hexdigest()[:12]}",
        "question": question.text,
        "answer": question.answer,
        "supporting_facts": [[title, sentence] for title, sentence in question.facts],
        "context": context,
        "type": question.kind,
        "level": "easy",
    }


def generate_records(
    split: Split, count: int, *, seed: int = 0, people: int = DEFAULT_PEOPLE
) -> list[dict]:
    """``count`` distinct questions of ``split`` as HotPotQA records (60% bridge, 40% comparison)."""
    world = build_world(people)
    world_articles = articles(world)
    titles = list(world_articles)
    rng = random.Random(f"{NAME}/{people}/{seed}/{split}")

    def draw() -> _Question:
        while True:
            question = _bridge(world, rng) if rng.random() < 0.6 else _comparison(world, rng)
            if question is not None:
                return question

    questions = draw_distinct(
        draw, lambda q: q.text, split=split, count=count, name=f"{NAME}:{people}"
    )
    return [_record(question, world_articles, titles, rng) for question in questions]


def load(
    split: Split, limit: int | None = None, *, seed: int = 0, people: int = DEFAULT_PEOPLE
) -> list[Example]:
    """The demo-qa examples of ``split`` (``limit`` of them, default :data:`DEFAULT_SIZES`)."""
    count = DEFAULT_SIZES[split] if limit is None else limit
    records = generate_records(split, count, seed=seed, people=people)
    return hotpotqa.load(
        (Record(record, f"{NAME} {split} #{index}", index) for index, record in enumerate(records)),
        dataset=NAME,
    )

"""``demo-hops``: a benchmark built to measure multi-hop tool use (design: ``docs/demo-hops.md``).

A generated world of fictional people, companies and books, with the cities and countries they
relate to, rendered as a corpus of short articles (one fact per sentence, in a fixed order), e.g.::

    Vesna Kortel is a geologist who was born in 1954. She was born in the city of Dravenholm.
    She works for Belmar Optics.

Questions need one, two or three articles, and none can be answered from the question alone:

- no answer is a name the question mentions, and there are no yes/no or "A or B" questions: a
  comparison asks for something about the winner ("In which city was the older of A and B
  born?"), and only where the loser's answer differs;
- held-out entities: the people, companies and books form three disjoint groups, one per split
  (train, validation, test), and every link between them (employer, founder, author) stays inside
  a group. Cities and countries are shared: they are intermediate hops and answers, never the
  subject of a question. So a validation or test question names only entities that no training
  question mentions, and its subject's article supports no training question;
- strata: every split holds the same share of each (kind, hops) stratum in :data:`STRATA`, drawn
  by the same generator, and lists them interleaved, so any prefix of a split is balanced too.

Every :class:`~swirl.schema.Example` has ``metadata`` ``type`` (attribute, bridge, comparison),
``hops`` (the number of articles needed) and ``template`` (the question's pattern), and
``supporting_facts`` naming every article needed. The splits are fixed (the seed of
:func:`swirl.data.load_examples` does not apply); their fingerprints are pinned in the tests and
the doc, so a changed generator needs a new dataset name.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from swirl.corpus import Document
from swirl.data.demo_qa import (
    CITY_COUNTRY,
    COMPANY_FOUNDED,
    COMPANY_FOUNDER,
    COMPANY_HEADQUARTERS,
    COUNTRY_CAPITAL,
    COUNTRY_CURRENCY,
    PERSON_BORN_CITY,
    PERSON_BORN_YEAR,
    PERSON_EMPLOYER,
    City,
    Company,
    Country,
    Person,
)
from swirl.data.vocabulary import (
    CITY_SUFFIXES,
    COUNTRY_SUFFIXES,
    CURRENCIES,
    FIRST_NAMES,
    INDUSTRIES,
    OCCUPATIONS,
    InventedNames,
)
from swirl.schema import Example, SupportingFact

NAME = "demo-hops"
SPLITS = ("train", "validation", "test")
SIZES: dict[str, int] = {"train": 2000, "validation": 250, "test": 500}
# (kind, hops): every split holds SIZES[split] / len(STRATA) questions of each.
STRATA: tuple[tuple[str, int], ...] = (
    ("attribute", 1),
    ("bridge", 2),
    ("bridge", 3),
    ("comparison", 2),
    ("comparison", 3),
)
COUNTRIES = len(CURRENCIES)
CITIES = 4 * COUNTRIES
PEOPLE_PER_QUESTION = 0.4  # a group's people per question of its split; companies, books: 1/4
BOOK_NOUNS = ["Letters", "Chronicle", "Garden", "Harbour", "Winter", "Mirror", "Road", "Tides",
              "Lantern", "Orchard"]  # fmt: skip
BOOK_GENRES = ["novel", "play", "memoir", "poetry collection", "story collection"]
BOOK_PUBLISHED, BOOK_AUTHOR = 0, 1
PERSON_OCCUPATION = PERSON_BORN_YEAR  # the first sentence says both


@dataclass
class Book:
    name: str
    genre: str
    published: int
    author: str


@dataclass
class Group:
    """The people, companies and books that only one split's questions ask about."""

    people: list[Person] = field(default_factory=list)
    companies: list[Company] = field(default_factory=list)
    books: list[Book] = field(default_factory=list)


@dataclass
class HopsWorld:
    countries: list[Country]
    cities: list[City]
    groups: dict[str, Group]

    def __post_init__(self) -> None:
        self.entity: dict[str, Person | Company | Book | City | Country] = {
            e.name: e for e in [*self.countries, *self.cities]
        }
        for group in self.groups.values():
            self.entity.update((e.name, e) for e in [*group.people, *group.companies, *group.books])


def group_sizes(split: str) -> dict[str, int]:
    """Entity counts of the group whose entities ``split``'s questions ask about."""
    people = round(SIZES[split] * PEOPLE_PER_QUESTION)
    return {"people": people, "companies": people // 4, "books": people // 4}


LAST_YEAR = 2023


def _year_after(rng: random.Random, born: int, earliest: int, latest: int) -> int:
    """A year ``earliest`` to ``latest`` years after ``born``, uniform, and never after
    :data:`LAST_YEAR` (drawn within the range, so no year collects the overflow)."""
    return rng.randint(born + earliest, min(born + latest, LAST_YEAR))


def _group(world_cities: list[City], names: InventedNames, rng: random.Random, split: str) -> Group:
    sizes = group_sizes(split)
    people = []
    for _ in range(sizes["people"]):
        first, female = rng.choice(FIRST_NAMES)
        people.append(
            Person(
                f"{first} {names.stem()}",
                female,
                rng.randint(1900, 2000),
                rng.choice(OCCUPATIONS),
                birth_city=rng.choice(world_cities).name,
            )
        )
    companies = []
    for founder in rng.sample(people, sizes["companies"]):
        word, industry = rng.choice(INDUSTRIES)
        company = Company(
            f"{names.stem()} {word}",
            industry,
            _year_after(rng, founder.birth_year, 22, 60),
            founder=founder.name,
            headquarters=rng.choice(world_cities).name,
        )
        founder.employer = company.name  # founders work for their own company
        companies.append(company)
    for person in people:
        if not person.employer:
            person.employer = rng.choice(companies).name
    books = []
    for _ in range(sizes["books"]):
        author = rng.choice(people)
        books.append(
            Book(
                f"{names.stem()} {rng.choice(BOOK_NOUNS)}",
                rng.choice(BOOK_GENRES),
                _year_after(rng, author.birth_year, 20, 85),
                author.name,
            )
        )
    return Group(people, companies, books)


@functools.cache
def build_world() -> HopsWorld:
    """The one demo-hops world (deterministic)."""
    rng = random.Random(f"{NAME}/world")
    names = InventedNames(rng, NAME)
    countries = [
        Country(names.stem() + rng.choice(COUNTRY_SUFFIXES), currency)
        for currency in rng.sample(CURRENCIES, COUNTRIES)
    ]
    cities = []
    for index in range(CITIES):
        # The first cities go one to each country, so every country has a city for its capital.
        country = countries[index] if index < len(countries) else rng.choice(countries)
        cities.append(
            City(
                names.stem() + rng.choice(CITY_SUFFIXES),
                country.name,
                rng.randint(900, 1900),
                rng.randint(5, 950) * 1000 + rng.randint(0, 999),
            )
        )
    for country in countries:
        country.capital = rng.choice([c.name for c in cities if c.country == country.name])
    groups = {split: _group(cities, names, rng, split) for split in SPLITS}
    return HopsWorld(countries, cities, groups)


def _a(word: str) -> str:
    """``word`` with its indefinite article ("an architect", "a chemist")."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def articles(world: HopsWorld) -> dict[str, list[str]]:
    """Title -> sentences (every sentence after the first has a leading space)."""
    result: dict[str, list[str]] = {}
    for c in world.countries:
        result[c.name] = [
            f"{c.name} is a country whose capital is {c.capital}.",
            f" The currency of {c.name} is the {c.currency}.",
        ]
    for c in world.cities:
        result[c.name] = [
            f"{c.name} is a city in {c.country}.",
            f" {c.name} was founded in {c.founded}.",
            f" {c.name} has a population of {c.population:,}.",
        ]
    for group in world.groups.values():
        for p in group.people:
            result[p.name] = [
                f"{p.name} is {_a(p.occupation)} who was born in {p.birth_year}.",
                f" {p.pronoun} was born in the city of {p.birth_city}.",
                f" {p.pronoun} works for {p.employer}.",
            ]
        for c in group.companies:
            result[c.name] = [
                f"{c.name} is {_a(c.industry)} company founded in {c.founded}.",
                f" {c.name} was founded by {c.founder}.",
                f" The headquarters of {c.name} are in {c.headquarters}.",
            ]
        for b in group.books:
            result[b.name] = [
                f"{b.name} is {_a(b.genre)} first published in {b.published}.",
                f" {b.name} was written by {b.author}.",
            ]
    return result


def corpus() -> list[Document]:
    """Every article of the world, one search corpus for all splits (ids are the titles)."""
    return [
        Document(id=title, title=title, text="".join(sentences))
        for title, sentences in articles(build_world()).items()
    ]


# --- questions ---------------------------------------------------------------------------------

Entity = Person | Company | Book | City | Country
Fact = tuple[str, int]  # (article title, sentence index)
# attribute -> (the entity type it applies to, its value, the sentence stating it)
_ATTRIBUTES: dict[str, tuple[type, Callable[[Entity], str | int], int]] = {
    "birth_year": (Person, lambda p: p.birth_year, PERSON_BORN_YEAR),
    "birth_city": (Person, lambda p: p.birth_city, PERSON_BORN_CITY),
    "occupation": (Person, lambda p: p.occupation, PERSON_OCCUPATION),
    "employer": (Person, lambda p: p.employer, PERSON_EMPLOYER),
    "founded": (Company, lambda c: c.founded, COMPANY_FOUNDED),
    "founder": (Company, lambda c: c.founder, COMPANY_FOUNDER),
    "headquarters": (Company, lambda c: c.headquarters, COMPANY_HEADQUARTERS),
    "published": (Book, lambda b: b.published, BOOK_PUBLISHED),
    "author": (Book, lambda b: b.author, BOOK_AUTHOR),
    "country": (City, lambda c: c.country, CITY_COUNTRY),
    "currency": (Country, lambda c: c.currency, COUNTRY_CURRENCY),
    "capital": (Country, lambda c: c.capital, COUNTRY_CAPITAL),
}


@dataclass(frozen=True)
class Template:
    """A question about one entity reached by following ``path`` (attribute names) from it;
    ``text`` has ``{r}`` where the entity is referred to (by name, or as a comparison's winner)."""

    subject: type
    path: tuple[str, ...]
    text: str

    @property
    def name(self) -> str:
        return f"{self.subject.__name__.lower()}.{'.'.join(self.path)}"


_TEMPLATES = [
    Template(Person, ("birth_year",), "In which year was {r} born?"),
    Template(Person, ("birth_city",), "In which city was {r} born?"),
    Template(Person, ("occupation",), "What is the occupation of {r}?"),
    Template(Person, ("employer",), "Which company does {r} work for?"),
    Template(Person, ("birth_city", "country"), "In which country was {r} born?"),
    Template(Person, ("employer", "founded"), "In which year was the company that {r} works for founded?"),
    Template(Person, ("employer", "headquarters"), "In which city are the headquarters of the company that {r} works for?"),
    Template(Person, ("employer", "founder"), "Who founded the company that {r} works for?"),
    Template(Person, ("birth_city", "country", "currency"), "What is the currency of the country where {r} was born?"),
    Template(Person, ("birth_city", "country", "capital"), "What is the capital of the country where {r} was born?"),
    Template(Person, ("employer", "headquarters", "country"), "In which country are the headquarters of the company that {r} works for?"),
    Template(Company, ("founded",), "In which year was {r} founded?"),
    Template(Company, ("founder",), "Who founded {r}?"),
    Template(Company, ("headquarters",), "In which city are the headquarters of {r}?"),
    Template(Company, ("headquarters", "country"), "In which country are the headquarters of {r}?"),
    Template(Company, ("founder", "birth_year"), "In which year was the founder of {r} born?"),
    Template(Company, ("founder", "birth_city"), "In which city was the founder of {r} born?"),
    Template(Company, ("headquarters", "country", "currency"), "What is the currency of the country where {r} has its headquarters?"),
    Template(Company, ("founder", "birth_city", "country"), "In which country was the founder of {r} born?"),
    Template(Book, ("published",), "In which year was {r} first published?"),
    Template(Book, ("author",), "Who wrote {r}?"),
    Template(Book, ("author", "birth_year"), "In which year was the author of {r} born?"),
    Template(Book, ("author", "birth_city"), "In which city was the author of {r} born?"),
    Template(Book, ("author", "employer"), "Which company does the author of {r} work for?"),
    Template(Book, ("author", "birth_city", "country"), "In which country was the author of {r} born?"),
    Template(Book, ("author", "employer", "founded"), "In which year was the company that the author of {r} works for founded?"),
]  # fmt: skip

# A comparison's winner: (the attribute compared, smaller value wins?, how the winner is named).
_COMPARISONS: dict[type, list[tuple[str, bool, str]]] = {
    Person: [
        ("birth_year", True, "the older of {a} and {b}"),
        ("birth_year", False, "the younger of {a} and {b}"),
    ],
    Company: [
        ("founded", True, "the older of the companies {a} and {b}"),
        ("founded", False, "the younger of the companies {a} and {b}"),
    ],
    Book: [
        ("published", True, "the earlier of the books {a} and {b}"),
        ("published", False, "the later of the books {a} and {b}"),
    ],
}


def templates_of(kind: str, hops: int) -> list[Template]:
    """The templates of one stratum: a named subject's path reads ``hops`` articles; a
    comparison reads the loser's article too, so its path is one shorter."""
    if (kind, hops) not in STRATA:
        raise ValueError(f"{NAME}: no stratum ({kind}, {hops}); the strata are {STRATA}")
    length = hops - 1 if kind == "comparison" else hops
    return [t for t in _TEMPLATES if len(t.path) == length]


def walk(world: HopsWorld, start: Entity, path: tuple[str, ...]) -> tuple[str, list[Fact]]:
    """The value ``path`` reaches from ``start`` and the facts (article, sentence) read on the way."""
    entity: Entity | None = start
    facts: list[Fact] = []
    value = ""
    for attribute in path:
        kind, get, sentence = _ATTRIBUTES[attribute]
        if not isinstance(entity, kind):
            raise TypeError(f"{attribute} does not apply to {type(entity).__name__}")
        value = str(get(entity))
        facts.append((entity.name, sentence))
        entity = world.entity.get(value)
    return value, facts


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    kind: str
    hops: int
    template: str
    facts: tuple[Fact, ...]


def _subjects(group: Group, kind: type) -> list[Entity]:
    return {Person: group.people, Company: group.companies, Book: group.books}[kind]


def _question(
    world: HopsWorld, group: Group, kind: str, hops: int, rng: random.Random
) -> Question | None:
    """One random question of the stratum, or None when the draw would be guessable."""
    template = rng.choice(templates_of(kind, hops))
    candidates = _subjects(group, template.subject)
    if kind != "comparison":
        subject = rng.choice(candidates)
        answer, facts = walk(world, subject, template.path)
        text = template.text.format(r=subject.name)
    else:
        attribute, smaller_wins, phrase = rng.choice(_COMPARISONS[template.subject])
        a, b = rng.sample(candidates, 2)
        (value_a, fact_a), (value_b, fact_b) = (walk(world, e, (attribute,)) for e in (a, b))
        if value_a == value_b:
            return None  # a tie has no winner
        winner, loser = (a, b) if (int(value_a) < int(value_b)) == smaller_wins else (b, a)
        answer, facts = walk(world, winner, template.path)
        if walk(world, loser, template.path)[0] == answer:
            return None  # answerable without comparing
        facts = [*fact_a, *fact_b, *facts]
        text = template.text.format(r=phrase.format(a=a.name, b=b.name))
    if answer.casefold() in text.casefold():
        return None  # e.g. "Who founded the company that X works for?" when X did
    # Each fact once, where it is last read: the answer's sentence comes last.
    facts = list(dict.fromkeys(reversed(facts)))[::-1]
    if len({title for title, _ in facts}) != hops:
        raise AssertionError(f"{NAME}: {text!r} needs {len(facts)} articles, not {hops}")
    return Question(text, answer, kind, hops, template.name, tuple(facts))


@functools.cache
def _questions(split: str) -> tuple[Question, ...]:
    """Every question of ``split``: each stratum drawn apart, then interleaved."""
    world = build_world()
    group = world.groups[split]
    per_stratum = SIZES[split] // len(STRATA)
    drawn: list[list[Question]] = []
    for kind, hops in STRATA:
        rng = random.Random(f"{NAME}/{split}/{kind}/{hops}")
        seen: set[str] = set()
        questions: list[Question] = []
        misses = 0
        while len(questions) < per_stratum:
            question = _question(world, group, kind, hops, rng)
            if question is None or question.text in seen:
                misses += 1
                if misses > 100 * per_stratum:
                    raise RuntimeError(f"{NAME}: cannot draw {per_stratum} {kind}/{hops} questions")
                continue
            seen.add(question.text)
            questions.append(question)
        drawn.append(questions)
    return tuple(q for row in zip(*drawn, strict=True) for q in row)


def _example(question: Question) -> Example:
    return Example(
        id=f"{NAME}-{hashlib.sha256(question.text.encode()).hexdigest()[:12]}",
        question=question.text,
        answers=[question.answer],
        dataset=NAME,
        task="qa",
        supporting_facts=[
            SupportingFact(title=title, sentence=sentence, document=title)
            for title, sentence in question.facts
        ],
        metadata={"type": question.kind, "hops": question.hops, "template": question.template},
    )


# The training questions the prompt shows solved (swirl.prompts.dataset_template): a bridge and
# a comparison whose answers are stated in one self-contained sentence.
PROMPT_TEMPLATES = ("company.founder.birth_city", "company.founded")
PROMPT_KINDS = ("bridge", "comparison")


def prompt_questions() -> list[Example]:
    """The first training question of each (kind, template) of :data:`PROMPT_TEMPLATES`."""
    train = [_example(q) for q in _questions("train")]
    return [
        next(e for e in train if (e.metadata["type"], e.metadata["template"]) == wanted)
        for wanted in zip(PROMPT_KINDS, PROMPT_TEMPLATES, strict=True)
    ]


def load(split: str, limit: int | None = None) -> list[Example]:
    """The first ``limit`` (default: all :data:`SIZES`) questions of ``split``."""
    if split not in SPLITS:
        raise ValueError(f"{NAME}: split must be one of {', '.join(SPLITS)}, got {split!r}")
    questions = _questions(split)
    if limit is not None and limit > len(questions):
        raise ValueError(
            f"{NAME}: the {split} split has {len(questions)} questions, {limit} requested"
        )
    return [_example(q) for q in questions[:limit]]

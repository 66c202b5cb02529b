"""Embedded creature-name generator: no network, no model, a few microseconds per name.

Names are glued together from small hand-picked morpheme tables. The builders stay deliberately naive
(they may produce "Quartzclaw" or "Mossscale"); every candidate is then checked against NAME_PATTERN
and the deny-list, and a rejected one is simply redrawn from the same rng. That keeps the rules in one
place, and the output is still a pure function of the rng state.
"""

import random
import re
from collections.abc import Iterable
from typing import Final

from core.draws import Draws

__all__ = ["DENIED_NAMES", "NAME_PATTERN", "LocalNameGenerator", "local_name"]

# Latin-1 letters are accepted so that names from other sources (a remote generator, user input) can be
# validated with the same pattern; this generator itself only emits ASCII.
_LOWER: Final = "a-zß-öø-ÿ"
_UPPER: Final = "A-ZÀ-ÖØ-Þ"
# "y" counts as a vowel, otherwise the spec's own "Zephyrix" would hold a four-consonant run ("phyr").
_CONSONANT: Final = "[b-df-hj-np-tv-xzßçñðþ]"
# Separators are skipped when counting runs: "Krast-Throk" is just as hard to say as "Krastthrok".
_SEP: Final = "['-]?"

NAME_PATTERN: Final[re.Pattern[str]] = re.compile(
    rf"""
    \A
    (?=.{{3,20}}\Z)                                   # length, separators included
    (?!.*(?i:([{_LOWER}]){_SEP}\1{_SEP}\1))           # no letter three times in a row, whatever the case
    (?!.*(?i:(?:{_CONSONANT}{_SEP}){{3}}{_CONSONANT}))  # at most three consonants in a row
    [{_UPPER}][{_LOWER}{_UPPER}]*
    (?:'[{_LOWER}{_UPPER}]+|-[{_UPPER}][{_LOWER}{_UPPER}]*)*  # separators single, inside, and "-" capitalises
    \Z
    """,
    re.VERBOSE,
)

# The best-known species plus every one that sampling millions of draws against a longer list of real names
# turned up (a few more may appear about once in a few million draws). Compared with separators removed and
# case folded, so "Pika-Chu" is caught too.
DENIED_NAMES: Final[frozenset[str]] = frozenset(
    {
        "pikachu", "raichu", "charizard", "charmander", "bulbasaur", "squirtle", "mewtwo", "mew", "eevee",
        "jigglypuff", "snorlax", "gengar", "lucario", "onix", "voltorb", "magmar", "arbok", "ekans", "golem",
        "lapras", "zapdos", "moltres", "articuno", "dragonite", "gyarados", "vulpix", "ninetales", "psyduck",
        "abra", "kadabra", "alakazam", "machamp", "haunter", "gastly", "ditto", "vaporeon", "jolteon",
        "flareon", "umbreon", "espeon", "sylveon", "glaceon", "leafeon", "togepi", "lugia", "celebi",
        "kyogre", "groudon", "rayquaza", "absol", "garchomp", "greninja", "zekrom", "reshiram", "arceus",
        "dialga", "palkia", "giratina", "zorua", "zoroark", "aron", "lairon", "aggron", "seel", "tyrogue",
        "venomoth", "ferrothorn", "terrakion", "natu", "xatu", "tauros", "paras", "grimer", "gligar", "riolu",
        "seadra", "numel", "entei", "pichu", "dodrio", "lampent",
    }
)  # fmt: skip

# In all the tables below, duplicated entries are weights (cheaper than a weighted-choice call per draw):
# simple sounds should dominate, since clusters and diphthongs quickly make names unreadable.
_ONSETS: Final = (
    "", "", "", "", "b", "d", "f", "g", "h", "k", "k", "l", "l", "m", "n", "n", "p", "r", "r", "s", "s", "t",
    "t", "v", "v", "z", "z", "th", "sh", "kh", "ch", "br", "dr", "gr", "kr", "tr", "vr", "gl", "fl", "sk",
    "st", "qu", "zh", "x", "j", "w",
)  # fmt: skip
_NUCLEI: Final = (
    "a", "a", "a", "a", "e", "e", "e", "i", "i", "i", "o", "o", "o", "u", "u", "y",
    "ae", "ai", "au", "ei", "io",
)  # fmt: skip
_CODAS: Final = ("", "", "", "", "", "", "", "", "n", "r", "l", "s", "x", "k", "m", "th", "z")
# Vowel + consonant links a root to its suffix ("volt" + "ar" + "ix"); far more combinations than the bare
# root + suffix pairs, which alone would repeat every few hundred draws.
_LINK_VOWELS: Final = "aaeeiioouy"
_LINK_CONSONANTS: Final = "nnrrllsskxmvztdgb"

# Roots carry the creature's theme (element, habitat, body part), so a name hints at what it is.
_ROOTS: Final = (
    "aqua", "volt", "moss", "ember", "frost", "terra", "umbra", "lumi", "zephyr", "gale", "storm", "cinder",
    "thorn", "brine", "coral", "ferro", "glim", "nox", "sol", "luna", "quartz", "rune", "spark", "ash",
    "magma", "tide", "drak", "gloom", "vine", "briar", "onyx", "shade", "aero", "hydro", "geo", "cryo",
    "pyro", "sylva", "nimbo", "echo", "mire", "dusk", "dawn", "flint", "sable", "wisp", "krag", "bram",
    "fen", "howl", "blaze", "pyre", "ignis", "torr", "rill", "reef", "kelp", "silt", "loam", "stone",
    "gust", "hail", "rime", "glace", "fulgur", "static", "ozone", "petal", "bloom", "spore", "fungi",
    "toxi", "venom", "bone", "grave", "spectra", "psy", "astra", "nova", "comet", "iron", "cobalt",
    "rust", "chrome", "sand", "dune", "mud", "peat", "burrow", "cave", "crag", "glacier", "ripple",
)  # fmt: skip
_SUFFIXES: Final = (
    "claw", "fin", "ix", "on", "ara", "quill", "tail", "wing", "horn", "fang", "mane", "scale", "maw",
    "ling", "mite", "or", "ax", "us", "ith", "yx", "eon", "ra", "ros", "dra", "pex", "shell", "spine",
    "crest", "hide", "hoof", "pod", "ran", "aran", "el", "ette", "ion", "ire", "oth", "ul", "ak", "isk",
    "ora", "yn", "ent", "azor", "ik", "ela", "orn", "ux", "ia",
)  # fmt: skip
# Short clan-like tags for the hyphenated form ("Embrel-Tok").
_TAGS: Final = (
    "Tok", "Ra", "Zul", "Vex", "Mor", "Kai", "Rix", "Dun", "Ka", "Tor", "Nox", "Ul", "Ash", "Gar", "Vos",
    "Ix", "Ren", "Tal", "Zor", "Ek",
)  # fmt: skip

_VOWELS: Final = frozenset("aeiouy")


def _fold(name: str) -> str:
    return name.replace("'", "").replace("-", "").casefold()


def _join(head: str, tail: str) -> str:
    # Elide a vowel clash ("aqua" + "ara" -> "aquara") rather than leave a hiatus like "aquaara". Heads of
    # two letters are kept whole, or a syllable would shrink to a single letter.
    if head[-1:] in _VOWELS and tail[:1] in _VOWELS and len(head) > 2:
        head = head[:-1]
    return head + tail


def _syllable(rng: Draws) -> str:
    return rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS)


def _invented_word(rng: Draws) -> str:
    word = _join(_syllable(rng), _syllable(rng))
    if rng.random() < 0.3:
        word = _join(word, _syllable(rng))
    return _join(word, rng.choice(_SUFFIXES)) if rng.random() < 0.6 else word


def _themed_word(rng: Draws) -> str:
    word = rng.choice(_ROOTS)
    if rng.random() < 0.88:
        word = _join(word, rng.choice(_LINK_VOWELS) + rng.choice(_LINK_CONSONANTS))
    return _join(word, rng.choice(_SUFFIXES))


def _capitalise(word: str) -> str:
    return word[:1].upper() + word[1:]


def _candidate(rng: Draws) -> str:
    # Plain words make up most names; apostrophes and hyphens stay occasional so they still feel special.
    roll = rng.random()
    if roll < 0.42:
        return _capitalise(_themed_word(rng))  # "Aquaclaw", "Mossquill"
    if roll < 0.78:
        return _capitalise(_invented_word(rng))  # "Zephyrix"
    if roll < 0.89:
        return _capitalise(_syllable(rng)) + "'" + _invented_word(rng)  # "Khra'gzathon"
    word = _themed_word(rng) if rng.random() < 0.5 else _invented_word(rng)
    tag = rng.choice(_TAGS) if rng.random() < 0.5 else _capitalise(_syllable(rng))
    return _capitalise(word) + "-" + tag  # "Embrel-Tok"


class LocalNameGenerator:
    """Draws creature names from the rng it is given and nothing else, so a seed pins the name."""

    def __init__(self, denied: Iterable[str] = DENIED_NAMES) -> None:
        self._denied = frozenset(_fold(name) for name in denied)

    def is_allowed(self, name: str) -> bool:
        return NAME_PATTERN.match(name) is not None and _fold(name) not in self._denied

    def generate(self, rng: Draws) -> str:
        # Rejection sampling: most candidates pass, so the expected number of rounds is close to one, and
        # redrawing from the same rng keeps the result deterministic.
        while True:
            name = _candidate(rng)
            if self.is_allowed(name):
                return name


_DEFAULT_GENERATOR: Final = LocalNameGenerator()


def local_name(seed: int) -> str:
    """The name a fresh ``random.Random(seed)`` yields; handy for tests and stable ids."""
    return _DEFAULT_GENERATOR.generate(random.Random(seed))

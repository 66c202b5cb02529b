"""Pull a creature name out of whatever text an LLM answered.

The prompt asks for `{"name":"<name>"}`, but small local models wrap it in prose or markdown fences, drop or
double braces, use single quotes or other keys, stop mid-string at max_tokens, or answer the bare name. Worse,
they sometimes echo the template, which once made every creature "name". This module is pure (no I/O, no
logging): the caller logs `extract_name.*` events from `Extraction.reason`.

Candidates are tried from the most to the least structured source, and the first one that sanitises wins:
the whole answer as JSON, then fenced blocks, JSON objects embedded in prose, lenient `key: value` pairs,
the whole answer as one bare word, and last a single markdown-emphasised word in prose.

Decisions:
- A name is one word. "Aqua Claw" is refused ("multiple_words") rather than glued into "Aquaclaw" or
  "Aqua-Claw": gluing would also turn prose such as "Here is your name" into a name, and the caller has a
  local fallback, so a refusal costs little.
- A value cut off by max_tokens (`{"name":"Khra'gzat`) is accepted when it sanitises and holds at least
  three letters: the model had committed to a name, and a prefix of an invented word is still a word.
- With several candidates (two JSON objects in prose), the first valid one in the order above wins.
- Everything up to the last `</think>` is dropped: reasoning models draft names there before answering.
"""

import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, NamedTuple

__all__ = ["MAX_CONTENT_CHARS", "PLACEHOLDERS", "Extraction", "extract_name", "sanitize_name"]

# A name fits in a few dozen characters; cutting first bounds the cost of every step, whatever the model sent.
MAX_CONTENT_CHARS: Final[int] = 2000
MIN_NAME_CHARS: Final = 3
MAX_NAME_CHARS: Final = 24
MIN_TRUNCATED_LETTERS: Final = 3

# Keys, template fillers and "no value" words a model echoes instead of inventing a name. They are compared
# folded (accents, case and non-letters dropped), so "<NAME>", "Pokémon" and "n/a" are all caught. The filler
# words at the end are what a model answers alone when it refuses or rambles; none is a creature name.
PLACEHOLDERS: Final[frozenset[str]] = frozenset(
    {
        "name", "names", "nom", "noms", "nome", "nombre", "nom de la créature", "nom de la creature",
        "creature", "creatures", "créature", "créatures", "creature_name", "creature name", "creatureName",
        "creature's name", "pokemon", "pokémon", "pokemons", "pokemon_name", "pokémon name", "pokemonName",
        "monster", "monstre", "monster_name", "nom_creature", "nom du pokémon", "nom_pokemon",
        "your name", "your_name", "yourname", "my name", "the name", "a name", "votre nom", "ton nom", "le nom",
        "un nom", "<name>", "<nom>", "[name]", "{name}", "name here", "insert name", "new name", "random name",
        "generated name", "creature name here",
        "string", "str", "text", "texte", "example", "exemple", "sample", "placeholder", "value", "valeur", "key",
        "undefined", "null", "nil", "none", "unknown", "inconnu", "json", "n/a", "tbd", "todo", "answer",
        "response", "réponse", "output",
        "sure", "okay", "ok", "yes", "oui", "no", "non", "hello", "bonjour", "here", "voici", "sorry", "désolé",
        "certainly",
    }
)  # fmt: skip

_SEPARATORS: Final = "'-"
# Unicode letters above this (Greek, Cyrillic, IPA, CJK...) do not belong in a Latin-script creature name.
_LATIN_END: Final = 0x250
_MICRO_SIGN: Final = "\u00b5"  # a lowercase letter for Unicode, but a unit symbol to a reader
_WRAPPERS: Final = '"«»*_`~'  # never part of a name, so stripped from either edge even when unpaired
_TRAILING: Final = ".,;:!?…"  # sentence punctuation after a name ("Voltaran!")

# Typographic variants become their ASCII forms before anything else, so that JSON parses, quotes pair up and
# "Khra’gzat" equals "Khra'gzat". Zero-width characters are invisible and carry nothing, so they go.
_TYPOGRAPHY: Final = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
        "\u2010": "-", "\u2011": "-", "\u200b": None, "\u200c": None, "\u200d": None, "\ufeff": None,
    }
)  # fmt: skip

_THINK_END: Final = "</think>"
_THINK_START: Final = "<think>"
_FENCE: Final = "```"
_FENCE_TAG: Final = re.compile(r"[A-Za-z0-9_+.-]{0,20}")
_MAX_JSON_DEPTH: Final = 8
_MAX_JSON_CHILDREN: Final = 64
_MAX_DECODE_ATTEMPTS: Final = 64
_DECODER: Final = json.JSONDecoder()

# Key spellings seen in answers; JSON keys are matched folded against _NAME_KEYS instead of this pattern.
_KEY_PATTERN: Final = (
    r"(?:creature|pok[eé]mon|monster)[\s_-]?name"
    r"|nom(?:[\s_-]?(?:de[\s_-]?la[\s_-]?)?cr[eé]ature|[\s_-]?(?:du[\s_-]?)?pok[eé]mon)?"
    r"|name"
)
# Every repetition is bounded and adjacent pieces match disjoint characters, so a miss costs linear time.
_KEY_VALUE: Final = re.compile(
    rf"""
    (?<!\w)["'*_]{{0,3}}(?:{_KEY_PATTERN})["'*_]{{0,3}}  # "nickname" or "my_name" are other keys
    \s{{0,20}}[:=][\s*_]{{0,20}}                               # "**Name:** X" puts bold after the colon
    (?:
        "(?P<dq>[^"\n]{{0,100}})(?P<dq_end>"?)
        # Inside single quotes an apostrophe ends the value only where a delimiter follows: 'Khra'gzat'.
      | '(?P<sq>(?:[^'\n]|'(?![ \t]*(?:[,}}\]\n]|\Z))){{0,100}})(?P<sq_end>'?)
      | (?P<bare>[^\s"'{{}}\[\],;.!?(*`][^\n"{{}}\[\],;.!?(*`]{{0,99}})
    )
    """,
    re.IGNORECASE | re.VERBOSE,
)
# "Name: Voltaran - an electric mouse": what follows a spaced dash describes the name.
_SPACED_DASH: Final = re.compile(r"\s[-–—]\s")
_EMPHASIS: Final = re.compile(r"\*\*([^*\n]{1,64})\*\*|__([^_\n]{1,64})__|`([^`\n]{1,64})`")


@dataclass(frozen=True, slots=True)
class Extraction:
    name: str | None
    """The sanitised name, or None."""
    reason: str
    """Where the name came from ("json", "fenced", ...), or why there is none ("placeholder", ...)."""


class _Candidate(NamedTuple):
    text: str
    source: str  # the reason reported if this candidate wins
    truncated: bool = False


def extract_name(content: str | None) -> Extraction:
    """The first valid creature name in a model's answer, with how it was found or why none was."""
    if content is None:
        return Extraction(None, "empty")
    if not isinstance(content, str):
        return Extraction(None, "not_text")
    text = content[:MAX_CONTENT_CHARS].translate(_TYPOGRAPHY)
    text = unicodedata.normalize("NFC", text)
    text, thinking = _after_thinking(text)
    if thinking:
        return Extraction(None, "unfinished_thinking")
    if not text.strip():
        return Extraction(None, "empty")
    return _first_valid(_candidates(text))


def sanitize_name(candidate: str) -> str | None:
    """`candidate` as a creature name (decoration stripped, capitalised), or None if it cannot be one."""
    if not isinstance(candidate, str):
        return None
    return _assess(candidate)[0]


def _first_valid(candidates: Iterable[_Candidate]) -> Extraction:
    # The first refusal is the most telling one: later candidates come from vaguer sources.
    first_refusal: str | None = None
    for candidate in candidates:
        name, verdict = _judge(candidate)
        if name is not None:
            return Extraction(name, candidate.source)
        first_refusal = first_refusal or verdict
    return Extraction(None, first_refusal or "no_candidate")


def _after_thinking(text: str) -> tuple[str, bool]:
    """The answer after any reasoning block, and whether the model stopped while still reasoning."""
    end = text.rfind(_THINK_END)
    if end != -1:
        return text[end + len(_THINK_END) :], False
    return text, text.lstrip().startswith(_THINK_START)


def _candidates(text: str) -> Iterator[_Candidate]:
    yield from _whole_json(text, "json")
    for block in _fenced_blocks(text):
        yield from _from_block(block)
    yield from _embedded_json(text, "json_in_text")
    yield from _key_values(text)
    yield from _bare(text, "bare")
    yield from _emphasised(text)


def _from_block(block: str) -> Iterator[_Candidate]:
    yield from _whole_json(block, "fenced")
    yield from _embedded_json(block, "fenced")
    # Truncation still matters inside a fence (the 3-letter rule), only the reported source changes.
    yield from (candidate._replace(source="fenced") for candidate in _key_values(block))
    yield from _bare(block, "fenced")


def _fenced_blocks(text: str) -> Iterator[str]:
    # Odd pieces are fence contents; an unclosed last fence (cut by max_tokens) still counts.
    for piece in text.split(_FENCE)[1::2]:
        tag, newline, body = piece.partition("\n")
        yield body if newline and body.strip() and _FENCE_TAG.fullmatch(tag.strip()) else piece


def _whole_json(text: str, source: str) -> Iterator[_Candidate]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays
        return
    yield from _keyed_strings(value, source, 0)


def _embedded_json(text: str, source: str) -> Iterator[_Candidate]:
    position = text.find("{")
    attempts = 0
    while position != -1 and attempts < _MAX_DECODE_ATTEMPTS:
        attempts += 1
        try:
            value, end = _DECODER.raw_decode(text, position)
        except (ValueError, RecursionError):
            # "{{...}}" decodes from the second brace, so every brace is a possible start.
            position = text.find("{", position + 1)
            continue
        yield from _keyed_strings(value, source, 0)
        position = text.find("{", end)  # braces inside the decoded object were searched by _keyed_strings


def _keyed_strings(value: object, source: str, depth: int) -> Iterator[_Candidate]:
    """String values under a name key, this level first, then nested ones: `{"creature": {"name": ...}}`."""
    if depth > _MAX_JSON_DEPTH:
        return
    children: list[object]
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and isinstance(item, str) and _fold(key) in _NAME_KEYS:
                yield _Candidate(item, source)
        children = list(value.values())
    elif isinstance(value, list):
        children = value
    else:
        return  # a bare JSON string is the bare strategy's job; numbers and null name nothing
    for child in children[:_MAX_JSON_CHILDREN]:
        yield from _keyed_strings(child, source, depth + 1)


def _key_values(text: str) -> Iterator[_Candidate]:
    for match in _KEY_VALUE.finditer(text):
        if match["dq"] is not None:
            value, truncated = match["dq"], not match["dq_end"]
        elif match["sq"] is not None:
            value, truncated = match["sq"], not match["sq_end"]
        else:
            value, truncated = _SPACED_DASH.split(match["bare"], maxsplit=1)[0], False
        yield _Candidate(value, "truncated_json" if truncated else "key_value", truncated)


def _bare(text: str, source: str) -> Iterator[_Candidate]:
    # Only a lone word: taking one word out of a sentence would turn prose ("Sure", "Here") into names.
    word = _unwrap(text)
    if word and not any(char.isspace() for char in word):
        yield _Candidate(word, source)


def _emphasised(text: str) -> Iterator[_Candidate]:
    """The one word a model bolded in prose ("How about **Voltaran**?"); several are ambiguous, so none."""
    spans: dict[str, None] = {}
    for match in _EMPHASIS.finditer(text):
        inner = next(group for group in match.groups() if group is not None).strip()
        if not inner.endswith(":"):  # "**Type:** Electric" is a label, not a name
            spans[inner] = None
    if len(spans) == 1:
        yield _Candidate(next(iter(spans)), "emphasis")


def _judge(candidate: _Candidate) -> tuple[str | None, str]:
    name, verdict = _assess(candidate.text)
    if name is not None and candidate.truncated and sum(char.isalpha() for char in name) < MIN_TRUNCATED_LETTERS:
        return None, "too_short"
    return name, verdict


def _assess(candidate: str) -> tuple[str | None, str]:
    """The sanitised name and "ok", or None and the rule it broke."""
    text = unicodedata.normalize("NFC", candidate[:MAX_CONTENT_CHARS].translate(_TYPOGRAPHY))
    text = _unwrap(text)
    if not text:
        return None, "empty"
    # Before the character rules, so that "<name>" or "your name" are reported as what they are.
    if _fold(text) in _FOLDED_PLACEHOLDERS:
        return None, "placeholder"
    if any(char.isspace() for char in text):
        return None, "multiple_words"
    if not all(char in _SEPARATORS or _is_name_letter(char) for char in text):
        return None, "invalid_characters"
    if len(text) < MIN_NAME_CHARS:
        return None, "too_short"
    if len(text) > MAX_NAME_CHARS:
        return None, "too_long"
    if not _separators_inside(text):
        return None, "bad_separator"
    name = _capitalise(text)
    # Case mapping can leave the alphabet ("ß" -> "SS", "İ" -> "i" + combining dot), so check the result again.
    if len(name) != len(text) or not name[0].isupper() or not all(_is_name_letter(c) or c in _SEPARATORS for c in name):
        return None, "invalid_characters"
    return name, "ok"


def _unwrap(text: str) -> str:
    """`text` without the quotes, emphasis, whitespace and final punctuation models put around a name."""
    start, end = 0, len(text)
    while start < end:
        first, last = text[start], text[end - 1]
        if first.isspace() or first in _WRAPPERS:
            start += 1
        elif last.isspace() or last in _WRAPPERS or last in _TRAILING:
            end -= 1
        elif first == last == "'" and end - start > 1:
            # Apostrophes only in pairs: an unpaired one is part of what the model wrote ("Khra'" is refused).
            start, end = start + 1, end - 1
        else:
            break
    return text[start:end]


def _is_name_letter(char: str) -> bool:
    return ord(char) < _LATIN_END and char != _MICRO_SIGN and unicodedata.category(char) in ("Lu", "Ll")


def _separators_inside(text: str) -> bool:
    """Every apostrophe or hyphen sits between two letters: none at an end, none doubled."""
    last = len(text) - 1
    return all(
        0 < index < last and text[index - 1] not in _SEPARATORS and text[index + 1] not in _SEPARATORS
        for index, char in enumerate(text)
        if char in _SEPARATORS
    )


def _capitalise(text: str) -> str:
    rest = [char for char in text[1:] if char.isalpha()]
    if rest and all(char.isupper() for char in rest):
        # Capitals throughout read as shouting, not as the model's intended spelling: title-case each
        # hyphenated part ("EMBREL-TOK" -> "Embrel-Tok") but not after an apostrophe ("Khra'gzat").
        return "-".join(part[:1].upper() + part[1:].lower() for part in text.split("-"))
    return text[:1].upper() + text[1:]


def _fold(text: str) -> str:
    """Letters only, accents and case dropped: the form placeholders and keys are compared in."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if char.isalpha()).casefold()


_NAME_KEYS: Final = frozenset(
    _fold(key)
    for key in (
        "name", "nom", "creature_name", "pokemon_name", "monster_name", "nom_creature", "nom_de_la_creature",
        "nom_pokemon", "nom_du_pokemon",
    )
)  # fmt: skip
# Every key a name is read from is a name key, so a value equal to its own key is refused here too.
_FOLDED_PLACEHOLDERS: Final = frozenset(_fold(word) for word in PLACEHOLDERS) | _NAME_KEYS

import json
import string
import time
import unicodedata

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from core.names.extract import MAX_CONTENT_CHARS, PLACEHOLDERS, Extraction, extract_name, sanitize_name

# The rules are checked here by hand rather than through the module's helpers, so a wrong helper cannot
# vouch for its own output.
_SEPARATORS = "'-"
_UPPER = string.ascii_uppercase + "ÀÂÄÇÉÈÊËÎÏÔÖÙÛÜŸÑŒÆ"
_LOWER = string.ascii_lowercase + "àâäçéèêëîïôöùûüÿñœæ"
# The echoes the product has seen or could see; they must never come back as a creature's name.
_FORBIDDEN = (
    "name", "nom", "names", "creature", "creature_name", "creatureName", "pokemon", "pokémon", "pokemon_name",
    "string", "example", "your name", "<name>", "<nom>", "placeholder", "undefined", "null", "none", "unknown",
    "json", "n/a", "NAME", "Name",
)  # fmt: skip
_KEYS = ("name", "Name", "NAME", "nom", "creature_name", "creatureName", "pokemon_name")


def _folded(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isalpha()).casefold()


_FORBIDDEN_FOLDED = frozenset(_folded(word) for word in _FORBIDDEN)
_PLACEHOLDERS_FOLDED = frozenset(_folded(word) for word in PLACEHOLDERS)


def _is_letter(char: str) -> bool:
    return char in _UPPER or char in _LOWER or (ord(char) < 0x250 and unicodedata.category(char) in ("Lu", "Ll"))


def _assert_valid(name: str) -> None:
    assert 3 <= len(name) <= 24, name
    assert all(c in _SEPARATORS or _is_letter(c) for c in name), name
    assert name[0].isupper(), name
    for index, char in enumerate(name):
        if char in _SEPARATORS:
            assert 0 < index < len(name) - 1, name
            assert name[index - 1] not in _SEPARATORS and name[index + 1] not in _SEPARATORS, name
    assert _folded(name) not in _FORBIDDEN_FOLDED, name
    assert _folded(name) not in _PLACEHOLDERS_FOLDED, name


def _capitalised(name: str) -> str:
    """The spec's casing: first letter up, the rest as written unless it is all capitals."""
    rest = [c for c in name[1:] if c.isalpha()]
    if rest and all(c.isupper() for c in rest):
        return "-".join(part[0].upper() + part[1:].lower() for part in name.split("-"))
    return name[0].upper() + name[1:]


# (id, model answer, expected name). Shapes seen from small local models behind Ollama/vLLM.
CASES: list[tuple[str, str | None, str | None]] = [
    # clean and near-clean JSON
    ("clean", '{"name":"Aquaclaw"}', "Aquaclaw"),
    ("spaced key", '{ "name" : "Aquaclaw" }', "Aquaclaw"),
    ("pretty printed", '{\n  "name": "Voltaran"\n}\n', "Voltaran"),
    ("extra fields", '{"name": "Voltaran", "description": "An electric mouse, name unknown"}', "Voltaran"),
    ("nested object", '{"creature": {"name": "Voltaran", "type": "electric"}}', "Voltaran"),
    ("array of objects", '[{"name": "Aquaclaw"}]', "Aquaclaw"),
    ("curly double quotes", "{“name”: “Aquaclaw”}", "Aquaclaw"),
    # fences and prose
    ("fenced json", '```json\n{"name": "Voltaran"}\n```', "Voltaran"),
    ("fenced no tag", '```\n{"name": "Voltaran"}\n```', "Voltaran"),
    (
        "fenced with explanation",
        '```json\n{"name": "Voltaran"}\n```\nThis name blends "volt" and "tarantula".',
        "Voltaran",
    ),
    ("fenced unclosed", '```json\n{"name": "Voltaran"}', "Voltaran"),
    ("fenced bare word", "```\nAquaclaw\n```", "Aquaclaw"),
    ("prose around json", 'Sure! Here is a name: {"name": "Voltaran"} Hope you like it', "Voltaran"),
    ("two objects, first wins", 'Option 1: {"name": "Voltaran"}\nOption 2: {"name": "Aquaclaw"}', "Voltaran"),
    ("echo then real object", 'Format: {"name": "name"}. Answer: {"name": "Aquaclaw"}', "Aquaclaw"),
    ("reasoning block", '<think>Maybe {"name": "Draftling"}? No.</think>\n{"name": "Voltaran"}', "Voltaran"),
    # broken braces and truncation
    ("double braces", '{{"name":"Aquaclaw"}}', "Aquaclaw"),
    ("missing closing brace", '{"name":"Aquaclaw"', "Aquaclaw"),
    ("missing opening brace", '"name":"Aquaclaw"}', "Aquaclaw"),
    ("truncated value", '{"name":"Khra\'gzat', "Khra'gzat"),
    ("truncated three letters", '{"name":"Kha', "Kha"),
    ("truncated too short", '{"name":"Kh', None),
    ("truncated two letters", '{"name":"A\'b', None),
    ("truncated inside fence", '```json\n{"name": "Zephyr', "Zephyr"),
    # quotes and keys
    ("single quotes", "{'name': 'Mossquill'}", "Mossquill"),
    ("single quotes inner apostrophe", "{'name': 'Khra'gzat'}", "Khra'gzat"),
    ("key Name", '{"Name": "Aquaclaw"}', "Aquaclaw"),
    ("key NAME", '{"NAME": "Aquaclaw"}', "Aquaclaw"),
    ("key nom", '{"nom":"Flammèche"}', "Flammèche"),
    ("key creature_name", '{"creature_name": "Voltaran"}', "Voltaran"),
    ("key creatureName", '{"creatureName": "Voltaran"}', "Voltaran"),
    ("key pokemon_name", '{"pokemon_name": "Voltaran"}', "Voltaran"),
    ("key pokémon name", '{"Pokémon name": "Voltaran"}', "Voltaran"),
    ("unquoted key", '{name: "Voltaran"}', "Voltaran"),
    ("equals sign", 'name = "Voltaran"', "Voltaran"),
    ("unquoted value", "name: Zephyrix", "Zephyrix"),
    ("unquoted value then clause", "Name: Voltaran, the thunder mouse", "Voltaran"),
    ("unquoted value then dash", "Name: Voltaran - an electric mouse", "Voltaran"),
    ("bold label", "**Name:** Zephyrix", "Zephyrix"),
    ("bold value", "Name: **Zephyrix** is my pick", "Zephyrix"),
    ("creature name in prose", "Here's a creature name: Zephyrix", "Zephyrix"),
    ("other key only", '{"type": "Voltaran"}', None),
    # French answers
    ("french prose json", 'Voici un nom pour ta créature : {"nom": "Éclairon"}', "Éclairon"),
    ("french guillemets", "Nom : « Flammèche »", "Flammèche"),
    ("french long key", "Nom de la créature : Ombrelune", "Ombrelune"),
    ("french sentence only", "Le nom de la créature est Ombrelune.", None),
    # bare answers
    ("bare", "Aquaclaw", "Aquaclaw"),
    ("bare quoted with period", '"Aquaclaw".', "Aquaclaw"),
    ("bare bold", "**Aquaclaw**", "Aquaclaw"),
    ("bare with whitespace", "\n  Aquaclaw  \n", "Aquaclaw"),
    ("bare single quoted", "'Mossquill'", "Mossquill"),
    ("bare exclaimed", "Voltaran!", "Voltaran"),
    ("one bold word in prose", "How about **Voltaran**? It sounds electric.", "Voltaran"),
    ("two bold words", "**Voltaran** or **Aquaclaw**, your choice.", None),
    # casing and characters
    ("accented", '{"name": "Éclairon"}', "Éclairon"),
    ("decomposed accent", '{"name": "E\u0301clairon"}', "Éclairon"),
    ("curly apostrophe", '{"name": "Khra’gzat"}', "Khra'gzat"),
    ("all caps", '{"name": "AQUACLAW"}', "Aquaclaw"),
    ("all caps hyphenated", '{"name": "EMBREL-TOK"}', "Embrel-Tok"),
    ("lowercase", '{"name": "aquaclaw"}', "Aquaclaw"),
    ("inner capitals kept", '{"name": "VoltAran"}', "VoltAran"),
    ("hyphenated", '{"name": "Embrel-Tok"}', "Embrel-Tok"),
    ("shortest", '{"name": "Nyx"}', "Nyx"),
    ("longest", '{"name": "Abcdefghijklmnopqrstuvwx"}', "Abcdefghijklmnopqrstuvwx"),
    ("one too long", '{"name": "Abcdefghijklmnopqrstuvwxy"}', None),
    ("too short", '{"name": "Aq"}', None),
    ("two words refused", '{"name": "Aqua Claw"}', None),
    ("digit", '{"name": "Aquaclaw2"}', None),
    ("emoji", '{"name": "Aqua🐉claw"}', None),
    ("emoji after", '{"name": "Aquaclaw 🐉"}', None),
    ("url", '{"name": "https://example.com/aquaclaw"}', None),
    ("html markup", '{"name": "<b>Volt</b>"}', None),
    ("underscore", '{"name": "Volt_aran"}', None),
    ("control character", '{"name": "Volt\\u0000aran"}', None),
    ("greek letters", '{"name": "Ζέφυρος"}', None),
    ("leading hyphen", '{"name": "-Aquaclaw"}', None),
    ("trailing apostrophe", '{"name": "Khra\'"}', None),
    ("doubled hyphen", '{"name": "Aqua--claw"}', None),
    ("mixed separators", '{"name": "Aqua\'-claw"}', None),
    # echoes of the template: the "name is always 'name'" bug
    ("echo name", '{"name": "name"}', None),
    ("echo Name", '{"name": "Name"}', None),
    ("echo angle brackets", '{"name": "<name>"}', None),
    ("echo nom", '{"nom": "<nom>"}', None),
    ("echo your name", '{"name": "your name"}', None),
    ("echo string", '{"name": "string"}', None),
    ("echo pokémon", '{"name": "Pokémon"}', None),
    ("echo n/a", '{"name": "N/A"}', None),
    ("echo key", '{"creatureName": "creatureName"}', None),
    ("bare echo", "name", None),
    ("unquoted echo", "name: <name>", None),
    # not a name at all
    ("number value", '{"name": 123}', None),
    ("null value", '{"name": null}', None),
    ("object value", '{"name": {"first": "Voltaran"}}', None),
    ("json array", '["Aquaclaw", "Voltaran"]', None),
    ("json number", "42", None),
    ("refusal", "I'm sorry, I can't help with that.", None),
    ("filler", "Sure!", None),
    ("unfinished reasoning", '<think>Perhaps {"name": "Voltaran"} would', None),
    ("empty", "", None),
    ("whitespace", " \n\t ", None),
    ("none", None, None),
]


# Every way `extract_name` finds a name, and every way it refuses one that reaches a candidate.
_REASONS = frozenset(
    {"json", "fenced", "json_in_text", "key_value", "truncated_json", "bare", "emphasis"}
    | {"empty", "placeholder", "multiple_words", "invalid_characters", "too_short", "too_long", "bad_separator"}
    | {"no_candidate", "unfinished_thinking"}
)


def test_the_table_reaches_every_way_of_finding_or_refusing_a_name() -> None:
    reached = {extract_name(content).reason for _, content, _ in CASES}
    assert reached == _REASONS


@pytest.mark.parametrize(("content", "expected"), [(c, e) for _, c, e in CASES], ids=[i for i, _, _ in CASES])
def test_realistic_answers(content: str | None, expected: str | None) -> None:
    result = extract_name(content)
    assert isinstance(result, Extraction)
    assert result.name == expected, result
    if result.name is not None:
        _assert_valid(result.name)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"name":"Aquaclaw"}', "json"),
        ('```json\n{"name":"Aquaclaw"}\n```', "fenced"),
        ('Here: {"name":"Aquaclaw"}!', "json_in_text"),
        ("{'name': 'Aquaclaw'}", "key_value"),
        ('{"name":"Aquaclaw', "truncated_json"),
        ('"Aquaclaw".', "bare"),
        ("I like **Aquaclaw** best.", "emphasis"),
        (None, "empty"),
        ("   ", "empty"),
        ('{"name": "name"}', "placeholder"),
        ('{"nom": "<nom>"}', "placeholder"),
        ('{"name": "Aqua Claw"}', "multiple_words"),
        ('{"name": "Aqua2"}', "invalid_characters"),
        ('{"name": "Aq"}', "too_short"),
        ('{"name":"Kh', "too_short"),
        ('{"name": "Abcdefghijklmnopqrstuvwxyz"}', "too_long"),
        ('{"name": "Aqua--claw"}', "bad_separator"),
        ("I'm sorry, I can't help with that.", "no_candidate"),
        ("<think>Let me see", "unfinished_thinking"),
    ],
)
def test_reasons(content: str | None, reason: str) -> None:
    assert extract_name(content).reason == reason


def test_a_non_text_input_is_refused_not_raised() -> None:
    for value in (42, b'{"name": "Aquaclaw"}', ["Aquaclaw"], {"name": "Aquaclaw"}):
        assert extract_name(value) == Extraction(None, "not_text")  # type: ignore[arg-type]
        assert sanitize_name(value) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        ("Aquaclaw", "Aquaclaw"),
        ("  «Flammèche»  ", "Flammèche"),
        ("**aquaclaw**.", "Aquaclaw"),
        ("'Khra'gzat'", "Khra'gzat"),
        ("Khra'", None),
        ("Aqua Claw", None),
        ("ßeta", None),  # "ß" has no single capital letter
        ("Creature", None),
        ("", None),
    ],
)
def test_sanitize_name(candidate: str, expected: str | None) -> None:
    assert sanitize_name(candidate) == expected


def test_placeholders_include_the_known_echoes() -> None:
    for word in _FORBIDDEN:
        assert sanitize_name(word) is None, word
        assert extract_name(json.dumps({"name": word})).name is None, word


_KEY_SPELLINGS = (
    "name", "Name", "NAME", "nom", "Nom", "creature_name", "creature-name", "creature name", "creatureName",
    "pokemon_name", "pokémon name", "PokemonName", "monster_name", "nom_creature", "nom de la créature",
    "nom_du_pokemon", "nom pokémon",
)  # fmt: skip


@pytest.mark.parametrize("key", _KEY_SPELLINGS)
def test_every_key_spelling_is_read_and_never_echoed(key: str) -> None:
    assert extract_name(f"{key}: Voltaran").name == "Voltaran"
    assert extract_name(json.dumps({key: "Voltaran"})).name == "Voltaran"
    assert extract_name(f"{key}: {key}") == Extraction(None, "placeholder")
    assert extract_name(json.dumps({key: key})) == Extraction(None, "placeholder")


def test_content_beyond_the_limit_is_ignored() -> None:
    padding = " " * MAX_CONTENT_CHARS
    assert extract_name(padding + '{"name": "Voltaran"}').name is None
    assert extract_name(" " * (MAX_CONTENT_CHARS - 30) + '{"name": "Voltaran"}').name == "Voltaran"


def _deeply_nested(depth: int) -> str:
    return "[" * depth + "]" * depth


_ADVERSARIAL = [
    "{" * 100_000,
    "[" * 100_000,
    _deeply_nested(50_000),
    '{"a":' * 20_000,
    '{"name":"' + "a'" * 50_000,
    "{'name': '" + "'a" * 50_000,
    "name:" * 20_000,
    '"name" : ' * 10_000,
    "name: " + "a " * 50_000,
    "**" * 50_000,
    "`" * 100_000,
    "```" * 33_000,
    "a" * 100_000,
    "'" * 100_000,
    "<think>" * 14_000,
    "</think>" * 12_000,
    "é" * 100_000,
]


@pytest.mark.parametrize("content", _ADVERSARIAL, ids=range(len(_ADVERSARIAL)))
def test_huge_adversarial_input_is_fast(content: str) -> None:
    started = time.perf_counter()
    result = extract_name(content)
    sanitize_name(content)
    assert time.perf_counter() - started < 0.5
    if result.name is not None:
        _assert_valid(result.name)


@pytest.mark.parametrize("content", _ADVERSARIAL, ids=range(len(_ADVERSARIAL)))
def test_adversarial_input_at_the_limit_is_fast(content: str) -> None:
    # The cut bounds the input, so the real question is the cost of MAX_CONTENT_CHARS of the worst text.
    started = time.perf_counter()
    for _ in range(10):
        extract_name(content[:MAX_CONTENT_CHARS])
    assert time.perf_counter() - started < 0.5


# Text drawn from the characters that steer the parser, so examples reach JSON, fences and key matching.
_TOKENS = (*"{}[]\":,'`*_<>/\n -=«»’“”", "name", "Name", "nom", "```", "json", "<think>", "</think>", "Volt", "é")
_SYNTAX = st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400)
@given(st.text() | _SYNTAX | _JSON_VALUES.map(json.dumps))
@example('{"name": "name"}')
@example("{'NOM': 'Nom'}")
def test_any_text_gives_a_valid_name_or_none(content: str) -> None:
    result = extract_name(content)
    assert isinstance(result, Extraction)
    assert isinstance(result.reason, str)
    assert result.reason
    if result.name is not None:
        _assert_valid(result.name)


_WORDS = st.text(alphabet=st.sampled_from(_UPPER + _LOWER), min_size=1, max_size=8)


@st.composite
def _valid_names(draw: st.DrawFn) -> str:
    parts = draw(st.lists(_WORDS, min_size=1, max_size=3))
    separators = draw(st.lists(st.sampled_from(_SEPARATORS), min_size=len(parts) - 1, max_size=len(parts) - 1))
    name = parts[0] + "".join(sep + part for sep, part in zip(separators, parts[1:], strict=True))
    assume(3 <= len(name) <= 24)
    assume(_folded(name) not in _PLACEHOLDERS_FOLDED)
    return name


@given(st.one_of(st.text().map(lambda text: (text, None)), _valid_names().map(lambda name: (name, _capitalised(name)))))
def test_sanitize_name_gives_a_valid_name_or_none(case: tuple[str, str | None]) -> None:
    candidate, kept = case
    name = sanitize_name(candidate)
    if name is not None:
        _assert_valid(name)
    # Random text is nearly always refused; the valid names drawn alongside make refusing everything fail.
    if kept is not None:
        assert name == kept


@given(_valid_names(), st.booleans())
@example("Aquaclaw", True)
@example("khra'gzat", False)
@example("EMBREL-TOK", False)
def test_any_valid_name_survives_json(name: str, ascii_only: bool) -> None:
    assert extract_name(json.dumps({"name": name}, ensure_ascii=ascii_only)) == Extraction(_capitalised(name), "json")


_WRAPPINGS = (
    '```json\n{{"name": "{}"}}\n```',
    '```json\n{{"name": "{}"}}\n```\nI chose this name because it sounds fierce.',
    'Sure! Here is a name: {{"name": "{}"}} Hope you like it!',
    'Voici un nom : {{"nom": "{}"}}',
    '{{{{"name": "{}"}}}}',
    "{{'name': '{}'}}",
    '{{"creatureName" : "{}"',
    "name: {}",
    "Here's a creature name: {}",
    "**{}**",
    '"{}".',
    "{}",
)


@given(_valid_names(), st.sampled_from(_WRAPPINGS))
def test_any_valid_name_survives_fences_and_prose(name: str, wrapping: str) -> None:
    assert extract_name(wrapping.format(name)).name == _capitalised(name)


@given(_valid_names())
def test_a_truncated_name_is_kept_only_with_three_letters(name: str) -> None:
    letters = sum(c.isalpha() for c in name)
    expected = _capitalised(name) if letters >= 3 else None
    assert extract_name('{"name": "' + name).name == expected


def _random_case(draw: st.DrawFn, word: str) -> str:
    flags = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.upper() if flag else c.lower() for c, flag in zip(word, flags, strict=True))


_ECHO_TEMPLATES = (
    '{{"{key}": "{value}"}}',
    "{{'{key}': '{value}'}}",
    '```json\n{{"{key}": "{value}"}}\n```',
    'Here you go: {{"{key}": "{value}"}}',
    '{{"{key}": "{value}"',
    "{key}: {value}",
    "{value}",
    "**{value}**",
    '"{value}".',
)


@st.composite
def _echoes(draw: st.DrawFn) -> str:
    key = draw(st.sampled_from(_KEYS))
    value = _random_case(draw, draw(st.sampled_from((*_FORBIDDEN, *_KEYS, key))))
    return draw(st.sampled_from(_ECHO_TEMPLATES)).format(key=key, value=value)


@given(_echoes())
@example('{"name": "NaMe"}')
def test_an_echoed_key_or_placeholder_is_never_a_name(content: str) -> None:
    assert extract_name(content).name is None

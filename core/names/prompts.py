"""What the name server is asked, per language, with a theme that varies from call to call.

Small models repeat themselves when asked the same thing twice; a random theme in the user message (and
a non-zero temperature) is what gives the pool its variety.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Language = Literal["en", "fr", "es", "de"]


@dataclass(frozen=True, slots=True)
class PromptSet:
    system: str
    user: str  # formatted with {theme}
    themes: tuple[str, ...]


PROMPTS: dict[Language, PromptSet] = {
    "en": PromptSet(
        system=(
            "You invent names for creatures in a monster-collecting game. Invent one original name: one word, "
            "4 to 14 letters, easy to pronounce, not the name of an existing Pokémon or brand. "
            'Reply with JSON only: {"name":"<name>"}'
        ),
        user="Invent one creature name. Theme: {theme}.",
        themes=(
            "fire", "water", "forest", "storm", "ice", "desert", "crystal", "shadow", "moonlight", "volcano",
            "coral reef", "thunder", "meadow flowers", "ancient ruins", "clouds", "mushrooms", "metal", "dreams",
        ),
    ),
    "fr": PromptSet(
        # The product description's own prompt, kept word for word, plus a theme.
        system='Tu crées un nom de créature Pokémon. Réponds au format JSON: {"name":"<nom>"}',
        user="Génère un seul nom. Thème : {theme}.",
        themes=(
            "feu", "eau", "forêt", "orage", "glace", "désert", "cristal", "ombre", "clair de lune", "volcan",
            "récif de corail", "tonnerre", "fleurs des prés", "ruines anciennes", "nuages", "champignons",
        ),
    ),
    "es": PromptSet(
        system=(
            "Inventas nombres de criaturas para un juego de coleccionar monstruos. Inventa un nombre original: "
            'una palabra, de 4 a 14 letras, fácil de pronunciar. Responde solo con JSON: {"name":"<nombre>"}'
        ),
        user="Inventa un solo nombre de criatura. Tema: {theme}.",
        themes=("fuego", "agua", "bosque", "tormenta", "hielo", "desierto", "cristal", "sombra", "volcán", "nubes"),
    ),
    "de": PromptSet(
        system=(
            "Du erfindest Namen für Kreaturen in einem Monster-Sammelspiel. Erfinde einen originellen Namen: "
            'ein Wort, 4 bis 14 Buchstaben, leicht auszusprechen. Antworte nur mit JSON: {"name":"<Name>"}'
        ),
        user="Erfinde einen einzigen Kreaturennamen. Thema: {theme}.",
        themes=("Feuer", "Wasser", "Wald", "Sturm", "Eis", "Wüste", "Kristall", "Schatten", "Vulkan", "Wolken"),
    ),
}  # fmt: skip


def messages(language: Language, rng: random.Random) -> list[dict[str, str]]:
    prompts = PROMPTS[language]
    return [
        {"role": "system", "content": prompts.system},
        {"role": "user", "content": prompts.user.format(theme=rng.choice(prompts.themes))},
    ]

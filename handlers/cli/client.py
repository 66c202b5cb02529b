"""Where the command line gets its creatures: a running server over HTTP, or the service in this process."""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

import httpx

from core.creature import ImageFormat, parse_format
from core.errors import InvalidRequest
from core.redaction import mask_url_credentials
from handlers.cli.errors import CliError, one_line
from handlers.routes import GENERATE_PATH

if TYPE_CHECKING:
    from core.creature import Creature
    from core.service import CreatureService

# Statuses that will fail every request of a batch the same way: stop sending rather than repeat them.
FATAL_STATUSES = frozenset({401, 403, 404, 405})
# The creature's metadata when the answer is the image itself (`Accept: image/...`): header -> metadata key.
CREATURE_HEADERS = {
    "x-creature-id": "id",
    "x-creature-name": "name",
    "x-creature-rarity": "rarity",
    "x-creature-seed": "seed",
    "x-creature-name-source": "nameSource",
    "x-creature-image-source": "imageSource",
}
GENERATED_AT_HEADER = "x-creature-generated-at"


@dataclass(frozen=True, slots=True)
class ImageChoice:
    """The `format` and `size` every creature of a command is asked for (`size=None`: the backend's own)."""

    format: ImageFormat = ImageFormat.PNG
    size: int | None = None

    def params(self) -> dict[str, str]:
        """Query parameters, the defaults left out so that the request is the plain one when nothing was chosen."""
        params = {} if self.format is ImageFormat.PNG else {"format": self.format.value}
        if self.size is not None:
            params["size"] = str(self.size)
        return params


@dataclass(frozen=True, slots=True)
class GeneratedCreature:
    """One creature in the API's terms: its wire JSON (printed verbatim by --json; None when the answer was
    the image itself), the image file's bytes, and the metadata."""

    wire: bytes | None
    image: bytes
    image_format: ImageFormat
    metadata: dict[str, Any]
    generated_at: str

    @classmethod
    def from_wire(cls, raw: bytes, expected: ImageFormat) -> GeneratedCreature:
        """Check the API's shape before anything is written: a bad answer is one clear error, not a KeyError."""
        try:
            payload = json.loads(raw)
        except ValueError:
            raise CliError("the answer is not JSON") from None
        if not isinstance(payload, dict):
            raise CliError("the answer is not a JSON object")
        image, metadata, generated_at = payload.get("imageBase64"), payload.get("metadata"), payload.get("generatedAt")
        if not isinstance(image, str) or not isinstance(metadata, dict) or not isinstance(generated_at, str):
            raise CliError("the answer lacks imageBase64, metadata or generatedAt")
        try:
            data = base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            raise CliError("imageBase64 is not valid base64") from None
        # A server from before formats sends no imageFormat and only PNGs.
        fmt = _answered_format(str(metadata.get("imageFormat", ImageFormat.PNG.value)), expected)
        return cls(wire=raw, image=data, image_format=fmt, metadata=metadata, generated_at=generated_at)

    @classmethod
    def from_image_response(cls, response: httpx.Response, expected: ImageFormat) -> GeneratedCreature:
        """The image as the body and the creature in `X-Creature-*` headers (the name percent-encoded UTF-8)."""
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not media_type.startswith("image/"):
            raise CliError(f"the answer is neither JSON nor an image (Content-Type: {media_type or 'none'})")
        fmt = _answered_format(media_type.removeprefix("image/"), expected)
        metadata: dict[str, Any] = {}
        for header, key in CREATURE_HEADERS.items():
            value = response.headers.get(header)
            if value is None:
                raise CliError(f"the image answer lacks the {header} header")
            metadata[key] = value
        try:
            metadata["name"] = unquote(metadata["name"], errors="strict")
            metadata["seed"] = int(metadata["seed"])
        except (UnicodeDecodeError, ValueError):
            raise CliError("the image answer's X-Creature-Name or X-Creature-Seed is malformed") from None
        metadata["imageFormat"] = fmt.value
        generated_at = response.headers.get(GENERATED_AT_HEADER, "?")
        return cls(wire=None, image=response.content, image_format=fmt, metadata=metadata, generated_at=generated_at)

    @classmethod
    def from_creature(cls, creature: Creature) -> GeneratedCreature:
        """The core's creature as is: its wire JSON is encoded for --json only, never parsed back."""
        return cls(
            wire=creature.to_json_bytes(),
            image=creature.image.raw(),
            image_format=creature.image.format,
            metadata=creature.metadata(),
            generated_at=creature.generated_at,
        )

    @property
    def id(self) -> str:
        return str(self.metadata.get("id", "?"))

    @property
    def rarity(self) -> str:
        # str(): in-process metadata holds a `Rarity`, whose hash is its member name ("S_PLUS"), not "S+".
        return str(self.metadata.get("rarity", "?"))


def _answered_format(text: str, expected: ImageFormat) -> ImageFormat:
    """The format the server says it sent, which must be the one asked for: the file's extension depends on it."""
    try:
        fmt = parse_format(text)
    except InvalidRequest:
        raise CliError(f"the answer's image format {text!r} is not png, webp or jpeg") from None
    if fmt is not expected:
        raise CliError(f"asked for a {expected} image, the server sent {fmt} (a server without formats?)")
    return fmt


class CreatureClient(Protocol):
    async def generate(self, seed: int | None) -> GeneratedCreature: ...

    async def aclose(self) -> None: ...


class HttpClient:
    """`GET /v1/generate` on a running server; one pooled connection set shared by every concurrent request.

    With `raw` the image itself is asked for (`Accept: image/<format>`): no base64 on the wire, the creature
    in headers. Errors are JSON either way.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        insecure: bool,
        timeout: float,
        image: ImageChoice = ImageChoice(),
        raw: bool = False,
    ) -> None:
        self.endpoint = generate_url(url)
        self._shown = mask_url_credentials(self.endpoint)  # messages name the server, never its password
        self._image, self._raw = image, raw
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if raw:
            headers["Accept"] = image.format.media_type
        self._http = httpx.AsyncClient(headers=headers, verify=not insecure, timeout=timeout)

    async def generate(self, seed: int | None) -> GeneratedCreature:
        params = self._image.params()
        if seed is not None:
            params["seed"] = str(seed)
        try:
            response = await self._http.get(self.endpoint, params=params or None)
        except httpx.ConnectError as exc:
            hint = " (a self-signed certificate? try --insecure)" if "CERTIFICATE" in str(exc).upper() else ""
            raise CliError(f"cannot connect to {self._shown}: {one_line(exc)}{hint}", fatal=True) from None
        except httpx.TimeoutException as exc:
            raise CliError(f"{self._shown} did not answer in time ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            message = mask_url_credentials(one_line(exc))
            raise CliError(f"request to {self._shown} failed: {message}", fatal=True) from None
        if response.status_code >= 400:
            raise api_error(response)
        # Even when asked for the image, a server that does not negotiate answers JSON: take that too.
        if self._raw and not response.headers.get("content-type", "").startswith("application/json"):
            return GeneratedCreature.from_image_response(response, self._image.format)
        return GeneratedCreature.from_wire(response.content, self._image.format)

    async def aclose(self) -> None:
        await self._http.aclose()


def generate_url(url: str) -> str:
    """Accept the server's base URL (as in the README) or the full endpoint URL."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise CliError(f"invalid --url {mask_url_credentials(repr(url))}", exit_code=2) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise CliError(f"invalid --url {mask_url_credentials(repr(url))}: expected http(s)://host[:port]", exit_code=2)
    base = url.rstrip("/")
    return base if base.endswith(GENERATE_PATH) else base + GENERATE_PATH


def api_error(response: httpx.Response) -> CliError:
    """The API's `{"error": {"code", "message"}}`, or the bare status when the answer is not the API's."""
    code, message = "", ""
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code, message = str(error.get("code", "")), str(error.get("message", ""))
    except ValueError:
        pass
    text = f"{message or response.reason_phrase or 'request failed'} ({code + ', ' if code else ''}"
    text += f"HTTP {response.status_code})"
    retry_after = response.headers.get("Retry-After")
    if response.status_code in (429, 503) and retry_after:
        text += f"; retry after {retry_after}s (Retry-After)"
    return CliError(text, fatal=response.status_code in FATAL_STATUSES)


class InProcessClient:
    """The service itself, called in this process: no server, no HTTP, no JSON in between."""

    def __init__(self, service: CreatureService, image: ImageChoice = ImageChoice()) -> None:
        self._service = service
        self._image = image

    @classmethod
    def from_environment(cls, image: ImageChoice = ImageChoice()) -> InProcessClient:
        """The service built from the environment exactly as the server builds it."""
        # Imported here: `pokemon --help` and the remote commands should not pay for the backends.
        from core import wiring
        from core.config import load_settings
        from core.errors import ConfigError
        from core.eventlog import configure_logging

        try:
            settings = load_settings()
            # Logs go to stderr so stdout stays the summary or pure JSON; without an explicit LOG_LEVEL the
            # per-creature INFO lines would drown a batch's output, so a CLI run shows warnings and up.
            level = settings.log_level if "LOG_LEVEL" in os.environ else "WARNING"
            configure_logging(level=level, json_lines=settings.log_json, stream=sys.stderr, background=False)
            return cls(wiring.build_service(settings), image)
        except ConfigError as exc:
            raise CliError(str(exc), exit_code=2) from None

    async def generate(self, seed: int | None) -> GeneratedCreature:
        from core.errors import ConfigError, GenerationFailed, ServiceUnavailable

        try:
            creature = await self._service.generate(seed, format=self._image.format, size=self._image.size)
        except ConfigError as exc:  # a backend can still refuse its settings when it starts
            raise CliError(str(exc), exit_code=2, fatal=True) from None
        except (GenerationFailed, ServiceUnavailable) as exc:
            raise CliError(f"generation failed: {exc}") from None
        return GeneratedCreature.from_creature(creature)

    async def aclose(self) -> None:
        await self._service.aclose()

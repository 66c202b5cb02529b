"""One name from an OpenAI-compatible server (Ollama, vLLM, LM Studio, llama.cpp): `POST /chat/completions`."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any, Final

import httpx
from pydantic import SecretStr

from core.errors import NameServerError
from core.eventlog import log
from core.names.capped_body import ACCEPT_ENCODING, read_capped
from core.names.extract import Extraction, extract_name
from core.names.prompts import Language, messages
from core.redaction import mask_url_credentials

MAX_LOGGED_CONTENT = 300
# A completion holding one name is well under 1 KiB; 64 KiB leaves room for verbose servers and reasoning
# models, and bounds what a hostile server can make the service hold (after decompression).
MAX_RESPONSE_BYTES: Final = 64 * 1024
# Parsing a few KiB takes microseconds; more than that goes to a worker thread so requests never wait on it.
INLINE_PARSE_BYTES: Final = 4 * 1024


class OpenAINameClient:
    """A pooled async HTTP client; `OPENAI_TIMEOUT` bounds each whole call, retries included."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: SecretStr,
        timeout: float,
        max_tokens: int = 30,
        temperature: float = 0.9,
        language: Language = "en",
        log_content: bool = False,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._model = model
        self._timeout = timeout
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._language = language
        self._log_content = log_content
        self._max_response_bytes = max_response_bytes
        self._json_mode = True  # ask for response_format until the server says it does not know it
        self._themes = random.Random()
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key.get_secret_value()}", "Accept-Encoding": ACCEPT_ENCODING},
            timeout=httpx.Timeout(timeout),
            transport=transport,
            trust_env=False,  # a proxy from the environment must not capture calls to a local model server
        )

    def __repr__(self) -> str:
        return f"OpenAINameClient(base_url={mask_url_credentials(str(self._http.base_url))!r}, model={self._model!r})"

    def _payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self._model,
            "max_tokens": self._max_tokens,
            "temperature": self._temperature,
            "messages": messages(self._language, self._themes),
        }
        if self._json_mode:
            payload["response_format"] = {"type": "json_object"}
        return payload

    async def fetch_name(self) -> str:
        """A sanitised name, or `NameServerError`."""
        began = time.perf_counter()
        log.info("remote_name.request", model=self._model)
        try:
            async with asyncio.timeout(self._timeout):
                name = await self._ask()
        except NameServerError as exc:
            self._failed(exc.reason, began)
            raise
        except TimeoutError:
            self._failed("timeout", began)
            raise NameServerError("timeout") from None
        except httpx.HTTPError as exc:
            reason = "connect" if isinstance(exc, httpx.ConnectError) else type(exc).__name__
            self._failed(reason, began)
            raise NameServerError(reason) from None
        log.info("remote_name.ok", name=name, duration_ms=round((time.perf_counter() - began) * 1000, 1))
        return name

    async def _ask(self) -> str:
        status, body = await self._post()
        if status in (400, 422) and self._json_mode:
            # Some servers reject `response_format`; the prompt asks for JSON anyway, so carry on without.
            self._json_mode = False
            log.warning("remote_name.json_mode_off", status=status)
            status, body = await self._post()
        if status != 200:
            raise NameServerError(f"status_{status}")
        if len(body) > INLINE_PARSE_BYTES:
            content, extraction = await asyncio.to_thread(_parse, body)
        else:
            content, extraction = _parse(body)
        fields: dict[str, object] = {"reason": extraction.reason}
        if self._log_content:
            fields["content"] = content[:MAX_LOGGED_CONTENT]
        if extraction.name is None:
            log.info("extract_name.failed", **fields)
            raise NameServerError("no_valid_name")
        log.debug("extract_name.ok", name=extraction.name, **fields)
        return extraction.name

    async def _post(self) -> tuple[int, bytes]:
        """The status and, for a 200, the body read within the cap; an error's body is never read."""
        async with self._http.stream("POST", "/chat/completions", json=self._payload()) as response:
            if response.status_code != 200:
                return response.status_code, b""
            return 200, await read_capped(response, self._max_response_bytes)

    def _failed(self, reason: str, began: float) -> None:
        log.warning("remote_name.failed", reason=reason, duration_ms=round((time.perf_counter() - began) * 1000, 1))

    async def aclose(self) -> None:
        await self._http.aclose()


def _parse(body: bytes) -> tuple[str, Extraction]:
    """The message content and the name found in it; pure, so it can run on a worker thread."""
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays
        raise NameServerError("not_json") from None
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices:
        raise NameServerError("no_choices")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise NameServerError("null_content")
    return content, extract_name(content)

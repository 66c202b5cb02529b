"""One name from an OpenAI-compatible server (Ollama, vLLM, LM Studio, llama.cpp): `POST /chat/completions`."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
from pydantic import SecretStr

from core.errors import NameServerError
from core.eventlog import log
from core.names.extract import extract_name
from core.names.prompts import Language, messages
from core.redaction import mask_url_credentials

MAX_LOGGED_CONTENT = 300


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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._model = model
        self._timeout = timeout
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._language = language
        self._log_content = log_content
        self._json_mode = True  # ask for response_format until the server says it does not know it
        self._themes = random.Random()
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key.get_secret_value()}"},
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
        response = await self._http.post("/chat/completions", json=self._payload())
        if response.status_code in (400, 422) and self._json_mode:
            # Some servers reject `response_format`; the prompt asks for JSON anyway, so carry on without.
            self._json_mode = False
            log.warning("remote_name.json_mode_off", status=response.status_code)
            response = await self._http.post("/chat/completions", json=self._payload())
        if response.status_code != 200:
            raise NameServerError(f"status_{response.status_code}")
        return self._name_from(response)

    def _name_from(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            raise NameServerError("not_json") from None
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices:
            raise NameServerError("no_choices")
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise NameServerError("null_content")
        extraction = extract_name(content)
        fields: dict[str, object] = {"reason": extraction.reason}
        if self._log_content:
            fields["content"] = content[:MAX_LOGGED_CONTENT]
        if extraction.name is None:
            log.info("extract_name.failed", **fields)
            raise NameServerError("no_valid_name")
        log.debug("extract_name.ok", name=extraction.name, **fields)
        return extraction.name

    def _failed(self, reason: str, began: float) -> None:
        log.warning("remote_name.failed", reason=reason, duration_ms=round((time.perf_counter() - began) * 1000, 1))

    async def aclose(self) -> None:
        await self._http.aclose()

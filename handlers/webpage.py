"""A small browser page for the API: `GET /` (the page) and `GET /static/{file}` (its CSS, script and icon).

The files live in `handlers/web/` (package data), are read once, when first asked for (a process that only
serves the API, a Lambda function above all, never reads them), and are served from memory with strict
headers: a same-origin Content-Security-Policy, `nosniff` and `no-cache` with an ETag, so browsers
revalidate cheaply. Only the files listed in `STATIC_FILES` are ever served.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"
)
PAGE_FILE = "index.html"
PAGE_MEDIA_TYPE = "text/html; charset=utf-8"
# file name -> media type; nothing outside this table is served.
STATIC_FILES: dict[str, str] = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str

    @classmethod
    def load(cls, name: str, media_type: str) -> Asset:
        from importlib import resources  # imported here: only a process that serves the page needs it

        body = resources.files("handlers").joinpath("web", name).read_bytes()
        return cls(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')

    def response(self, request: Request) -> Response:
        headers = {
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
            "ETag": self.etag,
        }
        if self.etag in _etags(request.headers.get("if-none-match")):
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def add_web_page(app: FastAPI) -> None:
    """Mount `GET /` and `GET /static/{file}` on `app`, both left out of the OpenAPI document."""
    loaded: dict[str, Asset] = {}

    def asset(name: str, media_type: str) -> Asset:
        found = loaded.get(name)
        if found is None:
            found = loaded[name] = Asset.load(name, media_type)
        return found

    async def index(request: Request) -> Response:
        return asset(PAGE_FILE, PAGE_MEDIA_TYPE).response(request)

    async def static_file(request: Request) -> Response:
        # Read from the path rather than declared as a `file: str` parameter: FastAPI's analysis of a declared
        # parameter imports pydantic.v1 when the route is added, tens of milliseconds of every start-up.
        name: str = request.path_params["file"]
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            raise StarletteHTTPException(status_code=404)
        return asset(name, media_type).response(request)

    app.add_api_route("/", index, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route("/static/{file}", static_file, methods=["GET"], include_in_schema=False)

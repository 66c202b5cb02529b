"""A stand-in for an OpenAI-compatible LLM server, run as a real process by the tests.

    python -m tests.support.fake_openai --host 127.0.0.1 --port 0

prints `READY <port>` once it listens. Chat answers follow a behaviour that tests switch at run time:

    POST /_control  {"mode": "clean", "delay_ms": 0, "status": 503, "names": [...], "content": "...",
                     "size": 0, "interval_ms": 100}
    POST /_reset    default behaviour, empty request log, zeroed counters
    GET  /_control  the behaviour now in force
    GET  /_requests every chat request received: [{"path", "headers", "body"}, ...]
    GET  /_stats    {"chat_requests": n, "in_flight": k, "max_in_flight": m}

Hostile answers: `huge` pads a clean completion with spaces to `size` bytes (default 8 MiB), `gzip_bomb` sends
one gzip body (`Content-Encoding: gzip`, about 100 KiB) that inflates to such a completion of `size` bytes
(default 100 MiB), and `trickle` sends a clean completion one byte every `interval_ms`.

Each `/_control` call replaces the whole behaviour (omitted fields take their defaults) and restarts the name
cycle, so a test's outcome never depends on what an earlier test configured.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import ipaddress
import json
import secrets
import select
import signal
import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, ClassVar, Final, cast
from urllib.parse import urlsplit

DEFAULT_NAMES: Final[tuple[str, ...]] = (
    "Aquaclaw",
    "Voltaran",
    "Mossquill",
    "Zephyrix",
    "Khra'gzathon",
    "Emberlisk",
    "Glacibble",
    "Thornwhisk",
    "Pyrrhoot",
    "Quartzling",
    "Nimbuzz",
    "Fernadon",
    "Cindermaw",
    "Tidewyrm",
    "Sparkmunk",
    "Gloomfang",
    "Brambleon",
    "Lumisprout",
    "Rockerel",
    "Drizzlepuff",
)
MODEL_ID: Final = "llama3.2:1b"

# Modes whose answer is a normal completion and differ only in the text of the message.
CONTENT_MODES: Final = frozenset(
    {"clean", "fenced", "prose", "extra_braces", "missing_brace", "truncated", "single_quotes", "key_variant"}
    | {"placeholder", "raw"}
)
OTHER_MODES: Final = frozenset({"status", "not_json", "no_choices", "null_content", "hang", "close"})
# Modes whose answer is a clean completion delivered in a way meant to hurt the client.
HOSTILE_MODES: Final = frozenset({"huge", "gzip_bomb", "trickle"})
MODES: Final = CONTENT_MODES | OTHER_MODES | HOSTILE_MODES
DEFAULT_SIZES: Final = {"huge": 8 << 20, "gzip_bomb": 100 << 20}
# Past this a test asked for more than loopback and the fake's own memory should carry.
MAX_SIZE: Final = 1 << 30
# Huge bodies go out in pieces of this size, so the fake never holds one whole.
WRITE_CHUNK: Final = 64 * 1024
_PAD: Final = "\x00pad\x00"  # where the padding goes; json.dumps escapes NUL, so no name can contain it

# Long enough for any test's deliberate hang; a finite bound so a forgotten connection cannot pin a thread forever.
HANG_LIMIT_S: Final = 600.0
# How often a hanging handler looks whether its client went away or the server is stopping.
HANG_POLL_S: Final = 0.05


class ControlError(ValueError):
    """A `/_control` body the server cannot act on; answered with 400."""


@dataclass(frozen=True)
class Behaviour:
    mode: str = "clean"
    delay_ms: int = 0
    status: int = 500
    names: tuple[str, ...] = DEFAULT_NAMES
    content: str | None = None
    size: int = 0  # 0: the mode's default
    interval_ms: int = 100

    @classmethod
    def parse(cls, payload: object) -> Behaviour:
        if not isinstance(payload, dict):
            raise ControlError("the body must be a JSON object")
        unknown = set(payload) - {"mode", "delay_ms", "status", "names", "content", "size", "interval_ms"}
        if unknown:
            raise ControlError(f"unknown fields: {sorted(unknown)}")
        mode = payload.get("mode", "clean")
        if mode not in MODES:
            raise ControlError(f"mode must be one of {sorted(MODES)}")
        delay_ms = payload.get("delay_ms", 0)
        # bool is an int subclass; `true` as a delay is a test bug worth reporting.
        if not isinstance(delay_ms, int) or isinstance(delay_ms, bool) or delay_ms < 0:
            raise ControlError("delay_ms must be an integer ≥ 0")
        status = payload.get("status")
        if status is None:
            status = cls.status
        # Only error statuses: 1xx/204/304 cannot carry the JSON error body, and 2xx is what the other modes are for.
        elif not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            raise ControlError("status must be an integer from 400 to 599")
        names = payload.get("names")
        if names is None:
            names = DEFAULT_NAMES
        elif not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            raise ControlError("names must be a non-empty list of strings")
        content = payload.get("content")
        if content is not None and not isinstance(content, str):
            raise ControlError("content must be a string")
        if mode == "raw" and content is None:
            raise ControlError("mode 'raw' needs a content")
        size = payload.get("size", 0)
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SIZE:
            raise ControlError(f"size must be an integer from 0 to {MAX_SIZE}")
        interval_ms = payload.get("interval_ms", cls.interval_ms)
        if not isinstance(interval_ms, int) or isinstance(interval_ms, bool) or interval_ms < 1:
            raise ControlError("interval_ms must be an integer ≥ 1")
        return cls(
            mode=mode,
            delay_ms=delay_ms,
            status=status,
            names=tuple(names),
            content=content,
            size=size,
            interval_ms=interval_ms,
        )

    def byte_size(self) -> int:
        return self.size or DEFAULT_SIZES.get(self.mode, 0)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "names": list(self.names)}


def message_content(mode: str, name: str, raw: str | None) -> str:
    """The assistant message for one of the content modes, built around `name`."""
    compact = json.dumps({"name": name}, separators=(",", ":"))
    if mode == "clean":
        return compact
    if mode == "fenced":
        return f"```json\n{compact}\n```"
    if mode == "prose":
        return f"Sure! Here is a name: {json.dumps({'name': name})} Enjoy!"
    if mode == "extra_braces":
        return "{" + compact + "}"
    if mode == "missing_brace":
        return compact[:-1]
    if mode == "truncated":
        # Cut inside the value, as a max_tokens limit would: no closing quote, no closing brace.
        return '{"name":"' + name[: max(1, len(name) // 2)]
    if mode == "single_quotes":
        # Python's repr is what a model imitating Python writes; it switches to double quotes around an apostrophe.
        return repr({"name": name})
    if mode == "key_variant":
        return json.dumps({"Name": name}, separators=(",", ":"))
    if mode == "placeholder":
        return '{"name":"name"}'
    if mode == "raw" and raw is not None:
        return raw
    raise ValueError(f"not a content mode: {mode}")


def padded_completion(name: str, model: str, size: int) -> tuple[bytes, int, bytes]:
    """A clean completion as (head, spaces, tail): head + that many spaces + tail is `size` bytes (or more, if
    the completion alone is longer) and valid JSON, the spaces inside the message after the name's JSON."""
    content = json.dumps({"name": name}, separators=(",", ":")) + _PAD
    text = json.dumps(completion(model, content, prompt_tokens=1))
    head, tail = (part.encode() for part in text.split(json.dumps(_PAD)[1:-1], 1))
    return head, max(0, size - len(head) - len(tail)), tail


@functools.lru_cache(maxsize=32)
def gzip_bomb(name: str, size: int) -> bytes:
    """A gzip body inflating to a `size`-byte completion; built once per name and size (it takes a while)."""
    head, spaces, tail = padded_completion(name, MODEL_ID, size)
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(head)]
    block = b" " * WRITE_CHUNK
    for start in range(0, spaces, WRITE_CHUNK):
        parts.append(packer.compress(block[: min(WRITE_CHUNK, spaces - start)]))
    parts += [packer.compress(tail), packer.flush()]
    return b"".join(parts)


def completion(model: str, content: str | None, *, prompt_tokens: int, with_choice: bool = True) -> dict[str, Any]:
    """A chat completion as OpenAI's API writes it."""
    choices: list[dict[str, Any]] = []
    if with_choice:
        choices.append({"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"})
    completion_tokens = len(content or "") // 4 + 1
    return {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error_type(status: int) -> str:
    if status == HTTPStatus.UNAUTHORIZED:
        return "authentication_error"
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return "rate_limit_error"
    return "invalid_request_error" if status < 500 else "server_error"


def error_body(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


@dataclass
class State:
    """Everything the handler threads share; every read and write goes through `lock`."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    behaviour: Behaviour = field(default_factory=Behaviour)
    cursor: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    chat_requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    def configure(self, behaviour: Behaviour) -> None:
        with self.lock:
            self.behaviour = behaviour
            self.cursor = 0

    def reset(self) -> None:
        with self.lock:
            self.behaviour = Behaviour()
            self.cursor = 0
            self.log.clear()
            self.chat_requests = 0
            # in_flight stays: a request still open from an earlier test ends later and would drive it negative.
            self.max_in_flight = self.in_flight

    def begin_chat(self, record: dict[str, Any]) -> tuple[Behaviour, str]:
        """Counts and logs a chat request; returns the behaviour for it and the name it should carry."""
        with self.lock:
            self.log.append(record)
            self.chat_requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            behaviour = self.behaviour
            name = behaviour.names[self.cursor % len(behaviour.names)]
            if behaviour.mode in CONTENT_MODES:
                self.cursor += 1
            return behaviour, name

    def end_chat(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {
                "chat_requests": self.chat_requests,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
            }

    def requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.log)


class FakeOpenAIServer(ThreadingHTTPServer):
    # One thread per connection, daemonic so a hanging request never holds the process open.
    daemon_threads = True
    # The default backlog of 5 makes a burst of concurrent clients wait for SYN retries (a second each).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, Handler)
        self.state = State()

    def stop(self) -> None:
        """Releases hanging and delayed handlers, then stops accepting; safe to call from any thread but the loop's."""
        self.state.stopping.set()
        self.shutdown()
        self.server_close()


Route = Callable[["Handler"], None]


class Handler(BaseHTTPRequestHandler):
    # Keep-alive like a real server, so clients with connection pools behave as they would in production.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm the body waits for the client's delayed
    # ACK, about 40 ms per response.
    disable_nagle_algorithm = True
    server_version = "FakeOpenAI/1.0"
    routes: ClassVar[dict[str, dict[str, Route]]]

    @property
    def state(self) -> State:
        return cast(FakeOpenAIServer, self.server).state

    def log_message(self, format: str, *args: Any) -> None:
        # Per-request lines on stderr would only fill a pipe nobody reads; the request log is the record.
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        methods = self.routes.get(path)
        if methods is None:
            self._drain_body()
            self._send_json(HTTPStatus.NOT_FOUND, error_body(f"no route for {path}", "not_found"))
            return
        route = methods.get(method)
        if route is None:
            self._drain_body()
            self._send_json(HTTPStatus.METHOD_NOT_ALLOWED, error_body(f"{method} not allowed on {path}", "not_found"))
            return
        route(self)

    # -- reading and writing --------------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Trailer lines up to the blank one end the body.
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _drain_body(self) -> None:
        # An unread body would be parsed as the next request on this keep-alive connection.
        self._read_body()

    def _send_bytes(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: object) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), "application/json")

    def _hang_up(self) -> None:
        """Ends the connection without a response, the way a crashing upstream or a dropping proxy would."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client may have gone first
            self.connection.shutdown(socket.SHUT_RDWR)

    def _wait_for_client(self, seconds: float) -> bool:
        """Sit out `seconds`; True as soon as the client went away or the server is stopping."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            # Event.wait rather than sleep: a stopping server must not sit out a test's delay.
            if self._client_gone() or self.state.stopping.wait(min(HANG_POLL_S, remaining)):
                return True
        return self._client_gone()

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            # Readable with nothing to read is the peer's FIN; a client never sends more while awaiting an answer.
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # -- routes ---------------------------------------------------------------------------------------------------

    def _models(self) -> None:
        self._send_json(
            HTTPStatus.OK, {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "fake"}]}
        )

    def _control(self) -> None:
        raw = self._read_body()
        try:
            behaviour = Behaviour.parse(json.loads(raw or b"{}"))
        except ValueError as exc:  # bad JSON and ControlError alike
            self._send_json(HTTPStatus.BAD_REQUEST, error_body(str(exc), "invalid_request_error"))
            return
        self.state.configure(behaviour)
        self._send_json(HTTPStatus.OK, behaviour.to_json())

    def _show_control(self) -> None:
        with self.state.lock:
            behaviour = self.state.behaviour
        self._send_json(HTTPStatus.OK, behaviour.to_json())

    def _reset(self) -> None:
        self._drain_body()
        self.state.reset()
        self._send_json(HTTPStatus.OK, Behaviour().to_json())

    def _requests(self) -> None:
        self._send_json(HTTPStatus.OK, self.state.requests())

    def _stats(self) -> None:
        self._send_json(HTTPStatus.OK, self.state.stats())

    def _chat(self) -> None:
        raw = self._read_body()
        text = raw.decode("utf-8", errors="replace")
        body: Any
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            key = key.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        behaviour, name = self.state.begin_chat({"path": self.path, "headers": headers, "body": body})
        try:
            self._answer_chat(behaviour, name, body)
        finally:
            self.state.end_chat()

    def _answer_chat(self, behaviour: Behaviour, name: str, body: Any) -> None:
        # A delay ends early when its client goes away (a service that shut down mid-request): a request
        # nobody waits for must not stay counted `in_flight` into the next test.
        if behaviour.delay_ms and self._wait_for_client(behaviour.delay_ms / 1000):
            self._hang_up()
            return
        mode = behaviour.mode
        if mode == "hang":
            self._wait_for_client(HANG_LIMIT_S)
            self._hang_up()
            return
        if mode == "close":
            self._hang_up()
            return
        if mode == "status":
            status = behaviour.status
            message = f"fake upstream error {status} ({HTTPStatus(status).phrase})"
            self._send_json(status, error_body(message, error_type(status)))
            return
        if mode == "not_json":
            page = behaviour.content if behaviour.content is not None else "<html>oops</html>"
            self._send_bytes(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
            return
        if not isinstance(body, dict):
            problem = error_body("the body must be a JSON object", "invalid_request_error")
            self._send_json(HTTPStatus.BAD_REQUEST, problem)
            return
        model = body.get("model", MODEL_ID)
        if mode in HOSTILE_MODES:
            # The client is meant to give up part-way: its leaving is the expected end, not an error.
            with contextlib.suppress(OSError):
                self._answer_hostile(behaviour, name, str(model))
            return
        content: str | None = None
        if mode in CONTENT_MODES:
            content = message_content(mode, name, behaviour.content)
        prompt_tokens = len(json.dumps(body.get("messages", []))) // 4 + 1
        answer = completion(model, content, prompt_tokens=prompt_tokens, with_choice=mode != "no_choices")
        self._send_json(HTTPStatus.OK, answer)

    def _answer_hostile(self, behaviour: Behaviour, name: str, model: str) -> None:
        if behaviour.mode == "gzip_bomb":
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Encoding", "gzip")
            self._send_bytes_as(gzip_bomb(name, behaviour.byte_size()), "application/json")
            return
        head, spaces, tail = padded_completion(name, model, behaviour.byte_size())
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(head) + spaces + len(tail)))
        self.end_headers()
        if behaviour.mode == "huge":
            self.wfile.write(head)
            block = b" " * WRITE_CHUNK
            for start in range(0, spaces, WRITE_CHUNK):
                self.wfile.write(block[: min(WRITE_CHUNK, spaces - start)])
            self.wfile.write(tail)
            return
        for byte in head + b" " * spaces + tail:  # trickle
            self.wfile.write(bytes((byte,)))
            self.wfile.flush()
            if self._wait_for_client(behaviour.interval_ms / 1000):
                self._hang_up()
                return

    def _send_bytes_as(self, body: bytes, content_type: str) -> None:
        """The rest of a response whose status line and first headers are already out."""
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


Handler.routes = {
    "/v1/models": {"GET": Handler._models},
    "/v1/chat/completions": {"POST": Handler._chat},
    "/_control": {"GET": Handler._show_control, "POST": Handler._control},
    "/_reset": {"POST": Handler._reset},
    "/_requests": {"GET": Handler._requests},
    "/_stats": {"GET": Handler._stats},
}


def loopback_host(value: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IP address") from None
    # A test double has no business on a reachable interface; IPv6 would also need another address family.
    if address.version != 4 or not address.is_loopback:
        raise argparse.ArgumentTypeError(f"{value} is not an IPv4 loopback address")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_openai", description=__doc__.splitlines()[0])
    parser.add_argument("--host", type=loopback_host, default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port; READY <port> names it")
    args = parser.parse_args(argv)

    server = FakeOpenAIServer((args.host, args.port))
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # The loop runs off the main thread: shutdown() waits for the loop to finish, so it cannot be called from the
    # thread running it, and the main thread is where the signal handlers run.
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="serve", daemon=True)
    loop.start()
    print(f"READY {server.server_address[1]}", flush=True)
    stop_requested.wait()
    server.stop()
    loop.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())

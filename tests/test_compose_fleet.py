"""The slim image (Dockerfile) and the one-machine fleet (compose.yaml, infra/proxy/nginx.conf).

No container engine runs here, so what can be checked from the files is: hadolint on the Dockerfile; the
image's install, health check and build context against the project (the health check's command runs for
real against a server process); compose.yaml parsed and held to the settings the service knows (every
variable a real setting, the trusted proxy exactly nginx's fixed address, Redis by its service name);
nginx.conf parsed and held to compose.yaml (its port, certificate mounts, upstream, the header it writes).
Where Debian's nginx is installed, the configuration also runs for real in front of two server processes,
with the container-only parts mapped onto loopback addresses.
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from packaging.requirements import Requirement

from core.clientaddr import ClientAddressResolver
from core.config import Settings, load_settings
from handlers.routes import HEALTH_PATH
from tests.support.dockerfile import arguments_of, only_argument
from tests.support.environment import SETTING_PREFIXES, clean_environment, setting_variables
from tests.support.ports import free_port
from tests.support.server import ServerFactory

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "compose.yaml"
NGINX_CONF = REPO / "infra" / "proxy" / "nginx.conf"
CONSTRAINTS = REPO / "constraints.txt"
PYPROJECT = REPO / "pyproject.toml"

PORT = Settings.model_fields["port"].default  # POKEMON_PORT's default: the description's 22222
CERTS_DIR = "./certs"  # where `python -m handlers.certs` writes, relative to the repository root
DOCKER_DNS = "127.0.0.11"  # Docker's embedded DNS server, on every user-defined network
SAMPLE_TOKEN = "t" * 64  # stands for the operator's exported token when compose.yaml is interpolated


# --- Dockerfile ---


def instructions(keyword: str) -> list[str]:
    return arguments_of(DOCKERFILE, keyword)


def only(keyword: str) -> str:
    return only_argument(DOCKERFILE, keyword)


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in instructions("ENV"):
        for pair in shlex.split(arguments):
            name, separator, value = pair.partition("=")
            assert separator, f"ENV {pair}: the legacy `ENV name value` form"
            env[name] = value
    return env


def known_settings() -> set[str]:
    return setting_variables()


def test_hadolint_passes_on_the_slim_dockerfile() -> None:
    hadolint = BIN / "hadolint"
    assert hadolint.is_file(), f"hadolint is not installed next to {sys.executable}: install the dev extra"
    result = subprocess.run(
        [str(hadolint), "--no-color", DOCKERFILE.name], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"hadolint failed:\n{result.stdout}{result.stderr}"


def test_slim_image_serves_the_files_backend_as_a_non_root_user() -> None:
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", only("FROM")), only("FROM")
    user = only("USER").split(":")[0]
    assert user.isdigit() and int(user) != 0, user
    assert only("EXPOSE") == str(PORT)
    assert only("WORKDIR") == "/app"
    command = json.loads(only("CMD"))
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert command == ["pokemon-server"] and scripts["pokemon-server"] == "handlers.server:main", command
    env = image_env()
    assert {name for name in env if name.startswith(SETTING_PREFIXES)} <= known_settings(), env
    settings = load_settings(**{name: value for name, value in env.items() if name.startswith(SETTING_PREFIXES)})
    assert settings.generation_backend == "files"
    assert settings.host == "0.0.0.0"  # reachable through the published port
    assert settings.port == PORT
    assert settings.images_dir == Path("/app/pokemon")
    assert (settings.tls_cert.parent, settings.tls_key.parent) == (Path("/app/certs"), Path("/app/certs"))
    assert "pokemon/*.png ./pokemon/" in instructions("COPY")


def canonical(name: str) -> str:
    """A distribution's name as pip compares it (PEP 503): `prometheus_client` is `prometheus-client`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_printed_by_the_image(tmp_path: Path) -> list[str]:
    """Runs the image's own `python -c` that lists what to install, on the repository's pyproject.toml."""
    (listing,) = [run for run in instructions("RUN") if "tomllib" in run]
    words = shlex.split(listing)
    code = words[words.index("-c") + 1]
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_slim_image_installs_the_project_and_the_redis_extra_from_the_constraints(tmp_path: Path) -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras = project["optional-dependencies"]
    printed = requirements_printed_by_the_image(tmp_path)
    assert printed == project["dependencies"] + extras["redis"]
    names = {canonical(Requirement(line).name) for line in printed}
    assert "redis" in names
    assert not names & {canonical(Requirement(line).name) for line in extras["diffusion"]}, "no torch in the slim image"
    pins = {canonical(line.partition("==")[0]) for line in CONSTRAINTS.read_text().splitlines() if "==" in line}
    assert names <= pins, f"not pinned in constraints.txt: {names - pins}"
    assert "constraints.txt" in instructions("COPY")[0].split()  # before the first install, which reads it
    installs = [run for run in instructions("RUN") if "pip install" in run]
    assert len(installs) == 2, installs
    for run in installs:
        assert "--constraint constraints.txt" in run and "--no-cache-dir" in run, run
    assert "--requirement /tmp/requirements.txt" in installs[0]
    assert re.search(r"--no-deps --constraint constraints\.txt \.(?:\s|$)", installs[1]), installs[1]


def healthcheck_command() -> list[str]:
    options, _, command = only("HEALTHCHECK").partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options, options
    return cast(list[str], json.loads(command))


def run_healthcheck(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    command = healthcheck_command()
    assert command[0] == "python"  # the slim image has no curl
    return subprocess.run(
        [sys.executable, *command[1:]], env=clean_environment(**env), capture_output=True, text=True, timeout=30
    )


def test_health_check_probes_the_health_path_over_http_or_https(server_factory: ServerFactory) -> None:
    assert f"/{HEALTH_PATH.strip('/')}'" in " ".join(healthcheck_command())
    for tls in (False, True):
        server = server_factory(tls=tls)
        port = server.base_url.rsplit(":", 1)[1]
        cert = server.log_path.parent / "certs" / "cert.pem"  # where server_factory writes it when tls
        assert cert.is_file() is tls
        assert run_healthcheck({"POKEMON_PORT": port, "POKEMON_TLS_CERT": str(cert)}).returncode == 0, tls
        server.stop()
        failed = run_healthcheck({"POKEMON_PORT": port, "POKEMON_TLS_CERT": str(cert)})
        assert failed.returncode != 0, f"healthy with the server stopped (tls={tls})"


def test_build_context_lets_through_what_the_slim_image_copies() -> None:
    """.dockerignore is an allow-list (`*`, then `!` lines): each COPY source must be re-included by name."""
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and line[0] != "#"]
    assert lines[0] == "*", "the build context is an allow-list"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = [source for run in instructions("COPY") for source in run.split()[:-1]]
    assert copied
    for source in copied:
        assert source.rstrip("/") in allowed, f"COPY {source} is cut by .dockerignore"
        assert list(REPO.glob(source)), f"COPY {source}: nothing in the repository"
    assert not allowed & {"certs", ".env", ".git", ".venv", "tests", "artifacts"}


# --- compose.yaml ---


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME?error}` (the forms compose.yaml uses)."""

    def value(match: re.Match[str]) -> str:
        name, operator, rest = match.group(1), match.group(2) or "", match.group(3) or ""
        if operator in (":-", "-"):
            return env.get(name) or rest
        if operator in ("?", ":?"):
            assert name in env, f"compose.yaml requires {name}: {rest}"
        return env.get(name, "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?])?([^}]*)\}", value, text)


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    yaml = importlib.import_module("yaml")  # PyYAML: no type information shipped, hence the import by name
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)

    def walk(node: object) -> object:
        if isinstance(node, str):
            return interpolate(node, env if env is not None else {"POKEMON_BEARER_TOKEN": SAMPLE_TOKEN})
        if isinstance(node, Mapping):
            return {key: walk(item) for key, item in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return cast(dict[str, Any], walk(document))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return cast(dict[str, dict[str, Any]], compose["services"])


def api_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from the slim Dockerfile."""
    return {
        name: service
        for name, service in services(compose).items()
        if service.get("build", {}).get("dockerfile") == DOCKERFILE.name
    }


def instance_count(service: Mapping[str, Any]) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


def service_by_image(compose: Mapping[str, Any], image: str) -> str:
    (name,) = [name for name, service in services(compose).items() if str(service.get("image", "")).startswith(image)]
    return name


def proxy_address(compose: Mapping[str, Any]) -> ipaddress.IPv4Address:
    proxy = services(compose)[service_by_image(compose, "nginx:")]
    addresses = [
        network["ipv4_address"]
        for network in proxy["networks"].values()
        if isinstance(network, Mapping) and "ipv4_address" in network
    ]
    assert len(addresses) == 1, f"the proxy needs one fixed address on the fleet network: {addresses}"
    return ipaddress.IPv4Address(addresses[0])


def fleet_network(compose: Mapping[str, Any]) -> tuple[str, ipaddress.IPv4Network]:
    """The network the proxy has its fixed address on, and that network's subnet."""
    proxy = services(compose)[service_by_image(compose, "nginx:")]
    (name,) = [name for name, network in proxy["networks"].items() if network and "ipv4_address" in network]
    (pool,) = compose["networks"][name]["ipam"]["config"]
    return name, ipaddress.IPv4Network(pool["subnet"])


def api_settings(service: Mapping[str, Any]) -> Settings:
    return load_settings(**{name: str(value) for name, value in service["environment"].items()})


def test_compose_runs_two_or_more_api_instances_of_the_slim_image(compose: dict[str, Any]) -> None:
    apis = api_services(compose)
    assert sum(instance_count(service) for service in apis.values()) >= 2, apis
    for name, service in apis.items():
        assert (COMPOSE.parent / service["build"]["context"]).resolve() == REPO, name
        # Replicas cannot share a container name or a host port; the proxy is the only way in.
        assert "container_name" not in service and "ports" not in service, name
        assert service["read_only"] is True and "no-new-privileges:true" in service["security_opt"], name


def test_every_api_instance_shares_the_compose_redis(compose: dict[str, Any]) -> None:
    redis_name = service_by_image(compose, "redis:")
    redis = services(compose)[redis_name]
    assert "--port" not in redis["command"]  # so Redis listens on its default port, 6379
    for name, service in api_services(compose).items():
        url = api_settings(service).redis_url
        assert url is not None, name
        assert url.get_secret_value() == f"redis://{redis_name}:6379/0", name
        assert service["depends_on"][redis_name]["condition"] == "service_healthy", name
        assert set(service["networks"]) & set(redis["networks"]), f"{name} cannot reach {redis_name}"


def test_the_only_trusted_proxy_is_the_proxys_fixed_address(compose: dict[str, Any]) -> None:
    address = proxy_address(compose)
    network_name, subnet = fleet_network(compose)
    assert address in subnet and address not in (subnet.network_address, subnet.network_address + 1)
    for name, service in api_services(compose).items():
        settings = api_settings(service)
        assert settings.trusted_proxies == (ipaddress.ip_network(address),), name  # one /32, not the subnet
        assert settings.proxy_header == "x-forwarded-for", name
        # On the proxy's network only: every address an instance sees a request from is on that subnet.
        assert list(service["networks"]) == [network_name], name
    assert compose["networks"][network_name]["internal"] is True


def test_compose_sets_only_settings_the_service_knows(compose: dict[str, Any]) -> None:
    for name, service in api_services(compose).items():
        environment = service["environment"]
        assert set(environment) <= known_settings(), f"{name}: {set(environment) - known_settings()}"
        api_settings(service)  # every value valid as interpolated with compose.yaml's defaults


def test_the_token_comes_from_the_operators_environment_never_from_the_file() -> None:
    raw = importlib.import_module("yaml").safe_load(COMPOSE.read_text())
    for name, service in raw["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            if re.search(r"TOKEN|SECRET|PASSWORD|API_KEY", variable):
                assert re.fullmatch(rf"\$\{{{variable}\?[^}}]+\}}", str(value)), f"{name}: {variable}={value!r}"
    with pytest.raises(AssertionError, match="requires POKEMON_BEARER_TOKEN"):
        load_compose(env={})


def test_pulled_images_are_pinned_to_a_release(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if "build" in service:
            continue
        image = str(service["image"])
        assert re.fullmatch(r"[a-z0-9/.-]+:\d+\.\d+\.\d+(-[a-z0-9]+)?", image), f"{name}: {image} is not pinned"


def test_redis_keeps_nothing_and_evicts_under_a_memory_cap(compose: dict[str, Any]) -> None:
    redis = services(compose)[service_by_image(compose, "redis:")]
    options = dict(zip(redis["command"][1::2], redis["command"][2::2], strict=True))
    assert redis["command"][0] == "redis-server"
    assert options["--save"] == "" and options["--appendonly"] == "no"
    assert re.fullmatch(r"\d+mb", options["--maxmemory"]) and options["--maxmemory-policy"] == "allkeys-lru"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ports" not in redis and list(redis["networks"]) == [fleet_network(compose)[0]]


def test_every_service_has_a_health_check_and_starts_after_what_it_needs(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        assert service["healthcheck"]["test"], name
    for name, service in api_services(compose).items():
        probe = " ".join(service["healthcheck"]["test"])
        # Plain HTTP on the instance's own port: no certificate is mounted on the instances.
        assert f"'http://127.0.0.1:{api_settings(service).port}{HEALTH_PATH}'" in probe, name
        assert "volumes" not in service, f"{name}: a certificate would switch the instance to HTTPS"
    proxy_name = service_by_image(compose, "nginx:")
    proxy_needs = services(compose)[proxy_name]["depends_on"]
    assert {proxy_needs[name]["condition"] for name in api_services(compose)} == {"service_healthy"}


# --- infra/proxy/nginx.conf ---


@dataclass(frozen=True)
class Directive:
    name: str
    args: tuple[str, ...]
    block: tuple[Directive, ...] | None = None

    def children(self, name: str) -> list[Directive]:
        return [child for child in self.block or () if child.name == name]

    def child(self, name: str) -> Directive:
        (found,) = self.children(name)
        return found

    def walk(self) -> Iterator[Directive]:
        for child in self.block or ():
            yield child
            yield from child.walk()


def parse_nginx(text: str) -> Directive:
    """nginx's configuration syntax: `name args;` and `name args { ... }`, `#` comments, quoted words."""
    tokens = re.findall(r"#[^\n]*|\"(?:\\.|[^\"])*\"|'(?:\\.|[^'])*'|[{};]|[^\s{};]+", text)
    stack: list[list[Directive]] = [[]]
    heads: list[tuple[str, tuple[str, ...]]] = []
    words: list[str] = []
    for token in tokens:
        if token.startswith("#"):
            continue
        if token == ";":
            stack[-1].append(Directive(words[0], tuple(words[1:])))
            words = []
        elif token == "{":
            heads.append((words[0], tuple(words[1:])))
            stack.append([])
            words = []
        elif token == "}":
            assert not words, f"unterminated directive {words}"
            name, args = heads.pop()
            block = tuple(stack.pop())
            stack[-1].append(Directive(name, args, block))
        else:
            words.append(token[1:-1] if token[0] in "\"'" else token)
    assert not words and not heads and len(stack) == 1, "unbalanced nginx.conf"
    return Directive("main", (), tuple(stack[0]))


@pytest.fixture(scope="module")
def nginx() -> Directive:
    return parse_nginx(NGINX_CONF.read_text())


def tls_server(nginx: Directive) -> Directive:
    (server,) = [s for s in nginx.child("http").children("server") if "ssl" in s.child("listen").args]
    return server


def proxied_location(nginx: Directive) -> Directive:
    (location,) = [loc for loc in tls_server(nginx).children("location") if loc.children("proxy_pass")]
    return location


def proxy_headers(location: Directive) -> dict[str, str]:
    return {d.args[0].lower(): d.args[1] if len(d.args) > 1 else "" for d in location.children("proxy_set_header")}


def mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """Container path → host path of each bind mount."""
    found: dict[str, str] = {}
    for volume in service.get("volumes", []):
        host, container, *_ = str(volume).split(":")
        found[container] = host
    return found


def test_nginx_conf_parses_with_balanced_blocks(nginx: Directive) -> None:
    assert {"events", "http"} <= {d.name for d in nginx.block or ()}
    with pytest.raises(AssertionError):
        parse_nginx("http { server { listen 1; }")


def test_proxy_terminates_tls_on_the_description_port(compose: dict[str, Any], nginx: Directive) -> None:
    server = tls_server(nginx)
    assert server.child("listen").args == (str(PORT), "ssl")
    proxy = services(compose)[service_by_image(compose, "nginx:")]
    assert proxy["ports"] == [f"{PORT}:{PORT}"]
    assert mounts(proxy)["/etc/nginx/nginx.conf"] == "./" + NGINX_CONF.relative_to(REPO).as_posix()
    certs_in_container = {v: h for v, h in mounts(proxy).items() if h == CERTS_DIR}
    assert len(certs_in_container) == 1, mounts(proxy)
    (mounted,) = certs_in_container
    # `python -m handlers.certs` writes cert.pem and key.pem in certs/: nginx reads those two files.
    assert server.child("ssl_certificate").args == (f"{mounted}/cert.pem",)
    assert server.child("ssl_certificate_key").args == (f"{mounted}/key.pem",)
    assert set(server.child("ssl_protocols").args) <= {"TLSv1.2", "TLSv1.3"}


def test_proxy_balances_over_every_api_instance_on_the_api_port(compose: dict[str, Any], nginx: Directive) -> None:
    http = nginx.child("http")
    assert http.child("resolver").args[0] == DOCKER_DNS
    upstreams = {upstream.args[0]: upstream for upstream in http.children("upstream")}
    location = proxied_location(nginx)
    (target,) = location.child("proxy_pass").args
    upstream = upstreams[target.removeprefix("http://")]
    assert upstream.children("zone"), "`resolve` needs the upstream's state in shared memory"
    servers = {d.args[0] for d in upstream.children("server")}
    expected = {f"{name}:{api_settings(service).port}" for name, service in api_services(compose).items()}
    assert servers == expected
    for server in upstream.children("server"):
        assert "resolve" in server.args, f"{server.args[0]}: replicas come and go, their addresses too"


def test_proxy_writes_the_header_the_instances_read(compose: dict[str, Any], nginx: Directive) -> None:
    headers = proxy_headers(proxied_location(nginx))
    for service in api_services(compose).values():
        assert api_settings(service).proxy_header in headers
    assert headers["x-forwarded-for"] in ("$remote_addr", "$proxy_add_x_forwarded_for")
    assert headers["forwarded"] == "", "the header the instances do not read is dropped"


@pytest.mark.parametrize(
    ("peer", "sent", "expected"),
    [
        ("203.0.113.7", None, "203.0.113.7"),  # a client on the Internet
        ("203.0.113.7", "198.51.100.1", "203.0.113.7"),  # ...naming someone else's bucket
        ("203.0.113.7", "198.51.100.1, 10.222.22.2", "203.0.113.7"),  # ...or posing as the proxy
    ],
)
def test_a_client_behind_the_proxy_is_its_own_peer(
    compose: dict[str, Any], nginx: Directive, peer: str, sent: str | None, expected: str
) -> None:
    """nginx's X-Forwarded-For as it writes it for `peer`, read by an instance configured as in compose.yaml."""
    written = proxy_headers(proxied_location(nginx))["x-forwarded-for"]
    header = {"$remote_addr": peer, "$proxy_add_x_forwarded_for": f"{sent}, {peer}" if sent else peer}[written]
    for service in api_services(compose).values():
        settings = api_settings(service)
        resolver = ClientAddressResolver(settings.trusted_proxies, header=settings.proxy_header)
        assert resolver.resolve(str(proxy_address(compose)), header)[0] == expected


def test_nothing_but_the_proxy_speaks_for_a_client(compose: dict[str, Any]) -> None:
    """Another container on the fleet network (or the gateway) sending X-Forwarded-For is taken at its word."""
    _, subnet = fleet_network(compose)
    for service in api_services(compose).values():
        settings = api_settings(service)
        resolver = ClientAddressResolver(settings.trusted_proxies, header=settings.proxy_header)
        for neighbour in (subnet.network_address + 1, subnet.network_address + 3, subnet.broadcast_address - 1):
            assert resolver.resolve(str(neighbour), "198.51.100.1")[0] == str(neighbour)


def test_the_proxy_health_check_reaches_its_loopback_listener(compose: dict[str, Any], nginx: Directive) -> None:
    proxy = services(compose)[service_by_image(compose, "nginx:")]
    probe = proxy["healthcheck"]["test"]
    (url,) = [word for word in probe if word.startswith("http://")]
    match = re.fullmatch(r"http://([\d.]+:\d+)(/\S*)", url)
    assert match, url
    address, path = match.groups()
    listeners = {s.child("listen").args[0]: s for s in nginx.child("http").children("server")}
    assert address.startswith("127.0.0.1:") and address in listeners, "the health listener is never published"
    assert any(loc.args == ("=", path) for loc in listeners[address].children("location"))


# --- nginx for real, where Debian's nginx is installed ---

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None)
PROXY_SOURCE = "127.0.0.2"  # nginx's connections to the instances: the only trusted address
CLIENT = "127.0.0.3"


def replace_once(text: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert count == 1, f"{pattern!r} matched {count} times in nginx.conf"
    return new


def on_loopback(text: str, *, root: Path, port: int, health_port: int, instances: list[str]) -> str:
    """nginx.conf with its container-only parts on loopback: the instances' addresses for Docker's DNS name
    (Debian's nginx predates `resolve`), a temporary folder for the certificates, pid and logs, and nginx's
    outgoing connections from one address, as its fixed address in the fleet network."""
    servers = " ".join(f"server {address} max_fails=1 fail_timeout=10s;" for address in instances)
    text = replace_once(text, r"^\s*server api:\d+ resolve [^;]*;", servers)
    text = replace_once(text, r"^\s*resolver [^;]*;", "")
    text = replace_once(text, r"^\s*http2 on;", "")  # `listen ... http2` before 1.25.1
    text = replace_once(text, rf"listen {PORT} ssl;", f"listen 127.0.0.1:{port} ssl;")
    text = replace_once(text, r"listen 127\.0\.0\.1:\d+;", f"listen 127.0.0.1:{health_port};")
    text = replace_once(text, r"proxy_pass (\S+);", rf"proxy_pass \1; proxy_bind {PROXY_SOURCE};")
    text = text.replace("/etc/nginx/certs", str(root / "certs"))
    # Debian's nginx keeps its temporary files under /var/lib/nginx; none is needed (no request bodies, and
    # responses stream through rather than spill to disk).
    text = replace_once(
        text,
        r"^(\s*)server_tokens off;",
        rf"\1server_tokens off; client_body_temp_path {root}/body;"
        rf" proxy_temp_path {root}/proxy; proxy_max_temp_file_size 0;",
    )
    return text.replace("/var/run/", f"{root}/").replace("/var/log/nginx/", f"{root}/")


def stop_nginx(pid: int) -> None:
    """SIGQUIT (graceful) to the master process this test started, then wait for it to be gone."""
    os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")
def test_nginx_in_front_of_two_instances_names_the_real_client(
    server_factory: ServerFactory, compose: dict[str, Any], tmp_path: Path
) -> None:
    assert NGINX is not None
    (api,) = api_services(compose).values()
    trusted = {**api["environment"], "POKEMON_TRUSTED_PROXIES": PROXY_SOURCE, "POKEMON_RATE_LIMIT_PER_MIN": "0"}
    trusted.pop("POKEMON_REDIS_URL")  # the shared store has tests of its own; this one is about addresses
    instances = [server_factory({k: str(v) for k, v in trusted.items()}) for _ in range(2)]
    from handlers.certs import write_dev_certificate

    write_dev_certificate(tmp_path / "certs" / "cert.pem", tmp_path / "certs" / "key.pem")
    port, health_port = free_port(), free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        on_loopback(
            NGINX_CONF.read_text(),
            root=tmp_path,
            port=port,
            health_port=health_port,
            instances=[server.base_url.removeprefix("http://") for server in instances],
        )
    )
    command = [NGINX, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "startup.log")]
    tested = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert tested.returncode == 0, tested.stderr
    subprocess.run([*command, "-g", "daemon on;"], check=True, timeout=30)
    nginx_pid = int((tmp_path / "nginx.pid").read_text())
    try:
        transport = httpx.HTTPTransport(local_address=CLIENT, verify=False)
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", transport=transport, timeout=10) as client:
            spoofed = {"X-Forwarded-For": "198.51.100.1", "Forwarded": "for=198.51.100.2"}
            token = {"Authorization": f"Bearer {SAMPLE_TOKEN}"}
            answers = [client.get("/v1/generate", headers={**spoofed, **token}).status_code for _ in range(6)]
            assert answers == [200] * 6
            assert client.get("/metrics").status_code == 404
            assert client.get("/v1/generate").status_code == 401  # the token is the instances' business
            # One replica gone: nginx retries on the other (proxy_next_upstream), the client never sees it.
            assert instances[1].stop(signal.SIGTERM) == 0
            assert [client.get("/health").status_code for _ in range(4)] == [200] * 4
        assert httpx.get(f"http://127.0.0.1:{health_port}/healthz").status_code == 200
    finally:
        stop_nginx(nginx_pid)
    clients: list[str] = []
    for server in instances:
        seen = [line for line in server.log_lines() if '"http.request"' in line and '"/v1/generate"' in line]
        assert seen, "round robin skipped an instance"
        clients += [json.loads(line)["extra"]["client"] for line in seen]
    assert set(clients) == {CLIENT}, clients

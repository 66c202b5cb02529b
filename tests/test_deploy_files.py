"""The deployment files: template.yaml (SAM), the Lambda package, Dockerfile.gpu, .dockerignore, compose.

The linters run for real (cfn-lint and hadolint from the same environment as this interpreter); the rest
checks what the linters cannot know: that the template routes to handlers that exist, grants only the
DynamoDB actions the rate-limit store needs, never carries a token, and sets only settings the service
knows; that the Lambda package holds exactly the code and images; that the image's build context lets
through what the Dockerfile copies and nothing private.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import posixpath
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pytest
from packaging.requirements import Requirement

from core.config import LEGACY_NAMES
from tests.support.dockerfile import Instruction, instructions, only_argument
from tests.support.environment import setting_variables

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TEMPLATE = REPO / "template.yaml"
DOCKERFILE = REPO / "Dockerfile.gpu"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "infra" / "compose.gpu.yaml"
LAMBDA_MAKEFILE = REPO / "infra" / "lambda" / "Makefile"
LAMBDA_REQUIREMENTS = REPO / "infra" / "lambda-requirements.txt"
EVENTS = REPO / "infra" / "events"

FUNCTIONS = {
    "GenerateFunction": "handlers.generate.handler",
    "HealthFunction": "handlers.health.handler",
    "WarmupFunction": "handlers.warmup.handler",
}
ROUTES = {
    ("GET", "/v1/generate"): "GenerateFunction",
    ("GET", "/health"): "HealthFunction",
    ("GET", "/health/ready"): "HealthFunction",
}
RATE_LIMIT_ACTIONS = {"dynamodb:GetItem", "dynamodb:PutItem"}
# Needed by the uvicorn server only (handlers.server, handlers.certs, its /metrics), never by Lambda.
SERVER_ONLY_PACKAGES = {"uvicorn", "cryptography", "prometheus-client"}
SETTING_PREFIXES = ("POKEMON_", "SDXL_", "OPENAI_", "LOG_")


# --- helpers ---


def tool(name: str) -> Path:
    path = BIN / name
    assert path.is_file(), f"{name} is not installed next to {sys.executable}: install the dev extra"
    return path


def run_tool(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], cwd=REPO, capture_output=True, text=True, timeout=120)


def load_yaml(path: Path) -> dict[str, Any]:
    """YAML through cfn-lint's loader, which understands !Ref, !Sub, !GetAtt... (plain YAML loads the same)."""
    cfn_yaml: ModuleType = importlib.import_module("cfnlint.decode.cfn_yaml")
    document = cfn_yaml.load(str(path))
    assert isinstance(document, dict), f"{path.name} is not a mapping"
    return cast(dict[str, Any], document)


def mapping(value: object, where: str) -> dict[str, Any]:
    assert isinstance(value, Mapping), f"{where} is not a mapping: {value!r}"
    return dict(value)


def strings(node: object) -> Iterator[str]:
    """Every string value (and key) in a parsed document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def known_settings() -> set[str]:
    return set(LEGACY_NAMES.values()) | setting_variables()  # the description's SDXL_* names, still read


def unknown_settings(names: set[str]) -> set[str]:
    return {name for name in names if name.startswith(SETTING_PREFIXES)} - known_settings()


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_yaml(TEMPLATE)


def resources(template: Mapping[str, Any]) -> dict[str, Any]:
    return mapping(template.get("Resources"), "Resources")


def properties(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    resource = mapping(resources(template).get(logical_id), logical_id)
    return mapping(resource.get("Properties", {}), f"{logical_id}.Properties")


def events(template: Mapping[str, Any], logical_id: str) -> dict[str, dict[str, Any]]:
    found = mapping(properties(template, logical_id).get("Events", {}), f"{logical_id}.Events")
    return {name: mapping(event, f"{logical_id}.Events.{name}") for name, event in found.items()}


def function_environment(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    """Globals' variables overlaid with the function's own, as SAM merges them."""
    globals_function = mapping(mapping(template.get("Globals", {}), "Globals").get("Function", {}), "Globals")
    merged = dict(mapping(globals_function.get("Environment", {}), "Globals env").get("Variables", {}))
    own = mapping(properties(template, logical_id).get("Environment", {}), f"{logical_id}.Environment")
    merged.update(mapping(own.get("Variables", {}), f"{logical_id} variables"))
    return merged


def policy_statements(template: Mapping[str, Any], logical_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for policy in properties(template, logical_id).get("Policies", []):
        assert isinstance(policy, Mapping), f"{logical_id}: a managed or SAM template policy {policy!r}"
        assert set(policy) <= {"Version", "Statement"}, f"{logical_id}: a SAM policy template {sorted(policy)}"
        found.extend(mapping(statement, f"{logical_id} statement") for statement in policy["Statement"])
    return found


# --- template.yaml ---


def test_cfn_lint_passes() -> None:
    result = run_tool(tool("cfn-lint"), "--", TEMPLATE.name)
    assert result.returncode == 0, f"cfn-lint failed:\n{result.stdout}{result.stderr}"


def test_template_is_sam_with_one_http_api(template: dict[str, Any]) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    apis = [name for name, res in resources(template).items() if res.get("Type") == "AWS::Serverless::HttpApi"]
    assert apis == ["HttpApi"]


def test_routes_reach_their_functions(template: dict[str, Any]) -> None:
    routes: dict[tuple[str, str], str] = {}
    for logical_id in FUNCTIONS:
        for name, event in events(template, logical_id).items():
            if event["Type"] != "HttpApi":
                continue
            props = mapping(event["Properties"], name)
            assert props["ApiId"] == {"Ref": "HttpApi"}, f"{logical_id}.{name} is not on the HttpApi"
            routes[(str(props["Method"]).upper(), str(props["Path"]))] = logical_id
    assert routes == ROUTES


def test_functions_run_the_handlers_on_python_3_11(template: dict[str, Any]) -> None:
    globals_function = mapping(template["Globals"]["Function"], "Globals.Function")
    assert globals_function["Runtime"] == "python3.11"
    assert globals_function["Architectures"] == [{"Ref": "Architecture"}]
    assert set(template["Parameters"]["Architecture"]["AllowedValues"]) == {"x86_64", "arm64"}
    for logical_id, handler in FUNCTIONS.items():
        props = properties(template, logical_id)
        assert props["Handler"] == handler
        assert isinstance(props["MemorySize"], int) and isinstance(props["Timeout"], int), logical_id
        module_name, attribute = handler.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module_name), attribute)), handler
    for logical_id in set(ROUTES.values()):  # an HTTP API integration gives up after 30 s
        assert properties(template, logical_id)["Timeout"] <= 30, logical_id


def test_functions_are_built_by_the_lambda_makefile(template: dict[str, Any]) -> None:
    makefile = LAMBDA_MAKEFILE.read_text()
    for logical_id in FUNCTIONS:
        metadata = mapping(resources(template)[logical_id].get("Metadata"), f"{logical_id}.Metadata")
        assert metadata == {"BuildMethod": "makefile", "ContextPath": "infra/lambda"}, logical_id
        assert re.search(rf"^[^#\n]*\bbuild-{logical_id}\b[^\n]*:", makefile, re.MULTILINE), logical_id
    assert template["Globals"]["Function"]["CodeUri"] == "."


def test_warm_up_runs_on_a_schedule(template: dict[str, Any]) -> None:
    assert template["Parameters"]["WarmupRate"]["Default"] == "rate(5 minutes)"
    for logical_id in ("WarmupFunction", "GenerateFunction"):
        schedules = [event for event in events(template, logical_id).values() if event["Type"] == "Schedule"]
        assert len(schedules) == 1, logical_id
        assert schedules[0]["Properties"]["Schedule"] == {"Ref": "WarmupRate"}, logical_id
    assert not any(event["Type"] == "Schedule" for event in events(template, "HealthFunction").values())


def test_rate_limit_table_has_the_key_and_ttl_the_store_uses(template: dict[str, Any]) -> None:
    table = mapping(resources(template)["RateLimitTable"], "RateLimitTable")
    assert table["Type"] == "AWS::DynamoDB::Table"
    props = mapping(table["Properties"], "RateLimitTable.Properties")
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert function_environment(template, "GenerateFunction")["POKEMON_RATE_LIMIT_TABLE"] == {"Ref": "RateLimitTable"}


def test_only_the_generate_function_may_touch_the_table_and_only_item_by_item(template: dict[str, Any]) -> None:
    statements = policy_statements(template, "GenerateFunction")
    assert statements, "GenerateFunction has no policy for the rate-limit table"
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert statement["Effect"] == "Allow"
        assert set(actions) <= RATE_LIMIT_ACTIONS, f"more than the rate-limit store needs: {actions}"
        assert statement["Resource"] == {"Fn::GetAtt": ["RateLimitTable", "Arn"]}
    assert {action for s in statements for action in s["Action"]} == RATE_LIMIT_ACTIONS
    for logical_id in ("HealthFunction", "WarmupFunction"):
        assert policy_statements(template, logical_id) == [], logical_id
    assert not [text for text in strings(template) if re.search(r"dynamodb:\*|^\*$|CrudPolicy", text)]


def test_the_token_comes_from_ssm_at_deploy_time_and_never_from_the_template(template: dict[str, Any]) -> None:
    parameter = mapping(template["Parameters"]["BearerTokenSsmParameter"], "BearerTokenSsmParameter")
    assert parameter["Default"] == "/pokemon/bearer-token"  # a parameter NAME, not a token
    token = function_environment(template, "GenerateFunction")["POKEMON_BEARER_TOKEN"]
    assert token == {"Fn::Sub": "{{resolve:ssm:${BearerTokenSsmParameter}}}"}
    # SecureString references are refused in Lambda environment variables: the deployment would fail.
    assert not [text for text in strings(template) if "resolve:ssm-secure" in text]
    for logical_id in ("HealthFunction", "WarmupFunction"):
        assert "POKEMON_BEARER_TOKEN" not in function_environment(template, logical_id), logical_id
    for logical_id in FUNCTIONS:
        for name, value in function_environment(template, logical_id).items():
            if re.search(r"TOKEN|SECRET|PASSWORD|API_KEY", name):
                assert not isinstance(value, str) or not value, f"{logical_id}: {name} is a literal"


def test_environment_holds_only_settings_the_service_knows(template: dict[str, Any]) -> None:
    for logical_id in FUNCTIONS:
        variables = function_environment(template, logical_id)
        assert unknown_settings(set(variables)) == set(), logical_id
        assert variables["POWERTOOLS_SERVICE_NAME"] == "pokemon"
        assert "POWERTOOLS_METRICS_NAMESPACE" in variables
        assert variables["POKEMON_GENERATION_BACKEND"] == "files"
        assert variables["POKEMON_IMAGES_DIR"] == "/var/task/pokemon"
        for name in ("POKEMON_RATE_LIMIT_PER_MIN", "POKEMON_NAME_BACKEND", "OPENAI_BASE_URL", "OPENAI_MODEL"):
            assert set(variables[name]) == {"Ref"}, f"{name} is not a parameter"
        assert variables["LOG_LEVEL"] == {"Ref": "LogLevel"}


def test_outputs_name_the_api_the_table_and_the_functions(template: dict[str, Any]) -> None:
    outputs = {name: mapping(output, name)["Value"] for name, output in template["Outputs"].items()}
    assert outputs["ApiUrl"] == {"Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"}
    assert outputs["RateLimitTableName"] == {"Ref": "RateLimitTable"}
    for logical_id in FUNCTIONS:
        assert outputs[f"{logical_id}Arn"] == {"Fn::GetAtt": [logical_id, "Arn"]}


# --- the Lambda package ---


def requirements(lines: list[str]) -> dict[str, str]:
    """Name → the whole requirement, normalised ("pillow>=10.0")."""
    return {Requirement(line).name.lower(): str(Requirement(line)) for line in lines}


def test_lambda_requirements_follow_pyproject_without_torch_or_the_server() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    allowed = requirements(project["dependencies"] + extras["aws"])
    lines = [line for line in LAMBDA_REQUIREMENTS.read_text().splitlines() if line.strip() and line[0] != "#"]
    wanted = requirements(lines)
    assert {name: spec for name, spec in wanted.items() if allowed.get(name) != spec} == {}, "not as in pyproject"
    assert set(allowed) - set(wanted) == SERVER_ONLY_PACKAGES
    assert not set(wanted) & set(requirements(extras["diffusion"]))
    assert not set(wanted) & {Requirement(line).name for line in extras["diffusion"]}


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_lambda_package_holds_the_code_and_images_only(tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    result = run_tool("make", "-s", "-f", LAMBDA_MAKEFILE, "lambda-source", f"ARTIFACTS_DIR={artifact}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {path.name for path in artifact.iterdir()} == {"core", "handlers", "pokemon"}
    assert sorted(path.name for path in (artifact / "pokemon").iterdir()) == sorted(
        path.name for path in (REPO / "pokemon").glob("*.png")
    )
    packaged = {path.relative_to(artifact).as_posix() for path in artifact.rglob("*") if path.is_file()}
    assert not [path for path in packaged if "__pycache__" in path or path.endswith(".pyc")]
    assert {"handlers/generate.py", "handlers/health.py", "handlers/warmup.py", "core/config.py"} <= packaged


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
@pytest.mark.parametrize(("arch", "platform"), [("x86_64", "manylinux2014_x86_64"), ("arm64", "manylinux2014_aarch64")])
def test_lambda_wheels_match_the_runtime(arch: str, platform: str) -> None:
    result = run_tool(
        "make", "-n", "-f", LAMBDA_MAKEFILE, "build-GenerateFunction", "ARTIFACTS_DIR=/artifacts", f"LAMBDA_ARCH={arch}"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    pip = " ".join(result.stdout.replace("\\\n", " ").split())
    for option in (f"--platform {platform}", "--python-version 3.11", "--only-binary=:all:", "--target"):
        assert option in pip, option
    assert "lambda-requirements.txt" in pip


def test_local_invocation_files_fit_the_template() -> None:
    """infra/README.md's `sam local` commands: the events are what the template's triggers send."""
    runtime = importlib.import_module("handlers.lambda_runtime")
    http = json.loads((EVENTS / "apigateway-http-generate.json").read_text())
    assert runtime.classify(http) == runtime.EventKind.API_GATEWAY_HTTP  # HttpApi events: payload 2.0
    assert (http["requestContext"]["http"]["method"], http["rawPath"]) in ROUTES
    scheduled = json.loads((EVENTS / "scheduled-event.json").read_text())
    assert runtime.classify(scheduled) == runtime.EventKind.SCHEDULED  # Schedule events: EventBridge rules
    local = json.loads((REPO / "infra" / "sam-local-env.json").read_text())
    assert set(local) <= set(FUNCTIONS)
    assert unknown_settings({name for variables in local.values() for name in variables}) == set()


# --- Dockerfile.gpu and its build context ---


def dockerfile() -> list[Instruction]:
    return instructions(DOCKERFILE)


def only(keyword: str) -> str:
    return only_argument(DOCKERFILE, keyword)


def test_hadolint_passes() -> None:
    result = run_tool(tool("hadolint"), "--no-color", DOCKERFILE.name)
    assert result.returncode == 0, f"hadolint failed:\n{result.stdout}{result.stderr}"


def test_image_serves_the_sdxl_backend_as_a_non_root_user() -> None:
    base = only("FROM")
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-[a-z-]+-ubuntu\d+\.\d+", base), base
    assert json.loads(only("CMD")) == ["python", "-m", "handlers.server"]
    assert only("EXPOSE") == "22222"
    user = only("USER").split(":")[0]
    assert user.isdigit() and int(user) != 0, user
    env = " ".join(instruction.arguments for instruction in dockerfile() if instruction.keyword == "ENV")
    for setting in ("POKEMON_GENERATION_BACKEND=sdxl", "POKEMON_HOST=0.0.0.0", "HF_HOME=/var/cache/huggingface"):
        assert setting in env.split(), setting
    assert json.loads(only("VOLUME")) == ["/var/cache/huggingface"]
    healthcheck = only("HEALTHCHECK")
    assert "/health" in healthcheck and "-fsSk" in healthcheck, healthcheck


def test_image_pins_torch_and_preloads_only_on_request() -> None:
    args = {name: value for name, _, value in (i.arguments.partition("=") for i in dockerfile() if i.keyword == "ARG")}
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["TORCH_VERSION"]), args
    assert args["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/cu")
    assert args["PRELOAD_MODEL"] in ('""', ""), "the model download must be opt-in"
    keywords = [instruction.keyword + " " + instruction.arguments for instruction in dockerfile()]
    preload = next(i for i, text in enumerate(keywords) if "preload_model.py" in text and text.startswith("RUN"))
    volume = next(i for i, text in enumerate(keywords) if text.startswith("VOLUME"))
    assert preload < volume, "files written under a declared VOLUME during the build are discarded"


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(re-include?, pattern) in file order, with Docker's matching: `*` and `?` stay within one path
    segment, `**` crosses segments, and a pattern that matches a folder matches everything inside it."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip()).lstrip("/")
        regex = ""
        index = 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                regex, index = regex + "(?:.*/)?", index + 3
            elif pattern.startswith("**", index):
                regex, index = regex + ".*", index + 2
            elif pattern[index] == "*":
                regex, index = regex + "[^/]*", index + 1
            elif pattern[index] == "?":
                regex, index = regex + "[^/]", index + 1
            elif pattern[index] == "[":
                end = pattern.index("]", index)
                regex, index = regex + pattern[index : end + 1], end + 1
            else:
                regex, index = regex + re.escape(pattern[index]), index + 1
        rules.append((negate, re.compile(regex)))
    return rules


def in_build_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negate, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return not excluded


def test_build_context_lets_through_what_the_image_copies() -> None:
    rules = dockerignore_rules()
    copied = [
        source
        for instruction in dockerfile()
        if instruction.keyword == "COPY" and "--from" not in instruction.arguments
        for source in instruction.arguments.split()[:-1]
    ]
    assert copied, "no COPY in Dockerfile.gpu"
    for source in copied:
        matches = [path for path in REPO.glob(source.rstrip("/")) if path.exists()]
        assert matches, f"COPY {source}: nothing in the repository"
        files = [found for path in matches for found in ([path] if path.is_file() else path.rglob("*.py"))]
        names = [path.relative_to(REPO).as_posix() for path in files]
        missing = [name for name in names if not in_build_context(name, rules)]
        assert missing == [], f"COPY {source} is cut by .dockerignore: {missing}"


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "certs/key.pem",
        "certs/cert.pem",
        "tests/test_api_contract.py",
        ".pytest_cache/v/cache/nodeids",
        ".hypothesis/examples/x",
        ".mypy_cache/3.11/core/config.data.json",
        "bench/results/bench_server.json",
        ".aws-sam/build/template.yaml",
        "core/__pycache__/config.cpython-311.pyc",
        "handlers/__pycache__/server.cpython-311.pyc",
        "pokemon/draw_creatures.py",
        "template.yaml",
    ],
)
def test_build_context_leaves_out_private_and_bulky_files(path: str) -> None:
    assert not in_build_context(path, dockerignore_rules())


# --- infra/compose.gpu.yaml ---


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def test_compose_reserves_a_gpu_for_the_api(compose: dict[str, Any]) -> None:
    api = mapping(compose["services"]["api"], "api")
    devices = api["deploy"]["resources"]["reservations"]["devices"]
    assert any(device["driver"] == "nvidia" and "gpu" in device["capabilities"] for device in devices), devices
    build = mapping(api["build"], "api.build")
    assert (COMPOSE.parent / build["context"]).resolve() == REPO
    assert build["dockerfile"] == DOCKERFILE.name
    assert "/health" in " ".join(api["healthcheck"]["test"])
    volumes = [str(volume) for volume in api["volumes"]]
    assert any(volume.endswith(":/var/cache/huggingface") for volume in volumes), volumes
    assert any(volume.endswith(":/app/certs:ro") for volume in volumes), volumes


def test_compose_names_come_from_the_ollama_service(compose: dict[str, Any]) -> None:
    services = mapping(compose["services"], "services")
    api_env = mapping(services["api"]["environment"], "api.environment")
    assert api_env["POKEMON_NAME_BACKEND"] == "remote"
    assert api_env["OPENAI_BASE_URL"] == "http://ollama:11434/v1"
    assert unknown_settings(set(api_env)) == set()
    ollama = mapping(services["ollama"], "ollama")
    assert re.fullmatch(r"ollama/ollama:\d+\.\d+\.\d+", ollama["image"]), ollama["image"]
    assert "healthcheck" in ollama
    assert services["api"]["depends_on"]["ollama"]["condition"] == "service_healthy"
    sources = {str(volume).split(":")[0] for service in services.values() for volume in service.get("volumes", [])}
    named = {source for source in sources if not re.search(r"[/.$]", source)}  # not a bind mount
    assert {"hf-cache", "ollama"} <= named <= set(compose["volumes"])


# --- infra/preload_model.py ---


def test_preload_takes_the_fp16_variant_or_falls_back_to_the_full_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("preload_model", REPO / "infra" / "preload_model.py")
    assert spec is not None and spec.loader is not None
    preload = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preload)
    calls: list[tuple[str, str | None]] = []

    class FakePipeline:
        @staticmethod
        def download(model: str, variant: str | None = None) -> str:
            calls.append((model, variant))
            if variant is not None and model == "no/fp16":
                raise ValueError("no fp16 variant")
            return f"/cache/{model}"

    fake_diffusers = ModuleType("diffusers")
    fake_diffusers.DiffusionPipeline = FakePipeline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "diffusers", fake_diffusers)
    assert preload.preload("has/fp16") == "/cache/has/fp16"
    assert preload.preload("no/fp16") == "/cache/no/fp16"
    assert calls == [("has/fp16", "fp16"), ("no/fp16", "fp16"), ("no/fp16", None)]
    assert preload.main(["preload_model.py"]) == 2


# --- One set of versions: constraints.txt ---

CONSTRAINTS = REPO / "constraints.txt"
PYPROJECT = REPO / "pyproject.toml"


def pinned() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, separator, version = line.partition("==")
            assert separator and version, f"not an exact pin: {line!r}"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_constraints_pin_every_dependency_of_the_project_within_its_bounds() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras = project["optional-dependencies"]
    pins = pinned()
    for line in project["dependencies"] + extras["diffusion"] + extras["aws"] + extras["dev"]:
        requirement = Requirement(line)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (line, pins[name])


def test_every_artefact_installs_from_the_constraints() -> None:
    make = (REPO / "Makefile").read_text()
    assert make.count("--constraint $(CONSTRAINTS)") >= 2 and "CONSTRAINTS := constraints.txt" in make
    assert '--constraint "$(ROOT)/constraints.txt"' in LAMBDA_MAKEFILE.read_text()
    copied = " ".join(i.arguments for i in dockerfile() if i.keyword == "COPY")
    assert "constraints.txt" in copied.split()
    installs = [i.arguments for i in dockerfile() if i.keyword == "RUN" and "pip install" in i.arguments]
    assert all("--constraint /opt/constraints.txt" in run for run in installs if "requirement" in run or " ." in run)


def test_the_image_takes_the_torch_release_ci_tests() -> None:
    args = {name: value for name, _, value in (i.arguments.partition("=") for i in dockerfile() if i.keyword == "ARG")}
    make_torch = re.search(r"^TORCH \?= torch==(\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert make_torch is not None
    assert args["TORCH_VERSION"] == pinned()["torch"] == make_torch.group(1)


def test_the_license_is_the_descriptions_mit_and_is_packaged() -> None:
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    pyproject = tomllib.loads(PYPROJECT.read_text())
    assert pyproject["project"]["license"] == "MIT"
    assert pyproject["project"]["license-files"] == ["LICENSE"]
    # setuptools reads an SPDX `license` string (PEP 639) from release 77 on.
    (requirement,) = [Requirement(line) for line in pyproject["build-system"]["requires"] if "setuptools" in line]
    assert not requirement.specifier.contains("76.1.0") and requirement.specifier.contains("77.0.3")

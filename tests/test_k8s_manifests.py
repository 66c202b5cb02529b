"""infra/k8s/: the Kubernetes manifests of a GPU fleet.

Every manifest is validated offline and strictly (an unknown field is an error) against the schemas
kubernetes-validate ships, for the oldest Kubernetes release upstream still supports and the newest the
schemas know; kustomize builds the whole folder when kubectl is installed, and what it renders is validated
too. The rest checks what a schema cannot know: that the pieces point at each other (selectors, ports,
names, the Secret's keys) and at the service as it is — its routes, its settings, its drain time, the
metric it exports, the user and cache folder of its image.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from core.config import Settings, load_settings
from core.metrics import PrometheusMetrics
from handlers.routes import GENERATE_PATH, HEALTH_PATH, METRICS_PATH, READY_PATH
from handlers.server import DRAIN_SECONDS
from tests.support.environment import SETTING_PREFIXES, clean_environment
from tests.support.paths import REPO
from tests.support.ports import LOOPBACK, free_port
from tests.support.server import ServerFactory

# Neither ships type information: imported as plain modules, as test_deploy_files does with cfn-lint.
yaml: ModuleType = importlib.import_module("yaml")
kubernetes_validate: ModuleType = importlib.import_module("kubernetes_validate")

K8S = REPO / "infra" / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
SECRETS_EXAMPLE = K8S / "secrets.env.example"
DOCKERFILE = REPO / "Dockerfile.gpu"

# The oldest minor release upstream supports (three at a time) and the newest the installed schemas know.
OLDEST_SUPPORTED = "1.35.0"
VERSIONS = tuple(dict.fromkeys((OLDEST_SUPPORTED, kubernetes_validate.latest_version())))

STARTUP_BUDGET_S = 600  # a first start may download the model (~7 GB) before it loads
SECRET_PLACEHOLDER = "0123456789abcdef"  # stands for a secret's value wherever the manifests use one


# --- loading ---


@dataclass(frozen=True)
class Document:
    path: Path
    index: int
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def label(self) -> str:
        return f"{self.path.relative_to(K8S)}#{self.index}:{self.kind}/{self.name}"


def load_all(path: Path) -> list[dict[str, Any]]:
    return [body for body in yaml.safe_load_all(path.read_text()) if body is not None]


def manifest_files() -> list[Path]:
    return sorted(path for path in K8S.rglob("*.yaml") if path != KUSTOMIZATION)


def documents() -> list[Document]:
    return [Document(path, index, body) for path in manifest_files() for index, body in enumerate(load_all(path))]


def kustomization() -> dict[str, Any]:
    found = yaml.safe_load(KUSTOMIZATION.read_text())
    assert isinstance(found, dict)
    return found


def deployed() -> list[Document]:
    """What `kubectl apply -k` sends, before kustomize's changes: the documents of the listed files."""
    listed = {K8S / name for name in kustomization()["resources"]}
    return [document for document in documents() if document.path in listed]


def find(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [d.body for d in deployed() if d.kind == kind and (name is None or d.name == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''} in the kustomization, found {len(matches)}"
    return matches[0]


def pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def only_container(workload: Mapping[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(workload)["containers"]
    assert isinstance(container, dict)
    return container


def api() -> dict[str, Any]:
    return find("Deployment", "pokemon-api")


def redis_set() -> dict[str, Any]:
    return find("StatefulSet")


def config_data() -> dict[str, str]:
    """The ConfigMap every API container reads through envFrom."""
    (source,) = only_container(api())["envFrom"]
    data: dict[str, str] = find("ConfigMap", source["configMapRef"]["name"])["data"]
    return data


def labels_match(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels is checked here: {sorted(selector)}"
    wanted: Mapping[str, str] = selector.get("matchLabels", {})
    return bool(wanted) and all(labels.get(key) == value for key, value in wanted.items())


def pod_labels(workload: Mapping[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def container_port(container: Mapping[str, Any], port: int | str) -> int:
    """A probe's or a Service's port (a number or a name) as the container's port number."""
    numbers = {p["containerPort"] for p in container["ports"]}
    if isinstance(port, int):
        assert port in numbers, f"port {port} is not one of the container's {sorted(numbers)}"
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"no container port named {port!r} (has {sorted(named)})"
    return int(named[port])


def secret_refs(node: object) -> Iterator[dict[str, str]]:
    """Every secretKeyRef anywhere in a document."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "secretKeyRef":
                yield dict(value)
            else:
                yield from secret_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from secret_refs(item)


def example_secret_keys() -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in SECRETS_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, separator, value = line.partition("=")
            assert separator, f"not KEY=VALUE: {line!r}"
            entries[key.strip()] = value
    return entries


def expanded_environment(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's own variables as Kubernetes hands them over: secrets stand for SECRET_PLACEHOLDER and
    `$(NAME)` is expanded from a variable defined earlier in the list, as Kubernetes does (a later one, or an
    unknown one, stays literal, which the caller would then see)."""
    environment: dict[str, str] = {}
    for variable in container.get("env", []):
        if "valueFrom" in variable:
            environment[variable["name"]] = SECRET_PLACEHOLDER
            continue
        value = re.sub(r"\$\((\w+)\)", lambda m: environment.get(m.group(1), m.group(0)), variable["value"])
        environment[variable["name"]] = value
    return environment


def known_settings() -> set[str]:
    return {str(field.validation_alias) for field in Settings.model_fields.values()}


def dockerfile_text() -> str:
    return DOCKERFILE.read_text()


def queue_depth_metric() -> str:
    """The name core/metrics.py exports the pipeline's queue under: the family that follows `watch_queue`."""
    metrics = PrometheusMetrics()
    metrics.watch_queue(lambda: 7919)
    names = [family.name for family in metrics.collect() if any(s.value == 7919 for s in family.samples)]
    assert len(names) == 1, names
    return str(names[0])


# --- every manifest, valid for Kubernetes ---


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("document", documents(), ids=lambda document: document.label)
def test_every_manifest_is_valid_for_kubernetes(document: Document, version: str) -> None:
    try:
        kubernetes_validate.validate(document.body, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError as exc:  # a CRD or a typo in kind/apiVersion
        pytest.fail(exc.message)


def test_the_validation_is_strict() -> None:
    """The test above can fail: a field Kubernetes does not know is refused, as is a wrong type."""
    deployment = api()
    misspelled = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelled, VERSIONS[-1], strict=True)
    port = {**find("Service", "pokemon-api")}
    port["spec"] = {**port["spec"], "ports": [{"port": "eighty"}]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(port, VERSIONS[-1], strict=True)


def test_the_kubernetes_validate_command_passes_every_file() -> None:
    command = [Path(sys.executable).parent / "kubernetes-validate", "--strict", "--quiet"]
    for version in VERSIONS:
        command += ["-k", version]
    done = subprocess.run([*map(str, command), *map(str, manifest_files())], capture_output=True, text=True)
    # A kind without a schema is only a WARN line with exit 0: no output at all is the pass.
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


# --- the kustomization ---


def test_the_kustomization_lists_exactly_the_folders_manifests() -> None:
    listed = kustomization()["resources"]
    assert len(listed) == len(set(listed))
    top_level = sorted(path.name for path in K8S.glob("*.yaml") if path != KUSTOMIZATION)
    assert sorted(listed) == top_level, "every manifest in infra/k8s/ is applied, and only those"
    # The adapter's rule is installed with the adapter, in its namespace: never part of this kustomization.
    for document in documents():
        if document.path.parent != K8S:
            assert document.body["metadata"].get("namespace"), f"{document.label}: names its own namespace"


def test_everything_lands_in_the_kustomizations_namespace() -> None:
    namespace = kustomization()["namespace"]
    assert find("Namespace")["metadata"]["name"] == namespace
    for document in deployed():
        # kustomize sets the namespace: one written here would be overridden, or mislead a `kubectl apply -f`.
        assert "namespace" not in document.body["metadata"], document.label


def test_the_secret_comes_from_a_file_kept_out_of_git() -> None:
    (generator,) = kustomization()["secretGenerator"]
    assert generator["envs"] == ["secrets.env"] and set(generator) == {"name", "envs"}
    ignored = subprocess.run(["git", "check-ignore", "-q", str(K8S / "secrets.env")], cwd=REPO, check=False)
    assert ignored.returncode == 0, "infra/k8s/secrets.env must be git-ignored"
    # No Secret is written in a manifest, and the example carries no value: no token ever lands in git.
    assert not [d.label for d in documents() if d.kind == "Secret"]
    assert all(value == "" for value in example_secret_keys().values()), "the example leaves every value empty"


def test_every_secret_reference_names_a_key_the_example_documents() -> None:
    (generator,) = kustomization()["secretGenerator"]
    references = [ref for document in deployed() for ref in secret_refs(document.body)]
    assert references, "the token and the Redis password come from the Secret"
    documented = set(example_secret_keys())
    for reference in references:
        assert reference["name"] == generator["name"], reference
        assert reference["key"] in documented, f"{reference['key']} is not in secrets.env.example"
        assert not reference.get("optional"), "a missing key must stop the pod, not start it without a token"
    assert {ref["key"] for ref in references} == documented, "the example documents only keys in use"


def test_the_image_is_the_one_dockerfile_gpu_builds() -> None:
    built = re.search(r"docker build -f Dockerfile\.gpu -t (\S+) \.", dockerfile_text())
    assert built is not None
    (image,) = kustomization()["images"]
    assert only_container(api())["image"] == image["name"] == built.group(1)
    assert image.get("newTag") and image["newTag"] != "latest"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its kustomize) is not installed")
def test_kustomize_builds_what_kubernetes_accepts(tmp_path: Path) -> None:
    folder = tmp_path / "k8s"
    shutil.copytree(K8S, folder)
    (folder / "secrets.env").write_text("".join(f"{key}={SECRET_PLACEHOLDER}\n" for key in example_secret_keys()))
    done = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = [body for body in yaml.safe_load_all(done.stdout) if body]
    for body in rendered:
        kubernetes_validate.validate(body, VERSIONS[-1], strict=True)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for body in rendered:
        by_kind.setdefault(body["kind"], []).append(body)
        if body["kind"] != "Namespace":
            assert body["metadata"]["namespace"] == kustomization()["namespace"], body["metadata"]["name"]
    (secret,) = by_kind["Secret"]
    (generator,) = kustomization()["secretGenerator"]
    assert secret["metadata"]["name"].startswith(generator["name"] + "-"), "a hashed name: a new token rolls pods"
    assert set(secret["data"]) == set(example_secret_keys())
    references = [ref for body in rendered for ref in secret_refs(body)]
    assert references and all(ref["name"] == secret["metadata"]["name"] for ref in references)
    (image,) = kustomization()["images"]
    (deployment,) = by_kind["Deployment"]
    assert only_container(deployment)["image"] == f"{image['newName']}:{image['newTag']}"


# --- the API pods ---


def test_the_api_pods_run_as_the_images_user_without_privileges() -> None:
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile_text(), re.MULTILINE)
    assert user is not None
    security = pod_spec(api())["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (int(user.group(1)), int(user.group(2)))


@pytest.mark.parametrize("workload", ["Deployment", "StatefulSet"])
def test_every_pod_is_locked_down(workload: str) -> None:
    spec = pod_spec(find(workload))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    # Otherwise Kubernetes sets <SERVICE>_PORT=tcp://… for every Service: POKEMON_REDIS_PORT here, and a
    # Service named `pokemon` would set POKEMON_PORT, one of the service's own settings.
    assert spec["enableServiceLinks"] is False
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert not container["image"].endswith(":latest")


def test_the_api_writes_only_to_volumes() -> None:
    hf_home = re.search(r"HF_HOME=(\S+)", dockerfile_text())
    assert hf_home is not None
    spec = pod_spec(api())
    container = only_container(api())
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container["volumeMounts"]}
    assert "persistentVolumeClaim" in mounts[hf_home.group(1)], "the model cache outlives a pod"
    claim = mounts[hf_home.group(1)]["persistentVolumeClaim"]["claimName"]
    assert "ReadWriteMany" in find("PersistentVolumeClaim", claim)["spec"]["accessModes"], "pods on many nodes"
    environment = expanded_environment(container)
    for variable in ("HOME", "XDG_CACHE_HOME"):
        path = Path(environment[variable])
        assert any(path == Path(m) or Path(m) in path.parents for m in mounts), f"{variable} is on a volume"


def test_the_gpu_is_requested() -> None:
    resources = only_container(api())["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"].get("nvidia.com/gpu", 1) == 1


def test_every_setting_the_manifests_set_is_one_the_service_knows() -> None:
    names = set(config_data()) | {variable["name"] for variable in only_container(api())["env"]}
    unknown = {name for name in names if name.startswith(SETTING_PREFIXES)} - known_settings()
    assert not unknown, f"not settings (typos?): {sorted(unknown)}"
    assert not set(config_data()) & {v["name"] for v in only_container(api())["env"]}, "each set in one place"


def test_the_settings_load_as_a_pod_would_see_them() -> None:
    environment = {**config_data(), **expanded_environment(only_container(api()))}
    assert not [value for value in environment.values() if "$(" in value], "a reference Kubernetes cannot expand"
    settings = load_settings(**{name: value for name, value in environment.items() if name in known_settings()})
    assert settings.generation_backend == "sdxl"
    assert settings.bearer_token is not None and settings.redis_url is not None
    assert settings.trusted_proxies, "the Ingress controller's addresses"
    # A pod CIDR: private addresses, never the whole internet.
    assert all(network.is_private and network.prefixlen >= 8 for network in settings.trusted_proxies)


def api_port() -> int:
    (port,) = only_container(api())["ports"]
    return int(port["containerPort"])


def test_the_container_listens_where_the_service_is_told_to() -> None:
    assert api_port() == int(config_data()["POKEMON_PORT"])
    assert config_data()["POKEMON_HOST"] in ("0.0.0.0", "::"), "reachable from other pods, not loopback"
    annotations = api()["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == api_port()
    assert annotations["prometheus.io/path"] == METRICS_PATH


def probe_path(probe: Mapping[str, Any]) -> str:
    http = probe["httpGet"]
    assert container_port(only_container(api()), http["port"]) == api_port()
    return str(http["path"])


def test_the_probes_ask_the_services_own_paths() -> None:
    container = only_container(api())
    assert probe_path(container["readinessProbe"]) == READY_PATH
    assert probe_path(container["livenessProbe"]) == HEALTH_PATH
    assert probe_path(container["startupProbe"]) in (READY_PATH, HEALTH_PATH)


def test_the_probes_speak_what_the_server_serves() -> None:
    """HTTPS only when a certificate is mounted where POKEMON_TLS_CERT points (the image's default)."""
    cert = config_data().get("POKEMON_TLS_CERT") or re.search(r"POKEMON_TLS_CERT=(\S+)", dockerfile_text())
    cert_path = Path(cert if isinstance(cert, str) else cert.group(1)) if cert else None
    assert cert_path is not None
    mounts = [Path(mount["mountPath"]) for mount in only_container(api())["volumeMounts"]]
    expected = "HTTPS" if any(mount in cert_path.parents for mount in mounts) else "HTTP"
    container = only_container(api())
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"].get("scheme", "HTTP") == expected, probe


def test_the_model_load_has_time_before_any_restart() -> None:
    startup = only_container(api())["startupProbe"]
    budget = startup["failureThreshold"] * startup["periodSeconds"]
    assert budget >= STARTUP_BUDGET_S
    # A rollout waiting on such a start is not reported stuck before the probe gives up.
    assert api()["spec"]["progressDeadlineSeconds"] > budget


def test_a_stopping_pod_drains_before_it_is_killed() -> None:
    spec = pod_spec(api())
    pre_stop = only_container(api()).get("lifecycle", {}).get("preStop", {})
    pause = pre_stop.get("sleep", {}).get("seconds", 0)
    assert spec["terminationGracePeriodSeconds"] > pause + DRAIN_SECONDS


# --- Service, PDB, HPA, Ingress: each points at the API ---


def test_the_service_selects_the_api_pods_and_reaches_their_port() -> None:
    service = find("Service", "pokemon-api")
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert labels_match({"matchLabels": service["spec"]["selector"]}, pod_labels(api()))
    assert service["spec"]["selector"] == api()["spec"]["selector"]["matchLabels"]
    (port,) = service["spec"]["ports"]
    assert container_port(only_container(api()), port["targetPort"]) == api_port()


def test_the_disruption_budget_covers_the_api_pods() -> None:
    budget = find("PodDisruptionBudget")
    assert budget["spec"]["selector"] == api()["spec"]["selector"]
    assert labels_match(budget["spec"]["selector"], pod_labels(api()))
    # Never zero disruptions allowed, or a node drain hangs.
    assert budget["spec"].get("maxUnavailable", 0) >= 1 or budget["spec"]["minAvailable"] < find(
        "HorizontalPodAutoscaler"
    )["spec"].get("minReplicas", 1)


def test_the_autoscaler_scales_the_api_on_the_exported_queue_depth() -> None:
    autoscaler = find("HorizontalPodAutoscaler")
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        api()["metadata"]["name"],
    )
    (metric,) = autoscaler["spec"]["metrics"]
    assert metric["type"] == "Pods", "per pod, from the custom metrics API (prometheus-adapter)"
    assert metric["pods"]["metric"]["name"] == queue_depth_metric()
    assert 0 < float(metric["pods"]["target"]["averageValue"]) < int(config_data()["POKEMON_QUEUE_SIZE"])
    assert 1 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]
    assert "replicas" not in api()["spec"], "the autoscaler owns the count; an apply must not reset it"


def test_the_adapter_rule_serves_the_metric_the_autoscaler_reads() -> None:
    (adapter,) = [d.body for d in documents() if d.path.parent.name == "monitoring" and d.kind == "ConfigMap"]
    rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    wanted = find("HorizontalPodAutoscaler")["spec"]["metrics"][0]["pods"]["metric"]["name"]
    (rule,) = [rule for rule in rules if rule["name"]["as"] == wanted]
    exported = queue_depth_metric()
    assert rule["seriesQuery"].startswith(exported + "{")
    assert re.fullmatch(rule["name"]["matches"], exported)
    # A Pods metric is looked up per namespace and pod: the series must carry both, mapped to resources.
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert "<<.LabelMatchers>>" in rule["metricsQuery"] and "<<.GroupBy>>" in rule["metricsQuery"]


def app_routes() -> list[str]:
    from handlers.api import create_app

    app = create_app(load_settings(), metrics=PrometheusMetrics())
    return [str(getattr(route, "path", "")) for route in app.routes]


def test_the_ingress_routes_the_public_paths_to_the_service_and_not_metrics() -> None:
    ingress = find("Ingress")
    service = find("Service", "pokemon-api")
    service_ports = {port["name"]: port["port"] for port in service["spec"]["ports"]}
    assert ingress["spec"]["ingressClassName"]
    (tls,) = ingress["spec"]["tls"]
    assert tls["secretName"] and tls["hosts"] == [rule["host"] for rule in ingress["spec"]["rules"]]
    routes = app_routes()
    assert METRICS_PATH in routes, "the server does export /metrics: the check below is not vacuous"
    routed: list[tuple[str, str]] = []
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            port = backend["port"]
            assert port.get("number") in service_ports.values() or port.get("name") in service_ports
            routed.append((path["pathType"], path["path"]))
    for path_type, path in routed:
        if path_type == "Exact":
            assert path in routes, f"{path} is not a route of the app"
        else:
            assert path_type == "Prefix", "ImplementationSpecific means something else per controller"
            assert any(route.startswith(path.rstrip("/") + "/") for route in routes), path
            assert not METRICS_PATH.startswith(path.rstrip("/") + "/") and path != "/", f"{path} exposes /metrics"
    assert ("Exact", METRICS_PATH) not in routed
    assert {GENERATE_PATH, HEALTH_PATH, READY_PATH} <= {path for _, path in routed}


# --- Redis ---


def redis_service() -> dict[str, Any]:
    return find("Service", redis_set()["spec"]["serviceName"])


def test_the_api_finds_redis_by_its_service() -> None:
    url = urlsplit(expanded_environment(only_container(api()))["POKEMON_REDIS_URL"])
    service = redis_service()
    (port,) = service["spec"]["ports"]
    assert url.scheme == "redis" and url.hostname == service["metadata"]["name"] and url.port == port["port"]
    assert container_port(only_container(redis_set()), port["targetPort"]) == url.port
    assert service["spec"]["clusterIP"] == "None", "the StatefulSet's governing Service is headless"
    assert labels_match({"matchLabels": service["spec"]["selector"]}, pod_labels(redis_set()))
    assert url.password == SECRET_PLACEHOLDER, "the password comes from the Secret"


def test_redis_and_the_api_share_one_password() -> None:
    def password_ref(container: Mapping[str, Any], variable: str) -> dict[str, str]:
        (found,) = [v["valueFrom"]["secretKeyRef"] for v in container["env"] if v["name"] == variable]
        return dict(found)

    api_env = {v["name"]: v for v in only_container(api())["env"]}
    url_variable = re.search(r":\$\((\w+)\)@", api_env["POKEMON_REDIS_URL"]["value"])
    assert url_variable is not None
    args = only_container(redis_set())["args"]
    required = args[args.index("--requirepass") + 1]
    redis_variable = re.fullmatch(r"\$\((\w+)\)", required)
    assert redis_variable is not None
    assert password_ref(only_container(api()), url_variable.group(1)) == password_ref(
        only_container(redis_set()), redis_variable.group(1)
    )


def memory_bytes(quantity: str) -> int:
    """Bytes in a Kubernetes quantity (Ki, Mi, Gi) or a Redis one (kb, mb, gb: binary multiples in Redis)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "kb": 2**10, "mb": 2**20, "gb": 2**30}
    parsed = re.fullmatch(r"(\d+)([A-Za-z]*)", quantity)
    assert parsed is not None and parsed.group(2) in (*units, ""), quantity
    return int(parsed.group(1)) * units.get(parsed.group(2), 1)


def test_redis_is_a_bounded_cache_that_keeps_nothing() -> None:
    container = only_container(redis_set())
    args = container["args"]
    options = dict(zip(args[::2], args[1::2], strict=True))
    assert options["--maxmemory-policy"] == "allkeys-lru"
    assert options["--save"] == "" and options["--appendonly"] == "no"
    assert memory_bytes(options["--maxmemory"]) < memory_bytes(container["resources"]["limits"]["memory"])
    assert re.fullmatch(r"redis:7\.\d+\.\d+(-\w+)?", container["image"]), "pinned to a release of Redis 7"
    assert redis_set()["spec"]["replicas"] == 1


def test_only_the_api_pods_may_reach_redis() -> None:
    policy = find("NetworkPolicy")
    assert labels_match(policy["spec"]["podSelector"], pod_labels(redis_set()))
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert set(source) == {"podSelector"} and labels_match(source["podSelector"], pod_labels(api()))
    assert not labels_match(source["podSelector"], pod_labels(redis_set()))
    (port,) = rule["ports"]
    assert container_port(only_container(redis_set()), port["port"]) == 6379


def redis_args(password: str) -> list[str]:
    """The StatefulSet's arguments, its `$(VARIABLE)` references expanded as Kubernetes would."""
    container = only_container(redis_set())
    environment = {variable["name"]: password for variable in container["env"] if "valueFrom" in variable}
    return [re.sub(r"\$\((\w+)\)", lambda m: environment[m.group(1)], arg) for arg in container["args"]]


@dataclass
class ManifestRedis:
    """redis-server run with the StatefulSet's own arguments, on a loopback port; stopped by its test."""

    process: subprocess.Popen[bytes]
    port: int
    password: str

    @property
    def url(self) -> str:
        """The API pod's POKEMON_REDIS_URL, pointed at this server."""
        url = urlsplit(expanded_environment(only_container(api()))["POKEMON_REDIS_URL"])
        return url._replace(netloc=f":{url.password}@{LOOPBACK}:{self.port}").geturl()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def manifest_redis(tmp_path: Path) -> Iterator[ManifestRedis]:
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed (`make test` installs it)")
    port, password = free_port(), SECRET_PLACEHOLDER
    command = [executable, *redis_args(password), "--bind", LOOPBACK, "--port", str(port), "--dir", str(tmp_path)]
    server = ManifestRedis(
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT), port, password
    )
    try:
        with redis.Redis(host=LOOPBACK, port=port, password=password, socket_timeout=2) as client:
            for _ in range(250):
                assert server.process.poll() is None, "redis-server refused the StatefulSet's arguments"
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.02)
        yield server
    finally:
        server.stop()


def test_a_real_redis_takes_the_statefulsets_arguments(manifest_redis: ManifestRedis) -> None:
    # The API's own URL, pointed at this server: its password is the one Redis requires.
    with redis.Redis.from_url(manifest_redis.url) as client:
        config = client.config_get("*")
    assert config["maxmemory-policy"] == "allkeys-lru"
    args = only_container(redis_set())["args"]
    assert int(config["maxmemory"]) == memory_bytes(args[args.index("--maxmemory") + 1])
    assert config["save"] == "" and config["appendonly"] == "no"
    stranger = redis.Redis(host=LOOPBACK, port=manifest_redis.port, socket_timeout=2)
    with stranger, pytest.raises(redis.AuthenticationError):
        stranger.get("pokemon:ratelimit:203.0.113.5")


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_the_redis_readiness_probe_needs_the_password(manifest_redis: ManifestRedis) -> None:
    port, password = manifest_redis.port, manifest_redis.password
    probe = only_container(redis_set())["readinessProbe"]["exec"]["command"]
    assert probe[:2] == ["sh", "-c"] and "-h 127.0.0.1 " in probe[2]
    command = [*probe[:2], probe[2].replace("-h 127.0.0.1 ", f"-h 127.0.0.1 -p {port} ")]
    auth_variable = {v["name"] for v in only_container(redis_set())["env"]} & {"REDISCLI_AUTH"}
    assert auth_variable, "redis-cli reads the password from REDISCLI_AUTH"
    for secret, ready in ((password, 0), ("wrong", 1)):
        done = subprocess.run(command, env={**clean_environment(), "REDISCLI_AUTH": secret}, timeout=10, check=False)
        assert (done.returncode != 0) == bool(ready), f"ready={not ready} expected with password {secret!r}"


# --- a pod as the manifests configure it ---


def test_a_pod_configured_by_the_manifests_serves_its_probes_and_outlives_redis(
    manifest_redis: ManifestRedis, server_factory: ServerFactory
) -> None:
    """The ConfigMap and the container's variables, as a real server process: a loopback port and the files
    backend stand in for the pod's address and its GPU, everything else is the manifests' (no certificate at
    the image's paths, the Secret's token, POKEMON_REDIS_URL at a Redis run with the StatefulSet's arguments)."""
    container = only_container(api())
    environment = {**config_data(), **expanded_environment(container)}
    environment.update(POKEMON_REDIS_URL=manifest_redis.url, POKEMON_GENERATION_BACKEND="files")
    for variable in ("POKEMON_TLS_CERT", "POKEMON_TLS_KEY"):
        found = re.search(rf"{variable}=(\S+)", dockerfile_text())
        assert found is not None and not Path(found.group(1)).exists()
        environment[variable] = found.group(1)
    # The pod's address becomes the fixture's loopback port: a test never listens on 0.0.0.0.
    listen = ("POKEMON_HOST", "POKEMON_PORT")
    server = server_factory(
        {k: v for k, v in environment.items() if k.startswith(SETTING_PREFIXES) and k not in listen}
    )
    assert server.base_url.startswith("http://"), "plain HTTP, as the probes' scheme says"
    token = {"Authorization": f"Bearer {SECRET_PLACEHOLDER}"}
    with server.client() as client:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            http = container[probe]["httpGet"]
            assert http.get("scheme", "HTTP") == "HTTP"
            assert wait_for_status(client, http["path"], 200), f"{probe} {http['path']}"
        for rule in find("Ingress")["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                if path["pathType"] == "Exact":
                    assert client.get(path["path"], headers=token).status_code == 200, path["path"]
        assert client.get(GENERATE_PATH).status_code == 401, "the token from the Secret is required"
        metrics = client.get(METRICS_PATH).text
        assert re.search(rf"^{queue_depth_metric()} ", metrics, re.MULTILINE), "the HPA's metric is exported"
        with redis.Redis.from_url(manifest_redis.url) as store:
            assert store.keys(config_data()["POKEMON_REDIS_PREFIX"] + "*"), "the rate limit lives in Redis"
        assert client.get(HEALTH_PATH).json()["status"] == "ok"

        manifest_redis.stop()
        for _ in range(5):  # the breaker opens after POKEMON_REDIS_BREAKER_FAILURES failed calls
            assert client.get(GENERATE_PATH, headers=token).status_code == 200, "fail open: still served"
        health = client.get(HEALTH_PATH)
        assert health.status_code == 200 and health.json()["status"] == "degraded", health.text
        assert health.json()["components"]["redis"]["status"] == "degraded"
        # Degraded, not down: liveness and readiness keep the pod alive and in the Service.
        for probe in ("readinessProbe", "livenessProbe"):
            assert client.get(container[probe]["httpGet"]["path"]).status_code == 200, probe


def wait_for_status(client: httpx.Client, path: str, status: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(path).status_code == status:
            return True
        time.sleep(0.05)
    return False

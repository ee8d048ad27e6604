"""The Helm chart: lint, render every ci/*-values.yaml, and check what a cluster would get.

Every rendered manifest is validated against the Kubernetes 1.35 schemas (strict: an
unknown field fails), and the gateway config inside the rendered ConfigMap passes
`envoy --mode validate`. Values the schema or the chart refuse fail with a message
that names the key.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from deploy.chart_files import CHART, MOUNT_DIR, chart_components, stale_chart_files
from gateway.render import DEFAULT_DESCRIPTOR, DEFAULT_OPENAPI

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / ".tools" / "helm" / "helm" / "helm"
ENVOY = Path(sys.executable).parent / "envoy"
KUBERNETES_VERSION = "1.35.0"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "shop"

Manifest = dict[str, Any]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HELM), *args], check=False, capture_output=True, text=True, timeout=60
    )


def render(*args: str) -> list[Manifest]:
    done = helm("template", RELEASE, str(CHART), *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def refusal(*args: str) -> str:
    """helm template must fail; returns what it said."""
    done = helm("template", RELEASE, str(CHART), *args)
    assert done.returncode != 0, "helm template accepted values it should refuse"
    return done.stderr


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def pod_spec(manifest: Manifest) -> dict[str, Any]:
    spec = manifest["spec"]
    return spec["template"]["spec"] if "template" in spec else spec  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=CI_VALUES, ids=lambda p: p.name.removesuffix("-values.yaml"))
def values_file(request: pytest.FixtureRequest) -> Path:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def rendered(values_file: Path) -> list[Manifest]:
    return render("-f", str(values_file), "--namespace", "commerce")


def test_ci_matrix_covers_minimal_production_and_dev() -> None:
    assert {p.name for p in CI_VALUES} >= {
        "minimal-values.yaml",
        "production-values.yaml",
        "dev-values.yaml",
    }


def test_lint_strict(values_file: Path) -> None:
    done = helm("lint", "--strict", str(CHART), "-f", str(values_file))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_manifest_is_valid_for_kubernetes(rendered: list[Manifest]) -> None:
    for manifest in rendered:
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            kind, name = manifest["kind"], manifest["metadata"]["name"]
            pytest.fail(f"{kind}/{name} is not valid Kubernetes {KUBERNETES_VERSION}: {exc}")


def test_every_service_folder_is_a_chart_component() -> None:
    folders = {p.name for p in (REPO / "services").iterdir() if p.is_dir()}
    folders -= {"__pycache__"}
    missing = folders - chart_components().keys()
    assert not missing, f"services/{sorted(missing)} have no entry in helm/hygoshop values.yaml"


def test_each_component_gets_its_workload_probes_and_locked_down_pods(
    rendered: list[Manifest],
) -> None:
    for name, component in chart_components().items():
        full = f"hygoshop-{name}"
        deployment = find(rendered, "Deployment", full)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/component"] == name
        assert labels["app.kubernetes.io/name"] == "hygoshop"
        spec = pod_spec(deployment)
        assert spec["serviceAccountName"] == full
        find(rendered, "ServiceAccount", full)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
        [container] = spec["containers"]
        assert container["command"] == ["python", "-m", f"hygoshop_{name}"]
        assert container["image"].endswith(f"/{name}:0.1.0")
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": port}, probe
        service = find(rendered, "Service", full)
        assert service["spec"]["clusterIP"] == "None"  # per-pod balancing (STRICT_DNS)
        assert service["spec"]["ports"][0]["port"] == port
        if component["migrate"]:
            job = find(rendered, "Job", f"{full}-migrate")
            assert "install" in job["metadata"]["annotations"]["helm.sh/hook"]
            [migrate] = pod_spec(job)["containers"]
            assert migrate["args"] == ["migrate"]
            env = {e["name"]: e for e in migrate["env"]}
            assert "MIGRATIONS_DATABASE_URL" in env
            assert env["MIGRATIONS_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"]


def test_autoscaling_replaces_fixed_replicas(values_file: Path, rendered: list[Manifest]) -> None:
    autoscaled = values_file.name == "production-values.yaml"
    for name in [*chart_components(), "gateway"]:
        deployment = find(rendered, "Deployment", f"hygoshop-{name}")
        hpas = [m for m in rendered if m["kind"] == "HorizontalPodAutoscaler"]
        targets = {h["spec"]["scaleTargetRef"]["name"] for h in hpas}
        assert (f"hygoshop-{name}" in targets) is autoscaled
        assert ("replicas" not in deployment["spec"]) is autoscaled


def test_secrets_are_referenced_never_rendered(rendered: list[Manifest]) -> None:
    assert not [m for m in rendered if m["kind"] == "Secret"]
    for manifest in rendered:
        if manifest["kind"] not in ("Deployment", "Job", "Pod"):
            continue
        for container in pod_spec(manifest)["containers"]:
            for env in container.get("env", []):
                name = env["name"]
                if any(s in name for s in ("PASSWORD", "SECRET", "API_KEY")):
                    assert "secretKeyRef" in env.get("valueFrom", {}), name
                if name.endswith("_URL") and "@" in env.get("value", ""):
                    # user:$(PASSWORD)@host: Kubernetes splices the secret in at start.
                    assert "$(" in env["value"].split("@")[0], f"{name} holds a literal password"


def test_only_the_gateway_reaches_public_services(rendered: list[Manifest]) -> None:
    for name, component in chart_components().items():
        policy = find(rendered, "NetworkPolicy", f"hygoshop-{name}")
        peers = [
            p["podSelector"]["matchLabels"]
            for rule in policy["spec"]["ingress"]
            for p in rule["from"]
        ]
        allowed = {p["app.kubernetes.io/component"] for p in peers}
        expected = {"health-check"} | ({"gateway"} if component["public"] else set())
        callers = {c for c, settings in chart_components().items() if name in settings["calls"]}
        # A caller's workers call what it calls.
        callers |= {f"{c}-{w}" for c in callers for w in chart_components()[c]["workers"]}
        assert allowed == expected | callers
    gateway = find(rendered, "NetworkPolicy", "hygoshop-gateway")
    upstream = {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for rule in gateway["spec"]["egress"]
        for p in rule.get("to", [])
        if "podSelector" in p and "app.kubernetes.io/component" in p["podSelector"]["matchLabels"]
    }
    assert upstream == {n for n, c in chart_components().items() if c["public"]}


def test_services_reach_only_what_they_use(values_file: Path, rendered: list[Manifest]) -> None:
    ports = {5432: "postgresql", 5672: "rabbitmq", 5671: "rabbitmq", 6379: "redis"}
    values = yaml.safe_load(values_file.read_text())
    uses = {
        name: set((values.get("components", {}).get(name) or {}).get("uses", c["uses"]))
        for name, c in chart_components().items()
    }
    for name in chart_components():
        policy = find(rendered, "NetworkPolicy", f"hygoshop-{name}")
        reached = {
            ports[port["port"]]
            for rule in policy["spec"]["egress"]
            for port in rule["ports"]
            if port["port"] in ports
        }
        assert reached <= uses[name], f"{name} may reach {reached - uses[name]}"
        assert "postgresql" in reached


def test_in_cluster_dependencies_only_for_dev(values_file: Path, rendered: list[Manifest]) -> None:
    deployments = {m["metadata"]["name"] for m in rendered if m["kind"] == "Deployment"}
    in_cluster = {f"hygoshop-{d}" for d in ("postgresql", "rabbitmq", "redis", "s3")}
    if values_file.name == "dev-values.yaml":
        assert in_cluster <= deployments
        hook = find(rendered, "Job", "hygoshop-catalog-migrate")["metadata"]["annotations"]
        assert hook["helm.sh/hook"] == "post-install,post-upgrade"  # the database comes first
    else:
        assert not in_cluster & deployments


def test_no_namespace_is_hard_coded_and_images_are_pinned(rendered: list[Manifest]) -> None:
    for manifest in rendered:
        assert "namespace" not in manifest["metadata"], manifest["metadata"]["name"]
        if manifest["kind"] in ("Deployment", "Job", "Pod"):
            for container in pod_spec(manifest)["containers"]:
                image, _, tag = container["image"].rpartition(":")
                assert image, container["image"]
                assert tag not in ("", "latest"), container["image"]


def test_helm_test_checks_every_component_and_the_gateway(rendered: list[Manifest]) -> None:
    pod = find(rendered, "Pod", "hygoshop-health-check")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [container] = pod["spec"]["containers"]
    assert container["command"][:3] == ["python", "-m", "hygoshop_platform.healthcheck"]
    targets = set(container["args"])
    for name, component in chart_components().items():
        assert f"hygoshop-{name}:{component['grpcPort']}" in targets
    assert "http://hygoshop-gateway:80/healthz" in targets or any(
        t.startswith("http://hygoshop-gateway:") for t in targets
    )


def test_chart_gateway_files_are_up_to_date() -> None:
    assert stale_chart_files() == [], "run `make helm-envoy-config`"


@pytest.fixture
def gateway_files(rendered: list[Manifest], tmp_path: Path) -> tuple[Path, str]:
    """The rendered ConfigMap's files on disk, the config pointing at them."""
    config_map = find(rendered, "ConfigMap", "hygoshop-gateway")
    descriptor = base64.b64decode(config_map["binaryData"]["hygoshop.binpb"])
    assert descriptor == DEFAULT_DESCRIPTOR.read_bytes()
    assert json.loads(config_map["data"]["openapi.json"]) == json.loads(DEFAULT_OPENAPI.read_text())
    (tmp_path / "hygoshop.binpb").write_bytes(descriptor)
    (tmp_path / "openapi.json").write_text(config_map["data"]["openapi.json"])
    text: str = config_map["data"]["envoy.yaml"]
    assert MOUNT_DIR in text
    config = tmp_path / "envoy.yaml"
    config.write_text(text.replace(MOUNT_DIR, str(tmp_path)))
    return config, text


def test_gateway_config_from_the_chart_passes_envoy_validate(
    gateway_files: tuple[Path, str],
) -> None:
    config, _ = gateway_files
    validate = [str(ENVOY), "--mode", "validate", "-c", str(config), "-l", "warning"]
    done = subprocess.run(
        [*validate, "--disable-hot-restart"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_gateway_routes_to_service_names_and_traces_when_configured(
    values_file: Path, gateway_files: tuple[Path, str]
) -> None:
    _, text = gateway_files
    config = yaml.safe_load(text)
    kinds = {c["name"]: c["type"] for c in config["static_resources"]["clusters"]}
    clusters = {
        c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
            "socket_address"
        ]
        for c in config["static_resources"]["clusters"]
    }
    for name, component in chart_components().items():
        if component["public"]:
            address = {"address": f"hygoshop-{name}", "port_value": component["grpcPort"]}
            assert clusters[name] == address
            assert kinds[name] == "STRICT_DNS"  # every pod behind the headless Service
    collector = yaml.safe_load(values_file.read_text()).get("telemetry", {}).get("otlpEndpoint")
    if collector:
        assert clusters["otlp"] == {
            "address": "otel-collector.observability.svc",
            "port_value": 4317,
        }
    else:
        assert "otlp" not in clusters


def test_schema_refuses_unknown_keys_and_secrets_in_values() -> None:
    minimal = str(CHART / "ci" / "minimal-values.yaml")
    said = refusal("-f", minimal, "--set", "components.catalog.replicaz=3")
    assert "replicaz" in said
    said = refusal("-f", minimal, "--set", "postgresql.password=hunter2")
    assert "password" in said
    said = refusal("-f", minimal, "--set", "image.tag=latest")
    assert "/image/tag" in said


def test_an_install_without_a_database_is_refused() -> None:
    assert "/postgresql/host" in refusal()


def test_values_that_disagree_with_the_gateway_config_are_refused() -> None:
    minimal = str(CHART / "ci" / "minimal-values.yaml")
    said = refusal("-f", minimal, "--set", "components.catalog.grpcPort=50099")
    assert "make helm-envoy-config" in said
    said = refusal("-f", minimal, "--set", "components.search.public=true")
    assert "search" in said
    assert "make helm-envoy-config" in said


def test_a_new_worker_is_one_values_entry() -> None:
    minimal = str(CHART / "ci" / "minimal-values.yaml")
    rendered = render(
        "-f",
        minimal,
        "--set",
        "components.import-worker.uses={postgresql}",
        "--set",
        "components.import-worker.calls={catalog}",
    )
    for kind in ("Deployment", "Service", "ServiceAccount", "NetworkPolicy", "PodDisruptionBudget"):
        kubernetes_validate.validate(
            find(rendered, kind, "hygoshop-import-worker"), KUBERNETES_VERSION, strict=True
        )
    catalog = find(rendered, "NetworkPolicy", "hygoshop-catalog")
    callers = {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in catalog["spec"]["ingress"][0]["from"]
    }
    assert "import-worker" in callers


def test_a_components_workers_run_its_image_with_a_health_probe_and_no_service(
    rendered: list[Manifest],
) -> None:
    components = chart_components()
    workers = [(n, w, spec) for n, c in components.items() for w, spec in c["workers"].items()]
    assert ("workflows", "worker") in [(n, w) for n, w, _ in workers]
    for name, worker, spec in workers:
        full = f"hygoshop-{name}-{worker}"
        deployment = find(rendered, "Deployment", full)
        pod = pod_spec(deployment)
        assert pod["serviceAccountName"] == f"hygoshop-{name}"
        [container] = pod["containers"]
        assert container["command"] == ["python", "-m", f"hygoshop_{name}"]
        assert container["args"] == spec["args"]
        assert container["image"].endswith(f"/{name}:0.1.0")
        assert "ports" not in container  # nothing calls it: no declared port, no Service
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        # The server's environment (database, bus, callees); its gRPC port serves only the
        # health the kubelet probes.
        [server] = pod_spec(find(rendered, "Deployment", f"hygoshop-{name}"))["containers"]
        assert {e["name"] for e in container["env"]} == {e["name"] for e in server["env"]}
        port = next(int(e["value"]) for e in container["env"] if e["name"] == "GRPC_PORT")
        assert container["livenessProbe"]["grpc"] == {"port": port}
        assert container["startupProbe"]["grpc"] == {"port": port}
        assert "readinessProbe" not in container
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == f"{name}-{worker}"
        # The component's Service must not send calls to worker pods.
        selector = find(rendered, "Service", f"hygoshop-{name}")["spec"]["selector"]
        assert selector["app.kubernetes.io/component"] == name
        policy = find(rendered, "NetworkPolicy", full)
        assert policy["spec"]["ingress"] == []
        server_policy = find(rendered, "NetworkPolicy", f"hygoshop-{name}")
        assert policy["spec"]["egress"] == server_policy["spec"]["egress"]
        assert not [m for m in rendered if m["kind"] == "Service" and m["metadata"]["name"] == full]


def test_a_worker_named_like_a_component_is_refused() -> None:
    minimal = str(CHART / "ci" / "minimal-values.yaml")
    said = refusal(
        "-f",
        minimal,
        "--set",
        "components.workflows-worker.uses={postgresql}",
    )
    assert 'workers.worker has the name of the component "workflows-worker"' in said


def test_the_bus_is_rabbitmq_when_configured_else_postgresql(
    values_file: Path, rendered: list[Manifest]
) -> None:
    """Every component that needs the bus gets a BUS_URL, its migration Job too (which
    then migrates the `bus` schema): RabbitMQ's when one is configured, else PostgreSQL's
    with the bus's own application role."""
    values = yaml.safe_load(values_file.read_text())
    rabbitmq = values.get("rabbitmq") or {}
    with_rabbitmq = bool(rabbitmq.get("host") or (rabbitmq.get("inCluster") or {}).get("enabled"))
    for name, component in chart_components().items():
        uses = (values.get("components", {}).get(name) or {}).get("uses", component["uses"])
        containers = pod_spec(find(rendered, "Deployment", f"hygoshop-{name}"))["containers"]
        if component["migrate"]:
            containers += pod_spec(find(rendered, "Job", f"hygoshop-{name}-migrate"))["containers"]
        for container in containers:
            env = {e["name"]: e.get("value") for e in container["env"]}
            if "rabbitmq" not in uses:
                assert "BUS_URL" not in env, name
            elif with_rabbitmq:
                assert env["BUS_URL"].startswith(("amqp://", "amqps://")), name
            else:
                assert env["BUS_URL"].startswith(
                    "postgresql://hygoshop_bus_app:$(DATABASE_APP_PASSWORD)@"
                ), name
                names = list(env)
                assert names.index("DATABASE_APP_PASSWORD") < names.index("BUS_URL")


def test_browser_origins_reach_the_catalog_and_bad_ones_are_refused() -> None:
    production = str(CHART / "ci" / "production-values.yaml")
    catalog = pod_spec(find(render("-f", production), "Deployment", "hygoshop-catalog"))
    env = {e["name"]: e.get("value") for e in catalog["containers"][0]["env"]}
    assert env["S3_CORS_ORIGINS"] == "https://admin.shop.example,https://shop.example"
    minimal = str(CHART / "ci" / "minimal-values.yaml")
    said = refusal("-f", minimal, "--set", "s3.corsOrigins={https://shop.example/admin}")
    assert "corsOrigins" in said

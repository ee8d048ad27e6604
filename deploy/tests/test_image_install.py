"""The service image's install steps, without a Docker engine: the same `make wheels` and
the same deploy/install-service.sh the Dockerfile runs, into a scratch virtualenv.

Each service installed that way must run from its wheels alone (not from this tree):
`--help`, `migrate` against a fresh database, and `serve` until gRPC health says
SERVING, checked by the same health-check command the chart's `helm test` runs.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy.chart_files import CHART, MOUNT_DIR, chart_components
from deploy.services import SERVICES, ServiceEntry, StackOptions
from hygoshop_platform.infra import ManagedProcess, free_port
from hygoshop_platform.migrations import app_url
from hygoshop_platform.testing.postgres import MakeDatabase
from tests.support import APP_PASSWORD

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
UV = REPO / ".tools" / "uv" / "bin" / "uv"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
COMPOSE = REPO / "deploy" / "compose.yaml"


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a process in the image: nothing that points into this tree."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    return {**env, "PYTHONNOUSERSITE": "1", **extra}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # `-o`: the environment is `make test`'s job (it ran setup first); a test never re-syncs it.
    done = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "wheels", f"DIST={out}"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _install(service: str, dist: Path, venv: Path) -> Path:
    # UV_OFFLINE: the wheels come from uv's cache, filled by `make setup` from the same lock.
    done = subprocess.run(
        [str(REPO / "deploy" / "install-service.sh"), service, str(dist), str(venv)],
        check=False,
        env=_clean_env(UV=str(UV), PYTHON=sys.executable, UV_OFFLINE="1"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return venv / "bin" / "python"


def _run(python: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), *args],
        check=False,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service_runs_from_its_installed_wheels(
    service: ServiceEntry, dist: Path, tmp_path: Path, make_database: MakeDatabase
) -> None:
    python = _install(service.name, dist, tmp_path / "venv")

    # The code is the wheels' (not this tree's), and traces can be exported: the OTLP
    # exporter imports with its real protos (xds-protos ships stale ones).
    where = _run(
        python,
        "-c",
        f"import {service.module} as s, hygoshop_platform as p; print(s.__file__, p.__file__)\n"
        "from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter",
    )
    assert where.returncode == 0, where.stderr
    assert all(path.startswith(str(tmp_path / "venv")) for path in where.stdout.split())
    usage = _run(python, "-m", service.module, "--help")
    assert usage.returncode == 0, usage.stderr
    assert "migrate" in usage.stdout

    # Its own settings, as the stack and the chart give them (callees need not be up).
    options = StackOptions(platform_admin_key="hyg_admin_" + secrets.token_urlsafe(32))
    settings = dict(service.env(options))
    for callee in service.calls:
        settings[f"{callee.upper()}_GRPC_TARGET"] = f"127.0.0.1:{free_port()}"
    database = make_database(f"image_{service.name}")
    if service.schema is not None:
        migrated = _run(
            python,
            "-m",
            service.module,
            "migrate",
            MIGRATIONS_DATABASE_URL=database,
            DATABASE_APP_PASSWORD=APP_PASSWORD,
            **settings,
        )
        assert migrated.returncode == 0, migrated.stderr

    port = free_port()
    env = {"GRPC_HOST": "127.0.0.1", "GRPC_PORT": str(port), **settings}
    if service.schema is not None:
        env["DATABASE_URL"] = app_url(database, service.schema, APP_PASSWORD)
    server = ManagedProcess(
        f"image-{service.name}",
        [str(python), "-m", service.module, "serve"],
        env={**env, "PYTHONPATH": "", "PYTHONNOUSERSITE": "1"},
        log_path=tmp_path / "serve.log",
    )
    with server:
        server.wait_for_grpc_health(f"127.0.0.1:{port}", timeout=60)
        healthy = _run(python, "-m", "hygoshop_platform.healthcheck", f"127.0.0.1:{port}")
        assert healthy.returncode == 0, healthy.stderr
        assert f"ok    127.0.0.1:{port}" in healthy.stdout
    down = _run(
        python, "-m", "hygoshop_platform.healthcheck", "--timeout", "1", f"127.0.0.1:{port}"
    )
    assert down.returncode == 1
    assert "UNAVAILABLE" in down.stderr


def test_dockerfile_installs_with_the_tested_steps() -> None:
    text = DOCKERFILE.read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert "COPY dist/ /dist/" in lines  # the output of `make wheels`
    assert any(line.startswith("RUN ") and "install-service" in line for line in lines)
    assert "COPY deploy/install-service.sh /usr/local/bin/install-service" in lines
    base = next(line.split("=", 1)[1] for line in lines if line.startswith("ARG PYTHON_IMAGE="))
    version = base.split(":")[1].split("-")[0]
    assert version.count(".") == 2, f"base image {base} is not pinned to a patch release"
    assert f"python:{sys.version_info.major}.{sys.version_info.minor}." in base
    user = next(line for line in lines if line.startswith("USER "))
    assert user.split()[1].split(":")[0] not in ("0", "root")
    # The uv that installs in the image is the one the tests install with.
    makefile = (REPO / "Makefile").read_text()
    pinned = makefile.split("uv==", 1)[1].split()[0]
    assert f"uv=={pinned}" in text


def test_compose_runs_every_component_behind_the_charts_gateway_config() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    for dependency in ("postgresql", "rabbitmq", "redis", "s3"):
        assert f"hygoshop-{dependency}" in services
    for name, component in chart_components().items():
        entry = services[f"hygoshop-{name}"]
        assert entry["command"] == ["serve"]
        assert "hygoshop_platform.healthcheck" in entry["healthcheck"]["test"]
        builder = services[f"hygoshop-{name}-migrate"] if component["migrate"] else entry
        assert builder["build"]["dockerfile"] == "deploy/Dockerfile"
        assert builder["build"]["args"] == {"SERVICE": name}
        assert builder["image"] == entry["image"]
        for worker, spec in component["workers"].items():
            runner = services[f"hygoshop-{name}-{worker}"]
            assert runner["command"] == spec["args"]
            assert (runner["image"], runner["environment"]) == (
                entry["image"],
                entry["environment"],
            )
    gateway = services["hygoshop-gateway"]
    assert f"../{CHART.relative_to(REPO)}/files:{MOUNT_DIR}:ro" in gateway["volumes"]
    assert f"{MOUNT_DIR}/envoy.yaml" in gateway["command"]
    assert set(gateway["depends_on"]) == {
        f"hygoshop-{n}" for n, c in chart_components().items() if c["public"]
    }

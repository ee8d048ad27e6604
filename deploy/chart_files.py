"""The Helm chart's build-time files: the gateway's Envoy config and what it reads.

`make helm-envoy-config` (`python -m deploy.chart_files`) writes into helm/hygoshop/files/:

- envoy.yaml: rendered by gateway/render.py, the renderer the local launcher uses, from
  the chart's values: upstream hosts are the services' Service names (hygoshop-<name>),
  ports their `grpcPort`, files under the ConfigMap mount.
- envoy-otlp.yaml: the same with tracing on; the chart puts the collector's address
  (telemetry.otlpEndpoint) in place of OTLP_PLACEHOLDER.
- hygoshop.binpb and openapi.json: copies of gateway/generated/.

deploy/compose.yaml mounts the same files: its services carry the same names.
`--check` exits 1 when the files are stale (a proto, the template or the values changed).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from deploy.services import AUTHZ_SERVICE
from gateway.render import DEFAULT_DESCRIPTOR, DEFAULT_OPENAPI, render_envoy_config

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "hygoshop"
FILES = CHART / "files"
MOUNT_DIR = "/etc/hygoshop/gateway"
"""Where the gateway pod mounts its ConfigMap (templates/gateway.yaml)."""
OTLP_PLACEHOLDER = ("otlp-collector.invalid", 4317)
"""Replaced by the chart (templates/_gateway.tpl); `.invalid` can never resolve."""
ADMIN_PORT = 9901
"""Envoy's admin interface, on the pod's loopback only (kubectl port-forward reaches it)."""


def chart_components(chart: Path = CHART) -> dict[str, dict[str, Any]]:
    """Each component's settings as the chart computes them: componentDefaults with the
    component's keys over them, maps merged one level deep (templates/_helpers.tpl)."""
    values = yaml.safe_load((chart / "values.yaml").read_text())
    defaults: dict[str, Any] = values["componentDefaults"]
    components: dict[str, dict[str, Any]] = {}
    for name, own in (values.get("components") or {}).items():
        merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in defaults.items()}
        for key, value in (own or {}).items():
            if isinstance(merged.get(key), dict) and isinstance(value, dict):
                merged[key].update(value)
            else:
                merged[key] = value
        components[name] = merged
    return components


def _render(chart: Path, otlp: tuple[str, int] | None) -> str:
    values = yaml.safe_load((chart / "values.yaml").read_text())
    chart_name = yaml.safe_load((chart / "Chart.yaml").read_text())["name"]
    upstreams = {
        name: [(f"{chart_name}-{name}", int(c["grpcPort"]))]
        for name, c in chart_components(chart).items()
        if c["public"]
    }
    if AUTHZ_SERVICE not in upstreams:
        raise ValueError(f"the chart has no public component {AUTHZ_SERVICE!r} to check API keys")
    return render_envoy_config(
        listen_port=int(values["gateway"]["containerPort"]),
        admin_port=ADMIN_PORT,
        descriptor_path=DEFAULT_DESCRIPTOR,
        openapi_path=DEFAULT_OPENAPI,
        upstreams=upstreams,
        authz=upstreams[AUTHZ_SERVICE][0],
        otlp=otlp,
        # In a cluster the access log goes to the log pipeline, with trace and tenant ids.
        access_log=True,
        files_dir=MOUNT_DIR,
    )


def write_chart_files(out: Path = FILES, chart: Path = CHART) -> list[Path]:
    """Write the four files into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "envoy.yaml": _render(chart, None),
        "envoy-otlp.yaml": _render(chart, OTLP_PLACEHOLDER),
    }
    written = []
    for name, text in texts.items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    for source in (DEFAULT_DESCRIPTOR, DEFAULT_OPENAPI):
        shutil.copyfile(source, out / source.name)
        written.append(out / source.name)
    return written


def stale_chart_files(chart: Path = CHART) -> list[str]:
    """Names of the chart's files that differ from a fresh render (empty: up to date)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = write_chart_files(Path(tmp), chart)
        return [
            p.name
            for p in fresh
            if not (chart / "files" / p.name).is_file()
            or (chart / "files" / p.name).read_bytes() != p.read_bytes()
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.chart_files", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the files are stale")
    args = parser.parse_args(argv)
    if args.check:
        if stale := stale_chart_files():
            print(f"stale in {FILES}: {', '.join(stale)}; run `make helm-envoy-config`")
            return 1
        print("chart files are up to date")
        return 0
    for path in write_chart_files():
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

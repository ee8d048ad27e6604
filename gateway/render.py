"""Render the gateway's Envoy bootstrap config from the descriptor set and the upstreams.

Used by the local launcher, the tests and the Helm chart's build step:

    python -m gateway.render --listen-port 8080 --authz 127.0.0.1:50050 \\
        --upstream tenancy=127.0.0.1:50050 --upstream catalog=127.0.0.1:50051 -o envoy.yaml
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

from gateway.descriptors import annotated_methods, load_descriptor_set
from hygoshop_platform.telemetry import TENANT_ATTRIBUTE
from hygoshop_platform.tenancy import TENANT_HEADER

HERE = Path(__file__).resolve().parent
TEMPLATE = "envoy.yaml.j2"
DEFAULT_DESCRIPTOR = HERE / "generated" / "hygoshop.binpb"
DEFAULT_OPENAPI = HERE / "generated" / "openapi.json"

IDENTITY_HEADER_PREFIX = "x-hygoshop-"
"""Headers only ext_authz may set (x-hygoshop-tenant-id, -scopes, -key-id): stripped from
every incoming request before anything else runs."""
AUTHZ_ERROR_STATUS = 503
RESERVED_CLUSTERS = frozenset({"authz", "otlp"})
# HTTP status of Envoy's own replies -> google.rpc.Code in their JSON body.
LOCAL_REPLY_CODES = (
    (400, 3),  # INVALID_ARGUMENT: malformed JSON, unknown query parameter
    (401, 16),  # UNAUTHENTICATED
    (403, 7),  # PERMISSION_DENIED
    (404, 5),  # NOT_FOUND: no such route or method
    (408, 4),  # DEADLINE_EXCEEDED
    (413, 3),  # INVALID_ARGUMENT: body over the size limit
    (429, 8),  # RESOURCE_EXHAUSTED
    (431, 3),  # INVALID_ARGUMENT: headers too large
    (500, 13),  # INTERNAL
    (501, 12),  # UNIMPLEMENTED
    (502, 14),  # UNAVAILABLE
    (503, 14),  # UNAVAILABLE: no healthy upstream, connection refused
    (504, 4),  # DEADLINE_EXCEEDED
)
_PACKAGE = re.compile(r"^hygoshop\.(?P<context>[a-z][a-z0-9_.]*)\.v\d+(?:(?:alpha|beta)\d*)?$")

Endpoint = tuple[str, int]


@dataclass(frozen=True)
class _Cluster:
    name: str
    endpoints: tuple[Endpoint, ...]

    @property
    def discovery(self) -> str:
        """STATIC for IP literals; STRICT_DNS resolves names (e.g. a headless Service)."""
        try:
            for host, _ in self.endpoints:
                ipaddress.ip_address(host)
        except ValueError:
            return "STRICT_DNS"
        return "STATIC"


@dataclass(frozen=True)
class _RpcRoute:
    path: str
    cluster: str


def _check_port(name: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ValueError(f"{name} must be a TCP port in 1-65535, got {port}")


def _cluster(name: str, endpoints: list[Endpoint]) -> _Cluster:
    if not endpoints:
        raise ValueError(f"upstream {name!r} has no endpoints")
    for host, port in endpoints:
        if not host:
            raise ValueError(f"upstream {name!r} has an empty host")
        _check_port(f"port of upstream {name!r}", port)
    return _Cluster(name, tuple(endpoints))


def render_envoy_config(
    *,
    listen_host: str = "0.0.0.0",  # noqa: S104 - the public listener
    listen_port: int,
    admin_port: int | None,
    descriptor_path: Path,
    openapi_path: Path,
    upstreams: dict[str, list[tuple[str, int]]],
    authz: tuple[str, int],
    otlp: tuple[str, int] | None = None,
    authz_timeout_ms: int = 500,
    max_request_bytes: int = 1 << 20,
    max_response_bytes: int = 8 << 20,
    access_log: bool = False,
    files_dir: str | None = None,
    trace_flush_ms: int = 1000,
) -> str:
    """The Envoy v3 bootstrap YAML of the gateway.

    Every service of a `hygoshop.<context>.vN` package with at least one
    `google.api.http` rule is transcoded and routed to the cluster `upstreams[context]`
    (several endpoints are balanced by least request). `authz` is the ext_authz gRPC
    server (tenancy); `otlp` an OTLP/gRPC collector for traces. The admin interface, when
    `admin_port` is given, listens on 127.0.0.1 only. Raises ValueError when a context
    has no upstream or an argument is out of range.

    The config names the descriptor set and the API document by absolute path: where they
    are now, or under `files_dir` when Envoy will read them elsewhere (the Helm chart's
    ConfigMap mount); the local files are read either way. With `otlp`, the gateway's
    spans are exported every `trace_flush_ms`.
    """
    _check_port("listen_port", listen_port)
    if admin_port is not None:
        _check_port("admin_port", admin_port)
    if min(authz_timeout_ms, max_request_bytes, max_response_bytes, trace_flush_ms) <= 0:
        raise ValueError("timeouts and size limits must be positive")
    descriptor_path = descriptor_path.resolve()
    openapi_path = openapi_path.resolve()
    for path in (descriptor_path, openapi_path):
        if not path.is_file():
            raise ValueError(f"{path} does not exist; run `make protos`")

    routes: list[_RpcRoute] = []
    services: dict[str, str] = {}  # service -> context
    for am in annotated_methods(load_descriptor_set(descriptor_path)):
        match = _PACKAGE.match(am.package)
        if match is None:
            raise ValueError(
                f"{am.service} has HTTP rules but its package is not hygoshop.<ctx>.vN"
            )
        context = match["context"]
        services[am.service] = context
        routes.append(_RpcRoute(am.grpc_path, context))
    needed = sorted(set(services.values()))
    if missing := [c for c in needed if c not in upstreams]:
        serving = {c: sorted(s for s, sc in services.items() if sc == c) for c in missing}
        raise ValueError(f"no upstream for context(s) {missing}: they serve {serving}")
    if clash := RESERVED_CLUSTERS.intersection(needed):
        raise ValueError(f"context name(s) {sorted(clash)} clash with the gateway's own clusters")

    clusters = [_cluster(c, upstreams[c]) for c in needed]
    clusters.append(_cluster("authz", [authz]))
    if otlp is not None:
        clusters.append(_cluster("otlp", [otlp]))
    openapi_size = openapi_path.stat().st_size
    if files_dir is not None:
        if not files_dir.startswith("/"):
            raise ValueError(f"files_dir must be an absolute path, got {files_dir!r}")
        descriptor_path = Path(files_dir) / descriptor_path.name
        openapi_path = Path(files_dir) / openapi_path.name
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - YAML, not HTML; strings go through tojson
    )
    text = env.get_template(TEMPLATE).render(
        listen_host=listen_host,
        listen_port=listen_port,
        admin_port=admin_port,
        descriptor_path=str(descriptor_path),
        services=sorted(services),
        rpc_routes=sorted(routes, key=lambda r: r.path),
        clusters=clusters,
        otlp=otlp is not None,
        trace_flush_ms=trace_flush_ms,
        tenant_tag=TENANT_ATTRIBUTE,
        tenant_header=TENANT_HEADER,
        access_log=access_log,
        identity_header_prefix=IDENTITY_HEADER_PREFIX,
        authz_timeout=f"{authz_timeout_ms / 1000:.3f}s",
        authz_error_status=AUTHZ_ERROR_STATUS,
        status_codes=LOCAL_REPLY_CODES,
        route_timeout="15s",
        max_request_bytes=max_request_bytes,
        max_response_bytes=max_response_bytes,
        max_connections=50_000,
        # The document is loaded at start; leave room for it to grow before a restart.
        max_direct_response_bytes=max(4 * openapi_size, 1 << 20),
        direct_routes=[
            {"path": "/healthz", "body_key": "inline_string", "body": '{"status":"ok"}'},
            {"path": "/openapi.json", "body_key": "filename", "body": str(openapi_path)},
        ],
    )
    yaml.safe_load(text)  # a template slip fails here, not inside Envoy
    return text


def _endpoint(text: str) -> Endpoint:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _upstream(text: str) -> tuple[str, Endpoint]:
    context, sep, endpoint = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected CONTEXT=HOST:PORT, got {text!r}")
    return context, _endpoint(endpoint)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.render", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("-o", "--out", type=Path, required=True, help="YAML file to write")
    parser.add_argument("--listen-host", default="0.0.0.0")  # noqa: S104 - a gateway listens
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--admin-port", type=int, help="admin on 127.0.0.1 (none if omitted)")
    parser.add_argument("--descriptor", type=Path, default=DEFAULT_DESCRIPTOR)
    parser.add_argument("--openapi", type=Path, default=DEFAULT_OPENAPI)
    parser.add_argument(
        "--upstream",
        type=_upstream,
        action="append",
        default=[],
        metavar="CONTEXT=HOST:PORT",
        help="a gRPC server of a context; repeat for several processes or contexts",
    )
    parser.add_argument("--authz", type=_endpoint, required=True, metavar="HOST:PORT")
    parser.add_argument("--otlp", type=_endpoint, metavar="HOST:PORT")
    parser.add_argument("--authz-timeout-ms", type=int, default=500)
    parser.add_argument("--max-request-bytes", type=int, default=1 << 20)
    parser.add_argument("--access-log", action="store_true", help="JSON access log on stdout")
    parser.add_argument(
        "--files-dir", help="where Envoy will find the descriptor set and openapi.json"
    )
    args = parser.parse_args(argv)
    upstreams: dict[str, list[Endpoint]] = {}
    for context, endpoint in args.upstream:
        upstreams.setdefault(context, []).append(endpoint)
    try:
        text = render_envoy_config(
            listen_host=args.listen_host,
            listen_port=args.listen_port,
            admin_port=args.admin_port,
            descriptor_path=args.descriptor,
            openapi_path=args.openapi,
            upstreams=upstreams,
            authz=args.authz,
            otlp=args.otlp,
            authz_timeout_ms=args.authz_timeout_ms,
            max_request_bytes=args.max_request_bytes,
            access_log=args.access_log,
            files_dir=args.files_dir,
        )
    except ValueError as exc:
        parser.error(str(exc))
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

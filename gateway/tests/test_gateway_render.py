"""The rendered Envoy config: accepted by `envoy --mode validate`, and shaped as promised."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.descriptors import annotated_methods, load_descriptor_set
from gateway.render import DEFAULT_DESCRIPTOR, DEFAULT_OPENAPI, main, render_envoy_config

ENVOY = Path(sys.executable).parent / "envoy"
UPSTREAMS = {
    "tenancy": [("127.0.0.1", 50050)],
    "catalog": [("catalog-0.catalog", 50051), ("catalog-1.catalog", 50051)],
    "router": [("127.0.0.1", 50052)],
    "workflows": [("127.0.0.1", 50053)],
}


def _render(**overrides: Any) -> str:
    args: dict[str, Any] = {
        "listen_port": 8080,
        "admin_port": 9901,
        "descriptor_path": DEFAULT_DESCRIPTOR,
        "openapi_path": DEFAULT_OPENAPI,
        "upstreams": UPSTREAMS,
        "authz": ("127.0.0.1", 50050),
        "otlp": ("127.0.0.1", 4317),
        "authz_timeout_ms": 250,
    }
    return render_envoy_config(**(args | overrides))


def _envoy_validate(text: str, tmp_path: Path) -> None:
    config = tmp_path / "envoy.yaml"
    config.write_text(text)
    result = subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deprecated" not in (result.stdout + result.stderr).lower()


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    hcm: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm


@pytest.mark.parametrize(
    "overrides",
    [{}, {"admin_port": None, "otlp": None, "access_log": True, "listen_host": "::"}],
    ids=["full", "minimal"],
)
def test_envoy_accepts_the_rendered_config(tmp_path: Path, overrides: dict[str, Any]) -> None:
    _envoy_validate(_render(**overrides), tmp_path)


def test_filters_run_ext_authz_then_body_limit_then_status_mapping_then_transcoder() -> None:
    hcm = _hcm(yaml.safe_load(_render()))
    filters = [f["name"] for f in hcm["http_filters"]]
    # The body is buffered (and limited) only once the caller is authenticated. The Lua
    # filter sits before the transcoder so that, on the way back, it sees the transcoded
    # JSON (response filters run in reverse order).
    assert filters == [
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.buffer",
        "envoy.filters.http.lua",
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.router",
    ]
    assert hcm["http_filters"][1]["typed_config"]["max_request_bytes"] == 1 << 20
    authz = hcm["http_filters"][0]["typed_config"]
    assert authz["failure_mode_allow"] is False
    assert authz["status_on_error"] == {"code": 503}
    assert authz["grpc_service"] == {"envoy_grpc": {"cluster_name": "authz"}, "timeout": "0.250s"}
    assert "with_request_body" not in authz
    transcoder = hcm["http_filters"][3]["typed_config"]
    assert transcoder["services"] == [
        "hygoshop.catalog.v1.CatalogService",
        "hygoshop.router.v1.RouterService",
        "hygoshop.tenancy.v1.TenantService",
        "hygoshop.workflows.v1.WorkflowService",
    ]
    assert transcoder["request_validation_options"] == {
        "reject_unknown_method": True,
        "reject_unknown_query_parameters": True,
    }
    assert transcoder["proto_descriptor"] == str(DEFAULT_DESCRIPTOR.resolve())


def test_client_identity_headers_are_stripped_before_any_filter() -> None:
    hcm = _hcm(yaml.safe_load(_render()))
    (early,) = hcm["early_header_mutation_extensions"]
    (mutation,) = early["typed_config"]["mutations"]
    assert mutation["remove_on_match"]["key_matcher"] == {
        "prefix": "x-hygoshop-",
        "ignore_case": True,
    }


def test_every_annotated_rpc_routes_to_its_context_and_nothing_else_does() -> None:
    hcm = _hcm(yaml.safe_load(_render()))
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    to_clusters = {r["match"]["path"]: r["route"]["cluster"] for r in routes if "route" in r}
    methods = annotated_methods(load_descriptor_set(DEFAULT_DESCRIPTOR))
    assert to_clusters == {m.grpc_path: m.package.split(".")[1] for m in methods}
    # A catch-all last: ext_authz skips requests that match no route at all.
    assert routes[-1]["match"] == {"prefix": "/"}
    assert routes[-1]["direct_response"]["status"] == 404
    direct = {r["match"]["path"]: r for r in routes[:2]}
    assert set(direct) == {"/healthz", "/openapi.json"}
    for route in direct.values():
        per_filter = route["typed_per_filter_config"]
        assert per_filter["envoy.filters.http.ext_authz"]["disabled"] is True
        assert per_filter["envoy.filters.http.grpc_json_transcoder"]["disabled"] is True


def test_clusters_speak_http2_and_resolve_names_when_needed() -> None:
    config = yaml.safe_load(_render())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert set(clusters) == {"catalog", "router", "tenancy", "workflows", "authz", "otlp"}
    assert clusters["catalog"]["type"] == "STRICT_DNS"
    assert clusters["tenancy"]["type"] == "STATIC"
    endpoints = clusters["catalog"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert len(endpoints) == 2
    for cluster in clusters.values():
        options = cluster["typed_extension_protocol_options"]
        http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        assert "http2_protocol_options" in http["explicit_http_config"]
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_missing_upstream_names_the_context_and_its_services() -> None:
    with pytest.raises(ValueError, match=r"catalog.*CatalogService"):
        _render(upstreams={"tenancy": [("127.0.0.1", 1)]})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"upstreams": {**UPSTREAMS, "catalog": []}}, "no endpoints"),
        ({"listen_port": 0}, "listen_port"),
        ({"authz": ("127.0.0.1", 70000)}, "authz"),
        ({"authz_timeout_ms": 0}, "positive"),
        ({"openapi_path": Path("/nonexistent.json")}, "make protos"),
    ],
)
def test_bad_arguments_fail_clearly(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _render(**overrides)


def test_cli_writes_the_same_config(tmp_path: Path) -> None:
    out = tmp_path / "envoy.yaml"
    main(
        [
            *("-o", str(out), "--listen-port", "8080", "--admin-port", "9901"),
            *("--authz", "127.0.0.1:50050", "--otlp", "127.0.0.1:4317"),
            *("--authz-timeout-ms", "250", "--upstream", "tenancy=127.0.0.1:50050"),
            *("--upstream", "catalog=catalog-0.catalog:50051"),
            *("--upstream", "catalog=catalog-1.catalog:50051"),
            *("--upstream", "router=127.0.0.1:50052"),
            *("--upstream", "workflows=127.0.0.1:50053"),
        ]
    )
    assert out.read_text() == _render()


def test_cli_reports_a_missing_upstream(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["-o", "/dev/null", "--listen-port", "8080", "--authz", "127.0.0.1:1"])
    assert exited.value.code == 2
    assert "no upstream" in capsys.readouterr().err

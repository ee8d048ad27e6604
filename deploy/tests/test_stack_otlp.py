"""Where the local stack's Envoy sends its spans: the OTLP endpoint the services use."""

from __future__ import annotations

import pytest

from deploy.stack import otlp_target


@pytest.mark.parametrize(
    ("endpoint", "target"),
    [
        ("http://127.0.0.1:4317", ("127.0.0.1", 4317)),
        ("http://collector.observability.svc:14317", ("collector.observability.svc", 14317)),
        ("collector:4317", ("collector", 4317)),
        ("http://collector", ("collector", 4317)),
        ("http://[::1]:4317", ("::1", 4317)),
    ],
)
def test_envoy_exports_where_the_services_do(endpoint: str, target: tuple[str, int]) -> None:
    assert otlp_target(endpoint) == target


def test_an_endpoint_without_a_host_is_refused() -> None:
    with pytest.raises(ValueError, match="no host"):
        otlp_target("http://:4317")

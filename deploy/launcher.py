"""`make run`: the whole platform on this machine, with embedded servers where none is configured.

PostgreSQL: DATABASE_URL when set, else an embedded server with its data in .run/postgres.
Object storage: S3_ENDPOINT_URL (S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, S3_BUCKET,
S3_PUBLIC_ENDPOINT_URL) when set, else SeaweedFS with its data in .run/seaweedfs.
Message bus: BUS_URL (or AMQP_URL) when set, e.g. RabbitMQ, else the PostgreSQL
transport on the launcher's database (the `bus` schema).
Redis: REDIS_URL when set, else the auth cache stays in-process. Then migrations, the
services, Envoy; a demo tenant is seeded once and its key is printed and written to
.run/env. Ctrl-C stops everything; the next `make run` reuses the data and the keys.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shlex
import signal
from pathlib import Path
from typing import Any

import httpx

from deploy.services import StackOptions
from deploy.stack import Stack, start_stack
from hygoshop_platform.blobs import BlobSettings, ensure_bucket
from hygoshop_platform.infra import create_database, find_or_start_postgres
from hygoshop_platform.infra.s3 import S3Handle, find_or_start_s3
from hygoshop_platform.telemetry import configure_logging

log = logging.getLogger("hygoshop.launcher")
REPO = Path(__file__).resolve().parent.parent
DATABASE = "hygoshop"


def _load_state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _save_state(path: Path, state: dict[str, Any]) -> None:
    path.write_text(json.dumps(state, indent=2))
    path.chmod(0o600)


def _seed_demo(stack: Stack, state: dict[str, Any]) -> None:
    """Create the demo tenant and key once; re-create them if the data was reset."""
    admin = {"Authorization": f"Bearer {state['admin_key']}"}
    with httpx.Client(base_url=stack.gateway_url, timeout=10.0) as http:
        if "demo_key" in state:
            probe = http.get(
                "/v1/listings",
                params={"pageSize": 1},
                headers={"Authorization": f"Bearer {state['demo_key']}"},
            )
            if probe.status_code == 200:
                return
        tenant = http.post(
            "/v1/tenants", json={"displayName": "Demo Shop", "tier": "TIER_GROWTH"}, headers=admin
        )
        tenant.raise_for_status()
        tenant_id = tenant.json()["tenantId"]
        key = http.post(
            f"/v1/tenants/{tenant_id}/apiKeys",
            json={"displayName": "demo", "scopes": ["catalog:read", "catalog:write", "admin"]},
            headers=admin,
        )
        key.raise_for_status()
        state.update(demo_tenant_id=tenant_id, demo_key=key.json()["secret"])


def _announce(stack: Stack, state: dict[str, Any], env_file: Path) -> None:
    env_file.write_text(
        f"HYGOSHOP_GATEWAY_URL={shlex.quote(stack.gateway_url)}\n"
        f"HYGOSHOP_DEMO_API_KEY={shlex.quote(state['demo_key'])}\n"
        f"HYGOSHOP_ADMIN_API_KEY={shlex.quote(state['admin_key'])}\n"
        f"HYGOSHOP_DEMO_TENANT_ID={shlex.quote(state['demo_tenant_id'])}\n"
    )
    env_file.chmod(0o600)
    print(
        f"""
Hygoshop is running.
  gateway      {stack.gateway_url}   (OpenAPI: {stack.gateway_url}/openapi.json)
  demo tenant  {state["demo_tenant_id"]}
  demo API key {state["demo_key"]}
  admin key    in {env_file}

Try it:
  . {env_file}
  curl -s -H "Authorization: Bearer $HYGOSHOP_DEMO_API_KEY" -H 'content-type: application/json' \\
    -d '{{"title": "Linen shirt", "variants": [{{"sku": "SHIRT-M", "price": {{"currencyCode": "USD", "units": "49"}}}}]}}' \\
    $HYGOSHOP_GATEWAY_URL/v1/listings
  curl -s -H "Authorization: Bearer $HYGOSHOP_DEMO_API_KEY" $HYGOSHOP_GATEWAY_URL/v1/listings

Logs in {stack.group.processes[0].log_path.parent if stack.group.processes[0].log_path else "-"}. Ctrl-C stops everything.
""",
        flush=True,
    )


def _object_storage(s3: S3Handle) -> BlobSettings:
    """The catalog's bucket on `s3`; created when we run the server ourselves."""
    settings = s3.blob_settings(
        os.environ.get("S3_BUCKET") or DATABASE,
        public_endpoint_url=os.environ.get("S3_PUBLIC_ENDPOINT_URL") or None,
    )
    if s3.source == "seaweedfs":
        ensure_bucket(settings)
    log.info("object storage: %s, bucket %s", s3.endpoint_url, settings.bucket)
    return settings


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", type=Path, default=REPO / ".run")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("HYGOSHOP_GATEWAY_PORT", "8080"))
    )
    parser.add_argument("--host", default=os.environ.get("HYGOSHOP_GATEWAY_HOST", "127.0.0.1"))
    parser.add_argument("--catalog-processes", type=int, default=1)
    parser.add_argument(
        "--exit-after-start", action="store_true", help="start, seed, print, stop (for tests)"
    )
    args = parser.parse_args()
    # `kill <launcher>` stops as gracefully as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    run_dir: Path = args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    state_file = run_dir / "state.json"
    state = _load_state(state_file)
    state.setdefault("admin_key", "hyg_admin_" + secrets.token_urlsafe(32))
    _save_state(state_file, state)

    postgres = find_or_start_postgres(run_dir / "postgres", sources=("env", "embedded"))
    stack: Stack | None = None
    s3: S3Handle | None = None
    try:
        s3 = find_or_start_s3(run_dir / "seaweedfs")
        blobs = _object_storage(s3)
        admin_url = postgres.url
        if postgres.source == "embedded":
            admin_url = create_database(postgres.url, DATABASE, exist_ok=True)
        options = StackOptions(
            platform_admin_key=state["admin_key"],
            redis_url=os.environ.get("REDIS_URL") or None,
            otlp_endpoint=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
            processes={"catalog": args.catalog_processes},
            bus_url=os.environ.get("BUS_URL") or os.environ.get("AMQP_URL") or None,
            s3=blobs,
        )
        stack = start_stack(
            admin_url, run_dir, options, gateway_port=args.port, gateway_host=args.host
        )
        _seed_demo(stack, state)
        _save_state(state_file, state)
        _announce(stack, state, run_dir / "env")
        if not args.exit_after_start:
            exited = stack.group.wait_any()
            log.error(
                "%s exited with %s; stopping everything (see its log)",
                exited.name,
                exited.returncode,
            )
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    finally:
        if stack is not None:
            stack.stop()
        if s3 is not None:
            s3.stop()
        postgres.stop()


if __name__ == "__main__":
    main()

"""`python -m hygoshop_tenancy [serve|migrate]`."""

from hygoshop_platform.cli import run_service
from hygoshop_tenancy.app import build
from hygoshop_tenancy.config import SCHEMA, TenancySettings

if __name__ == "__main__":
    run_service(TenancySettings.from_env, build, SCHEMA)

"""`python -m hygoshop_catalog [serve|migrate]`."""

from hygoshop_catalog.app import build
from hygoshop_catalog.config import SCHEMA, CatalogSettings
from hygoshop_platform.cli import run_service

if __name__ == "__main__":
    run_service(CatalogSettings.from_env, build, SCHEMA)

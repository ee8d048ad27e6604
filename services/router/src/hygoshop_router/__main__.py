"""`python -m hygoshop_router [serve|migrate]`."""

from hygoshop_platform.cli import run_service
from hygoshop_router.app import build
from hygoshop_router.config import SCHEMA, RouterSettings

if __name__ == "__main__":
    run_service(RouterSettings.from_env, build, SCHEMA)

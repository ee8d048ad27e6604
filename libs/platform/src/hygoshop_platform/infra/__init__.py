"""Local infrastructure for `make run` and tests: find or start PostgreSQL, run children."""

from hygoshop_platform.infra.postgres import (
    DEFAULT_SOURCES,
    PostgresHandle,
    PostgresUnavailable,
    Source,
    create_database,
    drop_database,
    find_or_start_postgres,
    to_psycopg_url,
    to_sqlalchemy_url,
    with_database,
)
from hygoshop_platform.infra.processes import (
    ManagedProcess,
    ManagedProcessError,
    ProcessGroup,
    free_port,
)

__all__ = [
    "DEFAULT_SOURCES",
    "ManagedProcess",
    "ManagedProcessError",
    "PostgresHandle",
    "PostgresUnavailable",
    "ProcessGroup",
    "Source",
    "create_database",
    "drop_database",
    "find_or_start_postgres",
    "free_port",
    "to_psycopg_url",
    "to_sqlalchemy_url",
    "with_database",
]

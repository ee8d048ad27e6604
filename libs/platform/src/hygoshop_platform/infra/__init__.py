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
from hygoshop_platform.infra.s3 import S3Handle, S3Unavailable, find_or_start_s3
from hygoshop_platform.infra.seaweedfs import SeaweedFS

__all__ = [
    "DEFAULT_SOURCES",
    "ManagedProcess",
    "ManagedProcessError",
    "PostgresHandle",
    "PostgresUnavailable",
    "ProcessGroup",
    "S3Handle",
    "S3Unavailable",
    "SeaweedFS",
    "Source",
    "create_database",
    "drop_database",
    "find_or_start_postgres",
    "find_or_start_s3",
    "free_port",
    "to_psycopg_url",
    "to_sqlalchemy_url",
    "with_database",
]

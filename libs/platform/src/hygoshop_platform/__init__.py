"""The Hygoshop service chassis: what every service shares, written once.

Modules: `settings` (environment), `server` (grpc.aio with health, reflection, graceful
stop), `tenancy` (the caller's tenant and scopes), `errors` (domain errors and their
google.rpc.Status mapping), `interceptors`, `db` (async SQLAlchemy + RLS tenant
transactions), `migrations` (Alembic per service schema), `telemetry` (traces, JSON logs),
`pagination` (opaque page tokens), `bus` (events and jobs over RabbitMQ or PostgreSQL:
outbox, relay, consumers, inbox), `infra` (local servers and processes), `testing`.
"""

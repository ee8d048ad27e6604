"""The provider catalog and health (platform-wide); overrides, budgets, spend, credential
cooldowns and alerts (tenant-owned, row-level security).

Revision ID: 0001
Revises:
"""

from alembic import op

from hygoshop_platform.migrations import enable_tenant_rls

revision = "0001"
down_revision = None

TENANT_TABLES = (
    "router.overrides",
    "router.budgets",
    "router.spend",
    "router.credential_cooldowns",
    "router.alerts",
)


def upgrade() -> None:
    # Platform-wide: no tenant owns a provider or its health, so no tenant_id and no RLS.
    op.execute(
        """
        CREATE TABLE router.providers (
            provider_id   text PRIMARY KEY,
            category      text NOT NULL,
            display_name  text NOT NULL,
            capabilities  text[] NOT NULL,
            unit_costs    jsonb NOT NULL DEFAULT '{}',
            tiers         text[] NOT NULL,
            weight        integer NOT NULL CHECK (weight BETWEEN 1 AND 1000),
            enabled       boolean NOT NULL,
            offline       boolean NOT NULL,
            seed_version  integer NOT NULL,
            edited_fields text[] NOT NULL DEFAULT '{}',
            update_time   timestamptz NOT NULL DEFAULT now(),
            CHECK (starts_with(provider_id, category || '.'))
        )
        """
    )
    op.execute(
        """
        CREATE TABLE router.seed_state (
            singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            version      integer NOT NULL,
            apply_time   timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE router.provider_health (
            provider_id  text PRIMARY KEY REFERENCES router.providers (provider_id),
            snapshot     jsonb NOT NULL,
            update_time  timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE router.overrides (
            tenant_id    uuid NOT NULL,
            override_id  uuid NOT NULL,
            category     text NOT NULL,
            provider_id  text NOT NULL REFERENCES router.providers (provider_id),
            action       text NOT NULL CHECK (action IN ('pin', 'exclude')),
            reason       text NOT NULL DEFAULT '',
            expire_time  timestamptz,
            create_time  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, override_id),
            UNIQUE (tenant_id, category, provider_id)
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX overrides_one_pin ON router.overrides (tenant_id, category)"
        " WHERE action = 'pin'"
    )
    op.execute(
        """
        CREATE TABLE router.budgets (
            tenant_id      uuid NOT NULL,
            category       text NOT NULL,
            monthly_limit  numeric(19, 9) NOT NULL CHECK (monthly_limit >= 0),
            near_cap_ratio double precision NOT NULL CHECK (near_cap_ratio > 0 AND near_cap_ratio < 1),
            create_time    timestamptz NOT NULL DEFAULT now(),
            update_time    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, category)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE router.spend (
            tenant_id  uuid NOT NULL,
            category   text NOT NULL,
            month      date NOT NULL CHECK (extract(day FROM month) = 1),
            amount     numeric(19, 9) NOT NULL DEFAULT 0,
            calls      bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, category, month)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE router.credential_cooldowns (
            tenant_id    uuid NOT NULL,
            provider_id  text NOT NULL REFERENCES router.providers (provider_id),
            until        timestamptz NOT NULL,
            PRIMARY KEY (tenant_id, provider_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE router.alerts (
            tenant_id       uuid NOT NULL,
            alert_id        uuid NOT NULL,
            kind            text NOT NULL CHECK (kind IN ('credentials_rejected')),
            provider_id     text NOT NULL REFERENCES router.providers (provider_id),
            category        text NOT NULL,
            detail          text NOT NULL,
            cooldown_until  timestamptz,
            create_time     timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (tenant_id, alert_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX alerts_newest ON router.alerts (tenant_id, create_time DESC, alert_id DESC)"
    )
    for table in TENANT_TABLES:
        for statement in enable_tenant_rls(table):
            op.execute(statement)

"""Listings and variants, tenant-scoped with row-level security.

Revision ID: 0001
Revises:
"""

from alembic import op

from hygoshop_platform.migrations import enable_tenant_rls

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE catalog.listings (
            tenant_id   uuid NOT NULL,
            listing_id  uuid NOT NULL,
            title       text NOT NULL,
            description text NOT NULL DEFAULT '',
            brand       text NOT NULL DEFAULT '',
            category    text NOT NULL DEFAULT '',
            attributes  jsonb NOT NULL DEFAULT '{}',
            images      jsonb NOT NULL DEFAULT '[]',
            status      text NOT NULL CHECK (status IN ('draft', 'active', 'archived')),
            version     bigint NOT NULL DEFAULT 1,
            request_id  text,
            create_time timestamptz NOT NULL DEFAULT now(),
            update_time timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, listing_id),
            UNIQUE (tenant_id, request_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX listings_by_update ON catalog.listings"
        " (tenant_id, update_time DESC, listing_id DESC)"
    )
    op.execute(
        "CREATE INDEX listings_by_status_update ON catalog.listings"
        " (tenant_id, status, update_time DESC, listing_id DESC)"
    )
    op.execute(
        """
        CREATE TABLE catalog.variants (
            tenant_id          uuid NOT NULL,
            listing_id         uuid NOT NULL,
            position           smallint NOT NULL,
            sku                text NOT NULL,
            options            jsonb NOT NULL DEFAULT '{}',
            currency           char(3) NOT NULL,
            price              numeric(19, 9) NOT NULL CHECK (price >= 0),
            compare_at_price   numeric(19, 9) CHECK (compare_at_price >= 0),
            inventory_quantity integer NOT NULL DEFAULT 0 CHECK (inventory_quantity >= 0),
            weight_grams       integer NOT NULL DEFAULT 0 CHECK (weight_grams >= 0),
            length_mm          integer NOT NULL DEFAULT 0,
            width_mm           integer NOT NULL DEFAULT 0,
            height_mm          integer NOT NULL DEFAULT 0,
            gtin               text NOT NULL DEFAULT '',
            mpn                text NOT NULL DEFAULT '',
            PRIMARY KEY (tenant_id, listing_id, position),
            UNIQUE (tenant_id, sku),
            FOREIGN KEY (tenant_id, listing_id)
                REFERENCES catalog.listings (tenant_id, listing_id) ON DELETE CASCADE
        )
        """
    )
    for table in ("catalog.listings", "catalog.variants"):
        for statement in enable_tenant_rls(table):
            op.execute(statement)

"""Workflow runs, their step history and signals, operator tasks, outbox and inbox.

Revision ID: 0001
Revises:

`runs.wake_at` is the one column claiming looks at: a run is claimable when
`wake_at <= now()`. Claiming sets it to the lease's expiry (so a dead worker's run becomes
claimable again by itself), heartbeats push it on, a pause sets it to the timer (or NULL
when only a signal or an operator task can wake the run), and the end of a run clears it.
`lease_version` grows with every claim; every write a worker makes checks it (fencing).

Workers claim across tenants, but the application role sees one tenant at a time: three
SECURITY DEFINER functions (owned by the schema owner, whose own policies see every row)
do exactly the cross-tenant work and nothing else: `claim_runs`, `extend_leases` and
`overdue_tasks`. Everything else runs in a tenant transaction under the usual policies.
"""

from alembic import op

from hygoshop_platform.bus import inbox_sql, outbox_sql
from hygoshop_platform.migrations import enable_tenant_rls

revision = "0001"
down_revision = None

OWNER, APP = "hygoshop_workflows_owner", "hygoshop_workflows_app"
DEFINER = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE workflows.runs (
            tenant_id        uuid NOT NULL,
            run_id           uuid NOT NULL,
            workflow_type    text NOT NULL,
            version          integer NOT NULL CHECK (version > 0),
            business_key     text NOT NULL,
            input            jsonb NOT NULL,
            state            text NOT NULL CHECK (state IN
                ('pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
            waiting_on       text NOT NULL DEFAULT '',
            wake_at          timestamptz,
            lease_owner      text,
            lease_version    bigint NOT NULL DEFAULT 0,
            lease_losses     integer NOT NULL DEFAULT 0,
            cancel_requested boolean NOT NULL DEFAULT false,
            result           jsonb,
            error_type       text NOT NULL DEFAULT '',
            error_message    text NOT NULL DEFAULT '',
            create_time      timestamptz NOT NULL DEFAULT clock_timestamp(),
            update_time      timestamptz NOT NULL DEFAULT clock_timestamp(),
            end_time         timestamptz,
            PRIMARY KEY (tenant_id, run_id),
            UNIQUE (tenant_id, workflow_type, business_key),
            CHECK ((state IN ('succeeded', 'failed', 'cancelled')) = (end_time IS NOT NULL)),
            CHECK (state NOT IN ('succeeded', 'failed', 'cancelled') OR wake_at IS NULL)
        )
        """
    )
    op.execute(
        "CREATE INDEX runs_runnable ON workflows.runs (tenant_id, wake_at)"
        " WHERE wake_at IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX runs_by_create ON workflows.runs (tenant_id, create_time DESC, run_id DESC)"
    )
    op.execute(
        """
        CREATE TABLE workflows.steps (
            tenant_id     uuid NOT NULL,
            run_id        uuid NOT NULL,
            seq           integer NOT NULL CHECK (seq >= 0),
            name          text NOT NULL,
            kind          text NOT NULL CHECK (kind IN
                ('step', 'sleep', 'signal', 'operator_task', 'compensation')),
            state         text NOT NULL CHECK (state IN
                ('running', 'retrying', 'succeeded', 'failed')),
            attempts      integer NOT NULL DEFAULT 0,
            result        jsonb,
            error_type    text NOT NULL DEFAULT '',
            error_message text NOT NULL DEFAULT '',
            wake_at       timestamptz,
            task_id       uuid,
            start_time    timestamptz NOT NULL DEFAULT clock_timestamp(),
            end_time      timestamptz,
            PRIMARY KEY (tenant_id, run_id, seq),
            FOREIGN KEY (tenant_id, run_id)
                REFERENCES workflows.runs (tenant_id, run_id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        """
        CREATE TABLE workflows.signals (
            tenant_id     uuid NOT NULL,
            signal_id     uuid NOT NULL,
            run_id        uuid NOT NULL,
            name          text NOT NULL,
            payload       jsonb NOT NULL DEFAULT '{}',
            request_id    text,
            consumed_seq  integer,
            create_time   timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (tenant_id, signal_id),
            UNIQUE (tenant_id, run_id, request_id),
            FOREIGN KEY (tenant_id, run_id)
                REFERENCES workflows.runs (tenant_id, run_id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX signals_unconsumed ON workflows.signals"
        " (tenant_id, run_id, name, create_time) WHERE consumed_seq IS NULL"
    )
    op.execute(
        """
        CREATE TABLE workflows.operator_tasks (
            tenant_id        uuid NOT NULL,
            task_id          uuid NOT NULL,
            run_id           uuid NOT NULL,
            step_seq         integer NOT NULL,
            kind             text NOT NULL,
            title            text NOT NULL,
            payload          jsonb NOT NULL DEFAULT '{}',
            state            text NOT NULL CHECK (state IN
                ('open', 'claimed', 'completed', 'cancelled')),
            claimed_by       text NOT NULL DEFAULT '',
            claim_expires_at timestamptz,
            decision         text CHECK (decision IN ('approve', 'reject', 'edit')),
            outcome_payload  jsonb,
            comment          text NOT NULL DEFAULT '',
            completed_by     text NOT NULL DEFAULT '',
            due_time         timestamptz NOT NULL,
            escalated        boolean NOT NULL DEFAULT false,
            escalate_time    timestamptz,
            create_time      timestamptz NOT NULL DEFAULT clock_timestamp(),
            update_time      timestamptz NOT NULL DEFAULT clock_timestamp(),
            end_time         timestamptz,
            PRIMARY KEY (tenant_id, task_id),
            UNIQUE (tenant_id, run_id, step_seq),
            FOREIGN KEY (tenant_id, run_id)
                REFERENCES workflows.runs (tenant_id, run_id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX tasks_by_age ON workflows.operator_tasks (tenant_id, create_time, task_id)"
    )
    op.execute(
        "CREATE INDEX tasks_overdue ON workflows.operator_tasks (due_time)"
        " WHERE NOT escalated AND state IN ('open', 'claimed')"
    )
    for table in ("runs", "steps", "signals", "operator_tasks"):
        for statement in enable_tenant_rls(f"workflows.{table}"):
            op.execute(statement)
    # The owner's own policies: only the SECURITY DEFINER functions below run as the owner.
    op.execute(f"CREATE POLICY workers ON workflows.runs FOR ALL TO {OWNER} USING (true)")
    # claim_runs tells whether a run has history (so a fresh run's replay skips loading it).
    op.execute(f"CREATE POLICY workers ON workflows.steps FOR SELECT TO {OWNER} USING (true)")
    op.execute(
        f"CREATE POLICY escalation ON workflows.operator_tasks FOR SELECT TO {OWNER} USING (true)"
    )
    op.execute(
        f"""
        CREATE FUNCTION workflows.claim_runs(p_worker text, p_lease_seconds double precision,
            p_limit integer, p_types text[])
        RETURNS TABLE (tenant_id uuid, run_id uuid, workflow_type text, version integer,
                       business_key text, input jsonb, lease_version bigint,
                       lease_losses integer, cancel_requested boolean, has_history boolean,
                       now timestamptz)
        LANGUAGE sql VOLATILE {DEFINER}
        AS $$
            -- Fair across tenants: list the tenants that have runnable runs (a loose index
            -- scan: one index probe per tenant), take up to p_limit oldest runnable runs of
            -- each, then deal them out round-robin (every tenant's first before anyone's
            -- second) up to p_limit.
            WITH RECURSIVE tenants(tenant_id) AS (
                (SELECT r.tenant_id FROM workflows.runs r
                  WHERE r.wake_at <= clock_timestamp() ORDER BY r.tenant_id LIMIT 1)
                UNION ALL
                SELECT (SELECT r.tenant_id FROM workflows.runs r
                         WHERE r.wake_at <= clock_timestamp() AND r.tenant_id > t.tenant_id
                         ORDER BY r.tenant_id LIMIT 1)
                  FROM tenants t WHERE t.tenant_id IS NOT NULL
            ),
            candidates AS (
                SELECT c.tenant_id, c.run_id,
                       row_number() OVER (PARTITION BY c.tenant_id ORDER BY c.wake_at) AS turn,
                       c.wake_at
                  FROM tenants t
                 CROSS JOIN LATERAL (
                    SELECT r.tenant_id, r.run_id, r.wake_at FROM workflows.runs r
                     WHERE r.tenant_id = t.tenant_id AND r.wake_at <= clock_timestamp()
                       AND (r.workflow_type || '@' || r.version) = ANY (p_types)
                     ORDER BY r.wake_at
                     LIMIT p_limit
                     FOR UPDATE SKIP LOCKED
                 ) c
                 WHERE t.tenant_id IS NOT NULL
            ),
            chosen AS (
                SELECT tenant_id, run_id FROM candidates ORDER BY turn, wake_at LIMIT p_limit
            )
            UPDATE workflows.runs r
               SET state = 'running', waiting_on = '', lease_owner = p_worker,
                   lease_version = r.lease_version + 1,
                   lease_losses = r.lease_losses + CASE WHEN r.state = 'running' THEN 1 ELSE 0 END,
                   wake_at = clock_timestamp() + p_lease_seconds * interval '1 second',
                   update_time = clock_timestamp()
              FROM chosen
             WHERE r.tenant_id = chosen.tenant_id AND r.run_id = chosen.run_id
            RETURNING r.tenant_id, r.run_id, r.workflow_type, r.version, r.business_key,
                      r.input, r.lease_version, r.lease_losses, r.cancel_requested,
                      EXISTS (SELECT 1 FROM workflows.steps s
                               WHERE s.tenant_id = r.tenant_id AND s.run_id = r.run_id),
                      clock_timestamp()
        $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION workflows.extend_leases(p_worker text, p_lease_seconds double precision,
            p_tenants uuid[], p_runs uuid[], p_versions bigint[])
        RETURNS TABLE (run_id uuid, cancel_requested boolean)
        LANGUAGE sql VOLATILE {DEFINER}
        AS $$
            UPDATE workflows.runs r
               SET wake_at = clock_timestamp() + p_lease_seconds * interval '1 second'
              FROM unnest(p_tenants, p_runs, p_versions) AS held(tenant_id, run_id, lease_version)
             WHERE r.tenant_id = held.tenant_id AND r.run_id = held.run_id
               AND r.lease_version = held.lease_version AND r.lease_owner = p_worker
               AND r.state = 'running'
            RETURNING r.run_id, r.cancel_requested
        $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION workflows.overdue_tasks(p_limit integer)
        RETURNS TABLE (tenant_id uuid, task_id uuid)
        LANGUAGE sql STABLE {DEFINER}
        AS $$
            SELECT t.tenant_id, t.task_id FROM workflows.operator_tasks t
             WHERE NOT t.escalated AND t.state IN ('open', 'claimed')
               AND t.due_time <= clock_timestamp()
               AND (t.state = 'open' OR t.claim_expires_at <= clock_timestamp())
             ORDER BY t.due_time
             LIMIT p_limit
        $$
        """
    )
    for fn in (
        "claim_runs(text, double precision, integer, text[])",
        "extend_leases(text, double precision, uuid[], uuid[], bigint[])",
        "overdue_tasks(integer)",
    ):
        op.execute(f"REVOKE ALL ON FUNCTION workflows.{fn} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION workflows.{fn} TO {APP}")
    for statement in [*outbox_sql("workflows"), *inbox_sql("workflows")]:
        op.execute(statement)

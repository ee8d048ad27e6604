"""Scans bounded by what they look for: claims and the escalation scan.

`claim_runs` listed every tenant with a runnable run and locked up to `p_limit` runs of
each: with 5,000 such tenants one claim took 22 ms instead of 1 ms and held thousands of
row locks, which other workers' claims (SKIP LOCKED) had to pass over, often coming back
empty. Now it walks the tenants in the runnable index (runs with a wake time), one index
probe each, from a random tenant id up and then (wrapping) from the lowest up to it; of
each it locks (SKIP LOCKED) up to `p_limit` of the oldest due runs it can run
(type@version), and it stops once `p_limit` tenants gave it some. So at most `p_limit` x
`p_limit` rows are locked however many tenants wait, and a tenant whose runs another
claim holds right now does not use up the window. Within a claim the deal is as before
(every tenant's oldest run before anyone's second); across claims every waiting tenant is
as likely to be in the window.

Due means `wake_at <=` one timestamp taken when the claim starts: a bound the index scan
stops at. Compared with `clock_timestamp()` (volatile) the condition only filtered the
scan, which read every sleeping run of each tenant it visited: 5.7 ms a claim with 50,000
timers waiting over 20 tenants, against 0.9 ms without them (1.6 ms now).

`overdue_tasks` (the escalation scan every worker runs every few seconds) compared due
times with `clock_timestamp()` too, so it read every open task not yet escalated, due or
not; it compares with `now()` now, and reads only the overdue ones.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"

DEFINER = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"

_CLAIM = """
CREATE OR REPLACE FUNCTION workflows.claim_runs(p_worker text,
    p_lease_seconds double precision, p_limit integer, p_types text[])
RETURNS TABLE (tenant_id uuid, run_id uuid, workflow_type text, version integer,
               business_key text, input jsonb, lease_version bigint,
               lease_losses integer, cancel_requested boolean, has_history boolean,
               now timestamptz)
LANGUAGE plpgsql VOLATILE {definer}
AS $$
#variable_conflict use_column
DECLARE
    -- One "now" for the claim: a parameter bounds the index scan, clock_timestamp()
    -- (volatile) would only filter it, reading every sleeping run of each tenant.
    v_now timestamptz := clock_timestamp();
    v_start uuid := gen_random_uuid();
    v_wrapped boolean := false;  -- false: tenants >= v_start; true: tenants < v_start
    v_after uuid := NULL;        -- the last tenant visited in this pass
    v_tenant uuid;
    v_served integer := 0;       -- tenants that gave runs
    v_runs uuid[];
    v_wakes timestamptz[];
    c_tenants uuid[] := '{{}}';
    c_runs uuid[] := '{{}}';
    c_turns integer[] := '{{}}';
    c_wakes timestamptz[] := '{{}}';
BEGIN
    WHILE v_served < p_limit LOOP
        IF NOT v_wrapped AND v_after IS NULL THEN
            SELECT r.tenant_id INTO v_tenant FROM workflows.runs r
             WHERE r.wake_at IS NOT NULL AND r.tenant_id >= v_start
             ORDER BY r.tenant_id LIMIT 1;
        ELSIF NOT v_wrapped THEN
            SELECT r.tenant_id INTO v_tenant FROM workflows.runs r
             WHERE r.wake_at IS NOT NULL AND r.tenant_id > v_after
             ORDER BY r.tenant_id LIMIT 1;
        ELSIF v_after IS NULL THEN
            SELECT r.tenant_id INTO v_tenant FROM workflows.runs r
             WHERE r.wake_at IS NOT NULL AND r.tenant_id < v_start
             ORDER BY r.tenant_id LIMIT 1;
        ELSE
            SELECT r.tenant_id INTO v_tenant FROM workflows.runs r
             WHERE r.wake_at IS NOT NULL AND r.tenant_id > v_after AND r.tenant_id < v_start
             ORDER BY r.tenant_id LIMIT 1;
        END IF;
        IF v_tenant IS NULL THEN
            EXIT WHEN v_wrapped;
            v_wrapped := true;
            v_after := NULL;
            CONTINUE;
        END IF;
        v_after := v_tenant;
        SELECT array_agg(l.run_id ORDER BY l.wake_at), array_agg(l.wake_at ORDER BY l.wake_at)
          INTO v_runs, v_wakes
          FROM (SELECT r.run_id, r.wake_at FROM workflows.runs r
                 WHERE r.tenant_id = v_tenant AND r.wake_at <= v_now
                   AND (r.workflow_type || '@' || r.version) = ANY (p_types)
                 ORDER BY r.wake_at
                 LIMIT p_limit
                 FOR UPDATE SKIP LOCKED) l;
        -- None: its runs are asleep, of other types, or held by another claim right now.
        CONTINUE WHEN v_runs IS NULL;
        v_served := v_served + 1;
        c_tenants := c_tenants || array_fill(v_tenant, ARRAY[cardinality(v_runs)]);
        c_runs := c_runs || v_runs;
        c_turns := c_turns || ARRAY(SELECT generate_series(1, cardinality(v_runs)));
        c_wakes := c_wakes || v_wakes;
    END LOOP;
    -- Dealt out round-robin (every tenant's first before anyone's second) up to p_limit.
    RETURN QUERY
    WITH chosen AS (
        SELECT c.t, c.r FROM unnest(c_tenants, c_runs, c_turns, c_wakes) AS c(t, r, turn, wake)
         ORDER BY c.turn, c.wake LIMIT p_limit
    )
    UPDATE workflows.runs r
       SET state = 'running', waiting_on = '', lease_owner = p_worker,
           lease_version = r.lease_version + 1,
           lease_losses = r.lease_losses + CASE WHEN r.state = 'running' THEN 1 ELSE 0 END,
           wake_at = clock_timestamp() + p_lease_seconds * interval '1 second',
           update_time = clock_timestamp()
      FROM chosen
     WHERE r.tenant_id = chosen.t AND r.run_id = chosen.r
    RETURNING r.tenant_id, r.run_id, r.workflow_type, r.version, r.business_key,
              r.input, r.lease_version, r.lease_losses, r.cancel_requested,
              EXISTS (SELECT 1 FROM workflows.steps s
                       WHERE s.tenant_id = r.tenant_id AND s.run_id = r.run_id),
              clock_timestamp();
END
$$
"""


_OVERDUE = """
CREATE OR REPLACE FUNCTION workflows.overdue_tasks(p_limit integer)
RETURNS TABLE (tenant_id uuid, task_id uuid)
LANGUAGE sql STABLE {definer}
AS $$
    SELECT t.tenant_id, t.task_id FROM workflows.operator_tasks t
     WHERE NOT t.escalated AND t.state IN ('open', 'claimed')
       AND t.due_time <= now()
       AND (t.state = 'open' OR t.claim_expires_at <= now())
     ORDER BY t.due_time
     LIMIT p_limit
$$
"""


def upgrade() -> None:
    op.execute(_CLAIM.format(definer=DEFINER))
    op.execute(_OVERDUE.format(definer=DEFINER))

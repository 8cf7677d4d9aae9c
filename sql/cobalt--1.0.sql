/* cobalt--1.0.sql: install script of the cobalt extension */

\echo Use "CREATE EXTENSION cobalt" to load this file. \quit

/*
 * The tables live in schema cobalt; the functions in the schema the
 * extension is created in (public by default), so applications call them
 * unqualified.  Nothing is granted to PUBLIC.
 */
CREATE SCHEMA cobalt;
REVOKE ALL ON SCHEMA cobalt FROM PUBLIC;

-- What each operation sends, and how long its outcome is awaited.
CREATE TABLE cobalt.operations (
    operation   text COLLATE "C" PRIMARY KEY
                CHECK (operation ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    method      text NOT NULL CHECK (method IN ('POST', 'PATCH', 'PUT')),
    path        text NOT NULL
                CHECK (path ~ '^/[A-Za-z0-9_./{}-]*$' AND path !~ '\{\}'),
    timeout     interval NOT NULL
                CHECK (timeout >= interval '1 second' AND timeout <= interval '7 days'),
    body_format text NOT NULL DEFAULT 'json' CHECK (body_format IN ('json', 'multipart')),
    file_field  text,
    CHECK ((body_format = 'multipart') = (file_field IS NOT NULL))
);
COMMENT ON TABLE cobalt.operations IS
    'Cobalt operations cobalt_submit accepts: method, path relative to cobalt.api_url ({field} placeholders take payload fields), timeout of the outcome.';

INSERT INTO cobalt.operations (operation, method, path, timeout, body_format, file_field) VALUES
    ('appointment.create',         'POST',  '/appointments',                      '2 min', 'json', NULL),
    ('appointment.update',         'PATCH', '/appointments/{id}',                 '2 min', 'json', NULL),
    ('patient.create',             'POST',  '/patients',                          '2 min', 'json', NULL),
    ('note.create',                'POST',  '/notes',                             '3 min', 'json', NULL),
    ('document.upload',            'POST',  '/documents',                         '3 min', 'multipart', 'document'),
    ('task.create',                'POST',  '/tasks',                             '2 min', 'json', NULL),
    ('message.create',             'POST',  '/messages',                          '2 min', 'json', NULL),
    ('insurance.create',           'POST',  '/patients/{patient_mrn}/insurances', '2 min', 'json', NULL),
    ('referring_provider.create',  'POST',  '/referring-providers',               '2 min', 'json', NULL),
    ('telephone_encounter.create', 'POST',  '/telephone-encounters',              '2 min', 'json', NULL);

-- The application's credentials (one row).
CREATE TABLE cobalt.client (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    client_id     text NOT NULL,
    client_secret text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One linked EHR account per row.
CREATE TABLE cobalt.accounts (
    account      text COLLATE "C" PRIMARY KEY CHECK (account ~ '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$'),
    access_token text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON cobalt.client, cobalt.accounts FROM PUBLIC;

-- Which roles may use which account (cobalt_grant_account).  Membership
-- in a granted role counts, as for any privilege.
CREATE TABLE cobalt.account_grants (
    account    text COLLATE "C" NOT NULL REFERENCES cobalt.accounts (account)
                   ON UPDATE CASCADE ON DELETE CASCADE,
    role       regrole NOT NULL CHECK (role OPERATOR(pg_catalog.<>) 0),
    granted_by text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, role)
);
CREATE INDEX account_grants_role_idx ON cobalt.account_grants (role);
REVOKE ALL ON cobalt.account_grants FROM PUBLIC;
COMMENT ON TABLE cobalt.account_grants IS
    'Roles that may submit and follow the jobs of an account; written by cobalt_grant_account and cobalt_revoke_account.';

-- One row per submission.  The identifiers (states, names, Cobalt's ids)
-- compare byte by byte (COLLATE "C"): the worker's indexes compare them
-- thousands of times a second, and no language's rules apply to them.
CREATE TABLE cobalt.jobs (
    id             bigserial PRIMARY KEY,
    operation      text COLLATE "C" NOT NULL,
    account        text COLLATE "C" NOT NULL,
    payload        jsonb NOT NULL,
    state          text COLLATE "C" NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'sending', 'polling', 'succeeded', 'failed',
                                    'timed_out', 'unknown', 'cancelled')),
    remote_job_id  text COLLATE "C",
    attempts       integer NOT NULL DEFAULT 0,
    http_status    integer,
    event_type     text,
    result         jsonb,
    error          text,
    last_error     text,
    attempt_errors jsonb NOT NULL DEFAULT '[]',
    submitted_by   text NOT NULL DEFAULT current_user,
    retry_of       bigint,
    resolved_by    text,
    resolution_note text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz,
    accepted_at    timestamptz,
    timeout_at     timestamptz,
    finished_at    timestamptz,
    next_due_at    timestamptz
);
COMMENT ON COLUMN cobalt.jobs.next_due_at IS
    'When the worker next acts on the job: send (queued), recover (sending), give up waiting (polling), check again (timed_out); NULL once it has nothing left to do.';

-- Every job's row is rewritten a few times within seconds: vacuum early so
-- the due index does not fill with dead entries.
ALTER TABLE cobalt.jobs SET (autovacuum_vacuum_scale_factor = 0.02,
                             autovacuum_vacuum_insert_scale_factor = 0.05,
                             autovacuum_analyze_scale_factor = 0.02);

-- The worker's "what is due" queries read only jobs it still acts on, and
-- of those only the ones in the state they look for, in next_due_at order:
-- claiming 64 queued jobs reads 64 entries, however many jobs are being
-- sent or polled meanwhile.
CREATE INDEX jobs_due_idx ON cobalt.jobs (state, next_due_at) WHERE next_due_at IS NOT NULL;
CREATE INDEX jobs_retry_of_idx ON cobalt.jobs (retry_of) WHERE retry_of IS NOT NULL;
CREATE INDEX jobs_remote_job_id_idx ON cobalt.jobs (remote_job_id) WHERE remote_job_id IS NOT NULL;

-- Jobs that finished recently (monitoring, retention).
CREATE INDEX jobs_finished_idx ON cobalt.jobs (finished_at) WHERE finished_at IS NOT NULL;
-- Jobs that need an operator's eye, however old.
CREATE INDEX jobs_attention_idx ON cobalt.jobs (operation)
    WHERE state IN ('timed_out', 'unknown') AND next_due_at IS NULL;

-- Every event seen, polled or delivered by webhook: one row per distinct event.
CREATE TABLE cobalt.events (
    id          bigserial PRIMARY KEY,
    job_id      bigint REFERENCES cobalt.jobs (id) ON DELETE CASCADE,
    event_id    text COLLATE "C",
    event_type  text NOT NULL,
    data        jsonb,
    source      text NOT NULL CHECK (source IN ('poll', 'webhook')),
    webhook_id  text COLLATE "C",
    remote_job_id text,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX events_event_id_idx ON cobalt.events (event_id) WHERE event_id IS NOT NULL;
CREATE UNIQUE INDEX events_webhook_id_idx ON cobalt.events (webhook_id) WHERE webhook_id IS NOT NULL;
CREATE INDEX events_job_id_idx ON cobalt.events (job_id);
CREATE INDEX events_unmatched_idx ON cobalt.events (received_at) WHERE job_id IS NULL;

-- The secret Cobalt signs webhook deliveries with (one row).
CREATE TABLE cobalt.webhook (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    secret     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON cobalt.events, cobalt.webhook FROM PUBLIC;

-- Every change of the configuration tables makes the backends' cached
-- copy of them (what cobalt_submit reads) invalid when it commits.
CREATE FUNCTION cobalt._config_changed() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'cobalt_config_changed';
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cobalt.operations
    FOR EACH STATEMENT EXECUTE FUNCTION cobalt._config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cobalt.client
    FOR EACH STATEMENT EXECUTE FUNCTION cobalt._config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cobalt.accounts
    FOR EACH STATEMENT EXECUTE FUNCTION cobalt._config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cobalt.account_grants
    FOR EACH STATEMENT EXECUTE FUNCTION cobalt._config_changed();
REVOKE ALL ON FUNCTION cobalt._config_changed() FROM PUBLIC;

-- Keep the data in pg_dump output.
SELECT pg_catalog.pg_extension_config_dump('cobalt.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('cobalt.jobs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cobalt.client', '');
SELECT pg_catalog.pg_extension_config_dump('cobalt.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('cobalt.events', '');
SELECT pg_catalog.pg_extension_config_dump('cobalt.events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cobalt.webhook', '');
SELECT pg_catalog.pg_extension_config_dump('cobalt.account_grants', '');

/*
 * Row-level security, forced so that it binds the tables' owner too (and
 * so every SECURITY DEFINER path): a role sees the jobs of the accounts
 * granted to it or to a role whose privileges it has, and the grants
 * themselves; the owner (and its members) sees everything.  Superusers,
 * and so the worker, bypass row security as always.  The policies are
 * stored as parse trees, so no search_path can change what they call.
 */
ALTER TABLE cobalt.account_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE cobalt.account_grants FORCE ROW LEVEL SECURITY;
CREATE POLICY account_grants_of_own_roles ON cobalt.account_grants
    USING (pg_catalog.pg_has_role(role::pg_catalog.oid, 'USAGE')
           OR pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c
                                      WHERE c.oid OPERATOR(pg_catalog.=) 'cobalt.account_grants'::pg_catalog.regclass),
                                     'USAGE'));

ALTER TABLE cobalt.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE cobalt.jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY jobs_of_granted_accounts ON cobalt.jobs
    USING (pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c
                                   WHERE c.oid OPERATOR(pg_catalog.=) 'cobalt.jobs'::pg_catalog.regclass),
                                  'USAGE')
           OR account OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT g.account FROM cobalt.account_grants g)));

-- Per operation and state: how many jobs, the oldest queued one, and how
-- long jobs took from submit to outcome over the last hour.  Reads only
-- indexes on the jobs the worker still acts on, the jobs that need
-- attention, and the last hour's outcomes: never the whole history.
CREATE VIEW cobalt.job_stats AS
WITH active AS (
    SELECT operation, state, count(*) AS jobs,
           now() - min(created_at) FILTER (WHERE state = 'queued') AS oldest_queued_age
    FROM cobalt.jobs WHERE next_due_at IS NOT NULL
    GROUP BY operation, state
), attention AS (
    SELECT operation, state, count(*) AS jobs
    FROM cobalt.jobs WHERE state IN ('timed_out', 'unknown') AND next_due_at IS NULL
    GROUP BY operation, state
), last_hour AS (
    SELECT operation, state, count(*) AS jobs,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY finished_at - created_at) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY finished_at - created_at) AS p95
    FROM cobalt.jobs WHERE finished_at > now() - interval '1 hour'
    GROUP BY operation, state
), keys AS (
    SELECT operation, state FROM active
    UNION SELECT operation, state FROM attention
    UNION SELECT operation, state FROM last_hour
)
SELECT k.operation, k.state,
       CASE WHEN k.state IN ('succeeded', 'failed', 'cancelled') THEN coalesce(h.jobs, 0)
            ELSE coalesce(a.jobs, 0) + coalesce(t.jobs, 0) END AS jobs,
       k.state IN ('succeeded', 'failed', 'cancelled') AS counted_over_last_hour,
       a.oldest_queued_age,
       h.p50 AS p50_time_to_outcome,
       h.p95 AS p95_time_to_outcome
FROM keys k
LEFT JOIN active a ON a.operation = k.operation AND a.state = k.state
LEFT JOIN attention t ON t.operation = k.operation AND t.state = k.state
LEFT JOIN last_hour h ON h.operation = k.operation AND h.state = k.state;
REVOKE ALL ON cobalt.job_stats FROM PUBLIC;
COMMENT ON VIEW cobalt.job_stats IS
    'Per operation and state: jobs now (succeeded, failed and cancelled: those that finished in the last hour), the oldest queued job''s age, and p50/p95 submit-to-outcome time over the last hour.';

-- What cobalt_job_status and cobalt_wait return.
CREATE TYPE cobalt.job_status AS (
    job_id        bigint,
    operation     text,
    account       text,
    state         text,
    remote_job_id text,
    http_status   integer,
    event_type    text,
    result        jsonb,
    error         text,
    last_error    text,
    attempts      integer,
    created_at    timestamptz,
    sent_at       timestamptz,
    accepted_at   timestamptz,
    finished_at   timestamptz
);

-- Wake the worker when the calling transaction commits (and have it
-- reload credentials if asked).
CREATE FUNCTION cobalt._wake_at_commit(credentials_changed boolean DEFAULT false) RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'cobalt_wake_at_commit';

-- A job's status row (as cobalt_job_status returns it).
CREATE FUNCTION cobalt._status(job_id bigint) RETURNS cobalt.job_status
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT id, operation, account, state, remote_job_id, http_status, event_type, result,
           error, last_error, attempts, created_at, sent_at, accepted_at, finished_at
    FROM cobalt.jobs WHERE id = job_id
$$;

-- A job's row, locked, or an ERROR saying it does not exist.
CREATE FUNCTION cobalt._lock_job(job_id bigint) RETURNS cobalt.jobs
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j cobalt.jobs;
BEGIN
    IF job_id IS NULL THEN
        RAISE EXCEPTION 'cobalt job id must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass the id cobalt_submit returned.';
    END IF;
    IF job_id <= 0 THEN
        RAISE EXCEPTION 'cobalt job id must be positive'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Job ids are the positive numbers cobalt_submit returns.',
                  HINT = 'Pass the id cobalt_submit returned.';
    END IF;
    SELECT * INTO j FROM cobalt.jobs WHERE id = job_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cobalt job % does not exist', job_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'Job ids are returned by cobalt_submit and listed in cobalt.jobs.';
    END IF;
    RETURN j;
END
$$;

CREATE FUNCTION cobalt_set_client(client_id text, client_secret text) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF client_id IS NULL OR client_id = '' OR client_secret IS NULL OR client_secret = '' THEN
        RAISE EXCEPTION 'cobalt client_id and client_secret must be non-empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the application''s credentials from the Cobalt dashboard.';
    END IF;
    IF client_id ~ '[[:cntrl:]]' OR client_secret ~ '[[:cntrl:]]'
       OR length(client_id) > 500 OR length(client_secret) > 500 THEN
        RAISE EXCEPTION 'cobalt client credentials must be at most 500 characters without control characters'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'They are sent as HTTP header values.',
                  HINT = 'Check that the value was copied whole and without a line break.';
    END IF;
    INSERT INTO cobalt.client AS c (singleton, client_id, client_secret)
        VALUES (true, cobalt_set_client.client_id, cobalt_set_client.client_secret)
        ON CONFLICT (singleton) DO UPDATE
        SET client_id = excluded.client_id, client_secret = excluded.client_secret,
            updated_at = now();
    -- the config_changed trigger wakes the worker to reload credentials
END
$$;

CREATE FUNCTION cobalt_add_account(account text, access_token text) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF account IS NULL OR account !~ '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$' THEN
        RAISE EXCEPTION 'invalid cobalt account name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An account name is 1 to 200 letters, digits and _ . : @ -, starting with a letter or digit.',
                  HINT = 'Use a short name for the clinic, such as ''clinic-a''.';
    END IF;
    IF access_token IS NULL OR access_token = '' OR access_token ~ '[[:cntrl:]]'
       OR length(access_token) > 500 THEN
        RAISE EXCEPTION 'cobalt access token must be non-empty, at most 500 characters, without control characters'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the access token Cobalt returned when the account was linked.';
    END IF;
    INSERT INTO cobalt.accounts AS a (account, access_token)
        VALUES (cobalt_add_account.account, cobalt_add_account.access_token)
        ON CONFLICT ON CONSTRAINT accounts_pkey DO UPDATE
        SET access_token = excluded.access_token, updated_at = now();
    -- the config_changed trigger wakes the worker to reload credentials
END
$$;
COMMENT ON FUNCTION cobalt_add_account(text, text) IS
    'Add a linked EHR account, or replace its access token. Statement logging (log_statement, and log_min_error_statement when it fails) records the token as written: prefer cobalt_add_account_from_file.';
COMMENT ON FUNCTION cobalt_set_client(text, text) IS
    'Set the application''s Cobalt client_id and client_secret. Statement logging (log_statement, and log_min_error_statement when it fails) records the secret as written: prefer cobalt_set_client_from_file.';

/*
 * Secrets from files, so that no statement text (and so no log line)
 * ever holds them.  cobalt._read_secret_file reads a file the server can
 * read, named by a role with the privileges of pg_read_server_files (or a
 * superuser), as pg_read_file does.  The bodies below are SQL-standard, so
 * their references are bound when the extension is created.
 */
CREATE FUNCTION cobalt._read_secret_file(path text) RETURNS text
    LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'cobalt_read_secret_file_sql';

CREATE FUNCTION cobalt_set_client_from_file(client_id text, secret_file text) RETURNS void
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
    SELECT @extschema@.cobalt_set_client(client_id, cobalt._read_secret_file(secret_file));
END;
COMMENT ON FUNCTION cobalt_set_client_from_file(text, text) IS
    'Set the client_id and, from a file the server can read (first line, without its line break), the client_secret.';

CREATE FUNCTION cobalt_add_account_from_file(account text, token_file text) RETURNS void
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
    SELECT @extschema@.cobalt_add_account(account, cobalt._read_secret_file(token_file));
END;
COMMENT ON FUNCTION cobalt_add_account_from_file(text, text) IS
    'Add an account, or replace its token, reading the access token from a file the server can read.';

-- Grant (or revoke) what a role needs to use its accounts: the functions
-- that act on jobs, the schema, and SELECT on cobalt.jobs (filtered by row
-- security) and cobalt.account_grants (its own grants).
CREATE FUNCTION cobalt._set_role_privileges(role regrole, allowed boolean) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    verb text := CASE WHEN allowed THEN 'GRANT' ELSE 'REVOKE' END;
    dir text := CASE WHEN allowed THEN 'TO' ELSE 'FROM' END;
    fn regprocedure;
BEGIN
    EXECUTE format('%s USAGE ON SCHEMA cobalt %s %s', verb, dir, role);
    EXECUTE format('%s SELECT ON TABLE cobalt.jobs, cobalt.account_grants %s %s', verb, dir, role);
    FOR fn IN
        SELECT p.oid::regprocedure
        FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
        WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass
          AND d.refobjid = (SELECT e.oid FROM pg_extension e WHERE e.extname = 'cobalt')
          AND d.deptype = 'e'
          AND p.proname IN ('cobalt_submit', 'cobalt_job_status', 'cobalt_wait',
                            'cobalt_recheck', 'cobalt_retry', 'cobalt_cancel')
    LOOP
        EXECUTE format('%s EXECUTE ON FUNCTION %s %s %s', verb, fn, dir, role);
    END LOOP;
END
$$;

/*
 * cobalt_grant_account and cobalt_revoke_account are C: they check that
 * the caller has the owner's privileges (superusers do), then run the
 * internal functions below as the owner.
 */
CREATE FUNCTION cobalt._grant_account(account text, role regrole, granted_by text) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM cobalt.accounts a WHERE a.account = _grant_account.account) THEN
        RAISE EXCEPTION 'unknown cobalt account "%"', account
            USING ERRCODE = 'undefined_object',
                  HINT = 'Add it with cobalt_add_account(account, access_token) first.';
    END IF;
    -- grants of roles dropped since (their privileges went with them)
    DELETE FROM cobalt.account_grants g
     WHERE NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = g.role::oid);
    INSERT INTO cobalt.account_grants AS g (account, role, granted_by)
        VALUES (_grant_account.account, _grant_account.role, _grant_account.granted_by)
        ON CONFLICT ON CONSTRAINT account_grants_pkey DO NOTHING;
    PERFORM cobalt._set_role_privileges(_grant_account.role, true);
END
$$;

CREATE FUNCTION cobalt._revoke_account(account text, role regrole) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM cobalt.account_grants g
     WHERE g.account = _revoke_account.account AND g.role = _revoke_account.role;
    IF NOT FOUND THEN
        RAISE NOTICE 'cobalt account "%" was not granted to role %', account, role;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM cobalt.account_grants g WHERE g.role = _revoke_account.role) THEN
        PERFORM cobalt._set_role_privileges(_revoke_account.role, false);
    END IF;
END
$$;

CREATE FUNCTION cobalt_grant_account(account text, role regrole) RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'cobalt_grant_account';
COMMENT ON FUNCTION cobalt_grant_account(text, regrole) IS
    'Let a role (and its members) submit jobs for an account and read, wait on, cancel, retry and recheck that account''s jobs.';

CREATE FUNCTION cobalt_revoke_account(account text, role regrole) RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'cobalt_revoke_account';
COMMENT ON FUNCTION cobalt_revoke_account(text, regrole) IS
    'Take an account back from a role; with its last account the role also loses the functions and SELECT on cobalt.jobs.';

-- Not SECURITY DEFINER: the C code itself acts as the extension's owner
-- with the search path pinned to pg_catalog, which costs far less per call
-- than SET search_path (submit is the application's hot path).
CREATE FUNCTION cobalt_submit(operation text, payload jsonb, account text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'cobalt_submit';
COMMENT ON FUNCTION cobalt_submit(text, jsonb, text) IS
    'Queue a Cobalt operation; it is sent when the transaction commits. Returns the job id.';

-- Not SECURITY DEFINER: they read cobalt.jobs as the caller, through its
-- row security, with the search path pinned by the C code.
CREATE FUNCTION cobalt_job_status(job_id bigint) RETURNS cobalt.job_status
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'cobalt_job_status';
COMMENT ON FUNCTION cobalt_job_status(bigint) IS 'A job''s current state and outcome.';

CREATE FUNCTION cobalt_wait(job_id bigint, timeout interval DEFAULT '2 min')
    RETURNS cobalt.job_status
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'cobalt_wait';
COMMENT ON FUNCTION cobalt_wait(bigint, interval) IS
    'Wait until the job reaches succeeded, failed, timed_out, unknown or cancelled, or until the timeout; return its status.';

/*
 * The operator functions.  Each public one (cobalt_recheck, cobalt_retry,
 * cobalt_cancel, cobalt_resolve) is C: it checks that the calling role may
 * see the job through cobalt.jobs' row security, then runs the internal
 * function below as the extension's owner.  The internal functions are
 * owner-only.
 */
CREATE FUNCTION cobalt._recheck(job_id bigint) RETURNS cobalt.job_status
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j cobalt.jobs := cobalt._lock_job(job_id);
BEGIN
    IF j.state NOT IN ('timed_out', 'polling') THEN
        RAISE EXCEPTION 'cobalt job % is %, so there is nothing to check', job_id, j.state
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = CASE j.state
                      WHEN 'queued' THEN 'It has not been sent yet; the worker sends it when it is due.'
                      WHEN 'sending' THEN 'It is being sent; its answer is recorded in a moment.'
                      WHEN 'unknown' THEN 'Cobalt never confirmed it; check the EHR, then record the outcome with cobalt_resolve.'
                      ELSE 'Its outcome is already recorded.' END;
    END IF;
    -- The worker polls jobs whose next_due_at has passed: at once, here.
    UPDATE cobalt.jobs SET next_due_at = now() WHERE id = job_id;
    PERFORM cobalt._wake_at_commit();
    RETURN cobalt._status(job_id);
END
$$;
CREATE FUNCTION cobalt_recheck(job_id bigint) RETURNS cobalt.job_status
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'cobalt_recheck';
COMMENT ON FUNCTION cobalt_recheck(bigint) IS
    'Poll a timed_out (or polling) job at once, also after its late-check window.';

CREATE FUNCTION cobalt._retry(job_id bigint, force boolean, submitted_by text) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j cobalt.jobs := cobalt._lock_job(job_id);
    new_id bigint;
BEGIN
    IF force IS NULL THEN
        RAISE EXCEPTION 'cobalt_retry force must not be null'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass true or false, or leave it out.';
    END IF;
    IF j.state = 'unknown' AND NOT force THEN
        RAISE EXCEPTION 'cobalt job % is unknown: it may have reached Cobalt', job_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Sending it again could create a duplicate in the EHR.',
                  HINT = 'Check the EHR first. If the operation is not there, retry with force => true; if it is, record that with cobalt_resolve.';
    ELSIF j.state NOT IN ('failed', 'unknown') THEN
        RAISE EXCEPTION 'cobalt job % is %, and only failed jobs are retried', job_id, j.state
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = CASE j.state
                      WHEN 'timed_out' THEN 'A timeout is not a failure: the job may still finish. Check back instead with cobalt_recheck.'
                      WHEN 'polling' THEN 'Cobalt accepted it and it may still finish: wait with cobalt_wait.'
                      WHEN 'succeeded' THEN 'It succeeded; submit a new job if you want another one.'
                      WHEN 'cancelled' THEN 'It was cancelled before it was sent; submit a new job instead.'
                      ELSE 'It has not finished yet: wait with cobalt_wait.' END;
    END IF;
    SELECT id INTO new_id FROM cobalt.jobs WHERE retry_of = j.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'cobalt job % was already retried as job %', job_id, new_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Two retries of one job could both reach the EHR.',
                  HINT = format('Follow job %s instead, and retry that one if it fails.', new_id);
    END IF;
    INSERT INTO cobalt.jobs (operation, account, payload, submitted_by, retry_of, next_due_at)
    VALUES (j.operation, j.account, j.payload, _retry.submitted_by, j.id, now())
    RETURNING id INTO new_id;
    PERFORM cobalt._wake_at_commit();
    RETURN new_id;
END
$$;
CREATE FUNCTION cobalt_retry(job_id bigint, force boolean DEFAULT false) RETURNS bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'cobalt_retry';
COMMENT ON FUNCTION cobalt_retry(bigint, boolean) IS
    'Submit a failed job (or, with force, an unknown one) again as a new job linked by retry_of; returns the new id.';

CREATE FUNCTION cobalt._cancel(job_id bigint) RETURNS cobalt.job_status
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j cobalt.jobs := cobalt._lock_job(job_id);
BEGIN
    IF j.state <> 'queued' THEN
        RAISE EXCEPTION 'cobalt job % is %, and only queued jobs can be cancelled', job_id, j.state
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = CASE WHEN j.state IN ('sending', 'polling', 'timed_out')
                      THEN 'It has already been sent to Cobalt; undo it in the EHR (for an appointment, submit appointment.update with a cancelled status).'
                      WHEN j.state = 'unknown'
                      THEN 'It may already have reached Cobalt; check the EHR and record what you find with cobalt_resolve.'
                      ELSE 'Its outcome is already recorded.' END;
    END IF;
    UPDATE cobalt.jobs SET state = 'cancelled', next_due_at = NULL, finished_at = now()
    WHERE id = job_id;
    RETURN cobalt._status(job_id);
END
$$;
CREATE FUNCTION cobalt_cancel(job_id bigint) RETURNS cobalt.job_status
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'cobalt_cancel';
COMMENT ON FUNCTION cobalt_cancel(bigint) IS 'Cancel a queued job; it is never sent.';

CREATE FUNCTION cobalt._resolve(job_id bigint, state text, note text, resolved_by text)
    RETURNS cobalt.job_status
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j cobalt.jobs := cobalt._lock_job(job_id);
BEGIN
    IF state IS NULL OR state NOT IN ('succeeded', 'failed') THEN
        RAISE EXCEPTION 'cobalt_resolve state must be succeeded or failed'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Say what you found in the EHR: ''succeeded'' if the operation is there, ''failed'' if not.';
    END IF;
    IF note IS NULL OR btrim(note, E' \t\r\n') = '' THEN
        RAISE EXCEPTION 'cobalt_resolve needs a note'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Say how the outcome was checked, for example ''appointment found in the EHR by J. Smith''.';
    END IF;
    IF j.state <> 'unknown' THEN
        RAISE EXCEPTION 'cobalt job % is %, and only unknown jobs are resolved by hand', job_id, j.state
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'The worker records the outcome of every other job itself.';
    END IF;
    UPDATE cobalt.jobs AS u
       SET state = _resolve.state, next_due_at = NULL,
           finished_at = now(), resolved_by = _resolve.resolved_by, resolution_note = note
     WHERE u.id = job_id;
    PERFORM cobalt._notify_outcome(j.id, _resolve.state, j.operation, j.account);
    PERFORM cobalt._wake_at_commit();
    RETURN cobalt._status(job_id);
END
$$;
CREATE FUNCTION cobalt_resolve(job_id bigint, state text, note text) RETURNS cobalt.job_status
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'cobalt_resolve';
COMMENT ON FUNCTION cobalt_resolve(bigint, text, text) IS
    'Record the outcome of an unknown job after checking the EHR by hand.';

CREATE FUNCTION cobalt._hmac_matches(secret text, body text, signature text) RETURNS boolean
    LANGUAGE c STRICT VOLATILE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cobalt_hmac_matches';

CREATE FUNCTION cobalt._notify_outcome(job_id bigint, state text, operation text, account text)
    RETURNS void
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    -- the same text the worker sends
    SELECT pg_notify('cobalt_jobs', format('{"job_id": %s, "state": %s, "operation": %s, "account": %s}',
                                           job_id, to_json(state), to_json(operation), to_json(account)))
$$;

CREATE FUNCTION cobalt_set_webhook_secret(secret text) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF secret IS NULL OR length(secret) < 8 OR secret ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'cobalt webhook secret must be at least 8 characters without control characters'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the secret Cobalt returned when the webhook URL was registered.';
    END IF;
    INSERT INTO cobalt.webhook (singleton, secret) VALUES (true, cobalt_set_webhook_secret.secret)
        ON CONFLICT (singleton) DO UPDATE SET secret = excluded.secret, updated_at = now();
END
$$;
COMMENT ON FUNCTION cobalt_set_webhook_secret(text) IS
    'Set the secret that webhook deliveries are signed with. Statement logging records it as written: prefer cobalt_set_webhook_secret_from_file.';

CREATE FUNCTION cobalt_set_webhook_secret_from_file(secret_file text) RETURNS void
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
    SELECT @extschema@.cobalt_set_webhook_secret(cobalt._read_secret_file(secret_file));
END;
COMMENT ON FUNCTION cobalt_set_webhook_secret_from_file(text) IS
    'Set the webhook signing secret from a file the server can read.';

CREATE FUNCTION cobalt_ingest_webhook(body text, signature text, webhook_id text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    secret text;
    event jsonb;
    ev_type text;
    remote text;
    ev_data jsonb;
    j cobalt.jobs;
    seen cobalt.events;
    new_state text;
    failure text;
BEGIN
    SELECT w.secret INTO secret FROM cobalt.webhook w;
    IF secret IS NULL THEN
        RAISE EXCEPTION 'cobalt webhook secret is not set'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Call cobalt_set_webhook_secret(secret) first.';
    END IF;
    IF body IS NULL OR signature IS NULL OR NOT cobalt._hmac_matches(secret, body, signature) THEN
        RAISE EXCEPTION 'cobalt webhook signature does not match'
            USING ERRCODE = 'invalid_authorization_specification',
                  DETAIL = 'The signature must be the hex HMAC-SHA256 of the exact body with the webhook secret.',
                  HINT = 'Pass the cobalt-verification header and the body exactly as received.';
    END IF;

    IF webhook_id IS NOT NULL THEN
        SELECT * INTO seen FROM cobalt.events e WHERE e.webhook_id = cobalt_ingest_webhook.webhook_id;
        IF FOUND THEN
            RETURN seen.job_id;        -- a repeated delivery changes nothing
        END IF;
    END IF;

    BEGIN
        event := body::jsonb;
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION 'cobalt webhook body is not JSON'
            USING ERRCODE = 'invalid_text_representation',
                  HINT = 'Pass the request body exactly as received.';
    END;
    ev_type := event->>'type';
    remote := event->>'job_id';
    ev_data := event->'data';
    IF jsonb_typeof(event) <> 'object' OR ev_type IS NULL OR ev_type = '' THEN
        RAISE EXCEPTION 'cobalt webhook body is not an event'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An event is a JSON object with a "type", a "job_id" and "data".',
                  HINT = 'Pass the request body exactly as received.';
    END IF;

    -- the job it settles: the newest with that remote id
    IF remote IS NOT NULL THEN
        SELECT * INTO j FROM cobalt.jobs WHERE remote_job_id = remote
        ORDER BY id DESC LIMIT 1 FOR UPDATE;
    END IF;

    -- one row per distinct event (the same event may also arrive by polling)
    INSERT INTO cobalt.events (job_id, event_id, event_type, data, source, webhook_id, remote_job_id)
    VALUES (j.id, event->>'id', ev_type, ev_data, 'webhook', cobalt_ingest_webhook.webhook_id, remote)
    ON CONFLICT DO NOTHING;

    IF j.id IS NOT NULL AND j.state IN ('polling', 'timed_out') THEN
        new_state := CASE WHEN ev_type LIKE '%failed' THEN 'failed' ELSE 'succeeded' END;
        IF new_state = 'failed' THEN
            SELECT concat_ws('; ', nullif(ev_data->>'failure_reason', ''),
                             (SELECT string_agg(concat_ws(': ', nullif(r->>'code', ''), nullif(r->>'description', '')), '; ')
                              FROM jsonb_array_elements(CASE WHEN jsonb_typeof(ev_data->'reasons') = 'array'
                                                             THEN ev_data->'reasons' ELSE '[]' END) r))
            INTO failure;
            failure := coalesce(nullif(failure, ''), 'event ' || ev_type);
        END IF;
        UPDATE cobalt.jobs
           SET state = new_state, event_type = ev_type, result = ev_data, error = failure,
               last_error = NULL, next_due_at = NULL, finished_at = now()
         WHERE id = j.id;
        PERFORM cobalt._notify_outcome(j.id, new_state, j.operation, j.account);
        PERFORM cobalt._wake_at_commit();
    END IF;
    RETURN j.id;
END
$$;
COMMENT ON FUNCTION cobalt_ingest_webhook(text, text, text) IS
    'Verify and record a webhook delivery from Cobalt; settle the matching job as a poll would. Returns the job id, or NULL when no job matches.';

CREATE FUNCTION cobalt_worker_status(
    OUT pid integer, OUT started_at timestamptz, OUT requests_in_flight integer,
    OUT jobs_polling integer, OUT jobs_due bigint, OUT last_error text, OUT last_error_at timestamptz)
    LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'cobalt_worker_status';
COMMENT ON FUNCTION cobalt_worker_status() IS
    'The worker''s pid, start time, requests in flight, jobs polling and due now, and its last error.';

REVOKE ALL ON FUNCTION cobalt._hmac_matches(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt._notify_outcome(bigint, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_set_webhook_secret(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_ingest_webhook(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_worker_status() FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt._wake_at_commit(boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt._lock_job(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt._status(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_recheck(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_retry(bigint, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_cancel(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_resolve(bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_set_client(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_add_account(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_submit(text, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_job_status(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_wait(bigint, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt._recheck(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt._retry(bigint, boolean, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt._cancel(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt._resolve(bigint, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt._read_secret_file(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt._grant_account(text, regrole, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt._revoke_account(text, regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt._set_role_privileges(regrole, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_set_client_from_file(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_add_account_from_file(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_set_webhook_secret_from_file(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_grant_account(text, regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_revoke_account(text, regrole) FROM PUBLIC;

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
    operation   text PRIMARY KEY
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
    account      text PRIMARY KEY CHECK (account ~ '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$'),
    access_token text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON cobalt.client, cobalt.accounts FROM PUBLIC;

-- One row per submission.
CREATE TABLE cobalt.jobs (
    id             bigserial PRIMARY KEY,
    operation      text NOT NULL,
    account        text NOT NULL,
    payload        jsonb NOT NULL,
    state          text NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'sending', 'polling', 'succeeded', 'failed',
                                    'timed_out', 'unknown', 'cancelled')),
    remote_job_id  text,
    attempts       integer NOT NULL DEFAULT 0,
    http_status    integer,
    event_type     text,
    result         jsonb,
    error          text,
    last_error     text,
    attempt_errors jsonb NOT NULL DEFAULT '[]',
    submitted_by   text NOT NULL DEFAULT current_user,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz,
    accepted_at    timestamptz,
    timeout_at     timestamptz,
    finished_at    timestamptz,
    next_due_at    timestamptz
);
COMMENT ON COLUMN cobalt.jobs.next_due_at IS
    'When the worker next acts on the job: send (queued), recover (sending), give up waiting (polling), check again (timed_out); NULL once it has nothing left to do.';

-- The worker's "what is due" queries read only jobs it still acts on.
CREATE INDEX jobs_due_idx ON cobalt.jobs (next_due_at) WHERE next_due_at IS NOT NULL;
CREATE INDEX jobs_remote_job_id_idx ON cobalt.jobs (remote_job_id) WHERE remote_job_id IS NOT NULL;

-- Keep the data in pg_dump output.
SELECT pg_catalog.pg_extension_config_dump('cobalt.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('cobalt.jobs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cobalt.client', '');
SELECT pg_catalog.pg_extension_config_dump('cobalt.accounts', '');

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

CREATE FUNCTION cobalt._credentials_changed() RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'cobalt_credentials_changed';

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
    PERFORM cobalt._credentials_changed();
END
$$;
COMMENT ON FUNCTION cobalt_set_client(text, text) IS
    'Set the application''s Cobalt client_id and client_secret.';

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
    PERFORM cobalt._credentials_changed();
END
$$;
COMMENT ON FUNCTION cobalt_add_account(text, text) IS
    'Add a linked EHR account, or replace its access token.';

CREATE FUNCTION cobalt_submit(operation text, payload jsonb, account text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'cobalt_submit';
COMMENT ON FUNCTION cobalt_submit(text, jsonb, text) IS
    'Queue a Cobalt operation; it is sent when the transaction commits. Returns the job id.';

CREATE FUNCTION cobalt_job_status(job_id bigint) RETURNS cobalt.job_status
    LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'cobalt_job_status';
COMMENT ON FUNCTION cobalt_job_status(bigint) IS 'A job''s current state and outcome.';

CREATE FUNCTION cobalt_wait(job_id bigint, timeout interval DEFAULT '2 min')
    RETURNS cobalt.job_status
    LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'cobalt_wait';
COMMENT ON FUNCTION cobalt_wait(bigint, interval) IS
    'Wait until the job reaches succeeded, failed, timed_out, unknown or cancelled, or until the timeout; return its status.';

REVOKE ALL ON FUNCTION cobalt._credentials_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_set_client(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_add_account(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_submit(text, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_job_status(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION cobalt_wait(bigint, interval) FROM PUBLIC;

--
-- security: per-account grants and row security, secrets from files,
-- superuser-only settings, payload limits, search-path hijacking, and the
-- install script's hygiene.
--
\set SHOW_CONTEXT never

SELECT cobalt_add_account('sec-a', 'regress-token-sec-a');
SELECT cobalt_add_account('sec-b', 'regress-token-sec-b');
SELECT cobalt_add_account('sec-c', 'regress-token-sec-c');

CREATE ROLE regress_app_a NOLOGIN;
CREATE ROLE regress_app_b NOLOGIN;
CREATE ROLE regress_member NOLOGIN IN ROLE regress_app_a;               -- inherits
CREATE ROLE regress_noinherit NOLOGIN NOINHERIT IN ROLE regress_app_a;  -- must SET ROLE
CREATE ROLE regress_nobody NOLOGIN;

-- Row security is on and forced on the jobs and the grants.
SELECT c.oid::regclass::text AS tbl, c.relrowsecurity, c.relforcerowsecurity
FROM pg_class c WHERE c.oid IN ('cobalt.jobs'::regclass, 'cobalt.account_grants'::regclass)
ORDER BY c.oid::regclass::text COLLATE "C";
SELECT tablename, policyname, permissive, roles, cmd FROM pg_policies
WHERE schemaname = 'cobalt' ORDER BY tablename COLLATE "C", policyname COLLATE "C";

--
-- Granting: owner or superuser only, a known account, a real role.
--
SELECT cobalt_grant_account('no-such-account', 'regress_app_a');
SELECT cobalt_grant_account(NULL, 'regress_app_a');
SELECT cobalt_grant_account('sec-a', NULL);
SELECT cobalt_grant_account('sec-a', 'regress_no_such_role');
SELECT cobalt_grant_account('sec-a', 0::regrole);
SELECT count(*) AS grants FROM cobalt.account_grants;
SET ROLE regress_nobody;
SELECT cobalt_grant_account('sec-a', 'regress_nobody');
SELECT cobalt_revoke_account('sec-a', 'regress_app_a');
RESET ROLE;
-- Even given EXECUTE, a role that is not the owner cannot grant.
GRANT EXECUTE ON FUNCTION cobalt_grant_account(text, regrole) TO regress_nobody;
SET ROLE regress_nobody;
SELECT cobalt_grant_account('sec-a', 'regress_nobody');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION cobalt_grant_account(text, regrole) FROM regress_nobody;

SELECT cobalt_grant_account('sec-a', 'regress_app_a');
SELECT cobalt_grant_account('sec-a', 'regress_app_a');     -- again: no change
SELECT cobalt_grant_account('sec-b', 'regress_app_b');
SELECT cobalt_grant_account('sec-c', 'regress_app_b');
SELECT account, role, granted_by = current_user AS granted_by_me, granted_at <= now() AS granted_at
FROM cobalt.account_grants ORDER BY account COLLATE "C", role::text COLLATE "C";

-- What a grant confers, and what it does not.
CREATE FUNCTION pg_temp.privileges(r text) RETURNS TABLE (object text, allowed boolean)
LANGUAGE sql AS $$
    SELECT p.oid::regprocedure::text, has_function_privilege(r, p.oid, 'EXECUTE')
    FROM pg_proc p
    WHERE p.oid IN (SELECT objid FROM pg_depend
                    WHERE refclassid = 'pg_extension'::regclass AND classid = 'pg_proc'::regclass
                      AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'cobalt'))
    UNION ALL
    SELECT c.oid::regclass::text,
           has_table_privilege(r, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
    FROM pg_class c WHERE c.relnamespace = 'cobalt'::regnamespace AND c.relkind IN ('r', 'v')
    UNION ALL
    SELECT 'jobs: ' || p, has_table_privilege(r, 'cobalt.jobs', p)
    FROM unnest(ARRAY['INSERT', 'UPDATE', 'DELETE']) p
    UNION ALL
    SELECT 'sequence cobalt.jobs_id_seq', has_sequence_privilege(r, 'cobalt.jobs_id_seq', 'USAGE, SELECT, UPDATE')
    UNION ALL
    SELECT 'schema cobalt: CREATE', has_schema_privilege(r, 'cobalt', 'CREATE')
    UNION ALL
    SELECT 'schema cobalt: USAGE', has_schema_privilege(r, 'cobalt', 'USAGE')
$$;
SELECT object, allowed FROM pg_temp.privileges('regress_app_a') WHERE allowed ORDER BY object COLLATE "C";
SELECT count(*) AS denied FROM pg_temp.privileges('regress_app_a') WHERE NOT allowed;
-- A member inherits them; a NOINHERIT member and a stranger have none.
SELECT count(*) FILTER (WHERE allowed) AS member_allowed,
       (SELECT count(*) FILTER (WHERE allowed) FROM pg_temp.privileges('regress_noinherit')) AS noinherit_allowed,
       (SELECT count(*) FILTER (WHERE allowed) FROM pg_temp.privileges('regress_nobody')) AS nobody_allowed
FROM pg_temp.privileges('regress_member');

--
-- Submitting: only for granted accounts.  To the role, an account that
-- does not exist and one it was not granted look the same.
--
SET ROLE regress_app_a;
SELECT cobalt_submit('patient.create', '{"mrn": "a-1"}', 'sec-a') AS job_a1 \gset
-- without an account: its only one
SELECT cobalt_submit('patient.create', '{"mrn": "a-2"}') AS job_a2 \gset
SELECT cobalt_submit('patient.create', '{"mrn": "a-x"}', 'sec-b');
SELECT cobalt_submit('patient.create', '{"mrn": "a-x"}', 'no-such-account');
RESET ROLE;
SET ROLE regress_app_b;
SELECT cobalt_submit('patient.create', '{"mrn": "b-1"}', 'sec-b') AS job_b1 \gset
SELECT cobalt_submit('patient.create', '{"mrn": "b-x"}');                 -- two accounts
SELECT cobalt_submit('patient.create', '{"mrn": "b-x"}', 'sec-a');
RESET ROLE;
SET ROLE regress_member;
SELECT cobalt_submit('task.create', '{"title": "by a member"}', 'sec-a') AS job_member \gset
RESET ROLE;
SET ROLE regress_noinherit;
SELECT cobalt_submit('task.create', '{"title": "noinherit"}', 'sec-a');
SET ROLE regress_app_a;     -- a NOINHERIT member may still SET ROLE
SELECT cobalt_submit('task.create', '{"title": "after SET ROLE"}', 'sec-a') AS job_setrole \gset
RESET ROLE;
SET ROLE regress_nobody;
SELECT cobalt_submit('task.create', '{"title": "nobody"}', 'sec-a');
RESET ROLE;

-- Each job records the role that submitted it.
SELECT id = :job_a1 AS a1, id = :job_a2 AS a2, id = :job_b1 AS b1, id = :job_member AS member,
       id = :job_setrole AS setrole, account, submitted_by
FROM cobalt.jobs WHERE account LIKE 'sec-%' ORDER BY id;

--
-- Reading: through the functions and through cobalt.jobs, only the jobs
-- of granted accounts.  Another account's job does not exist for the role.
--
SET ROLE regress_app_a;
SELECT account, payload->>'mrn' AS mrn, payload->>'title' AS title, submitted_by
FROM cobalt.jobs ORDER BY id;
SELECT count(*) AS jobs_of_other_accounts FROM cobalt.jobs WHERE account <> 'sec-a';
SELECT account, role FROM cobalt.account_grants ORDER BY account COLLATE "C";
SELECT state, account FROM cobalt_job_status(:job_a1);
SELECT state, account FROM cobalt_wait(:job_a2, '0');
SELECT cobalt_job_status(:job_b1);
SELECT cobalt_wait(:job_b1, '0');
SELECT cobalt_recheck(:job_b1);
SELECT cobalt_retry(:job_b1);
SELECT cobalt_cancel(:job_b1);
SELECT cobalt_job_status(9223372036854775807);
-- its own jobs: the operator functions work as for the owner
SELECT state FROM cobalt_cancel(:job_a2);
SELECT cobalt_recheck(:job_a1);
SELECT cobalt_retry(:job_a1);
-- nothing else: writing, the other tables, administration
UPDATE cobalt.jobs SET state = 'succeeded' WHERE id = :job_a1;
DELETE FROM cobalt.jobs WHERE id = :job_a1;
INSERT INTO cobalt.jobs (operation, account, payload) VALUES ('patient.create', 'sec-b', '{}');
SELECT count(*) FROM cobalt.accounts;
SELECT count(*) FROM cobalt.client;
SELECT count(*) FROM cobalt.events;
SELECT count(*) FROM cobalt.webhook;
SELECT count(*) FROM cobalt.operations;
SELECT count(*) FROM cobalt.job_stats;
SELECT cobalt_resolve(:job_a1, 'failed', 'checked');
SELECT cobalt_worker_status();
SELECT cobalt_set_client('x', 'y');
SELECT cobalt_add_account('sec-a', 'stolen');
SELECT cobalt_ingest_webhook('{}', 'x');
SELECT cobalt_revoke_account('sec-b', 'regress_app_b');
SELECT cobalt._lock_job(:job_b1);
SELECT cobalt._cancel(:job_b1);
SELECT cobalt._status(:job_b1);
SELECT cobalt._read_secret_file('postgresql.conf');
RESET ROLE;

-- The other role sees its own two accounts' jobs, the member the first's.
SET ROLE regress_app_b;
SELECT account, payload->>'mrn' AS mrn FROM cobalt.jobs ORDER BY id;
SELECT state FROM cobalt_job_status(:job_b1);
SELECT cobalt_job_status(:job_a1);
RESET ROLE;
SET ROLE regress_member;
SELECT count(*) AS visible, count(*) FILTER (WHERE account = 'sec-a') AS of_sec_a FROM cobalt.jobs;
SELECT state FROM cobalt_job_status(:job_member);
RESET ROLE;
SET ROLE regress_noinherit;
SELECT cobalt_job_status(:job_a1);
SELECT count(*) FROM cobalt.jobs;
RESET ROLE;
SET ROLE regress_nobody;
SELECT cobalt_job_status(:job_a1);
SELECT count(*) FROM cobalt.jobs;
RESET ROLE;

-- row_security = off does not bypass the policy: it makes the query fail.
SET ROLE regress_app_a;
SET row_security = off;
SELECT count(*) FROM cobalt.jobs;
RESET row_security;
RESET ROLE;

-- The owner sees every job.
SELECT count(*) AS all_sec_jobs FROM cobalt.jobs WHERE account LIKE 'sec-%';

-- A role given EXECUTE on cobalt_resolve still acts only on jobs it may see.
GRANT EXECUTE ON FUNCTION cobalt_resolve(bigint, text, text) TO regress_app_a;
SET ROLE regress_app_a;
SELECT cobalt_resolve(:job_b1, 'failed', 'checked');
SELECT cobalt_resolve(:job_a1, 'failed', 'checked');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION cobalt_resolve(bigint, text, text) FROM regress_app_a;

--
-- The functions' statements run with the search path pinned: same-named
-- functions and operators early on the role's search path are never called.
--
CREATE SCHEMA regress_hostile;
GRANT USAGE ON SCHEMA regress_hostile TO PUBLIC;
CREATE FUNCTION regress_hostile.hostile_bool(text, text) RETURNS boolean
    LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hostile operator called'; END$$;
CREATE FUNCTION regress_hostile.hostile_int8(bigint, bigint) RETURNS boolean
    LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hostile operator called'; END$$;
CREATE OPERATOR regress_hostile.= (LEFTARG = text, RIGHTARG = text, PROCEDURE = regress_hostile.hostile_bool);
CREATE OPERATOR regress_hostile.= (LEFTARG = bigint, RIGHTARG = bigint, PROCEDURE = regress_hostile.hostile_int8);
CREATE OPERATOR regress_hostile.<> (LEFTARG = text, RIGHTARG = text, PROCEDURE = regress_hostile.hostile_bool);
CREATE FUNCTION regress_hostile.now() RETURNS timestamptz
    LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hostile now() called'; END$$;
CREATE FUNCTION regress_hostile.pg_has_role(oid, oid, text) RETURNS boolean
    LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hostile pg_has_role called'; END$$;
CREATE FUNCTION regress_hostile.pg_has_role(oid, text) RETURNS boolean
    LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hostile pg_has_role called'; END$$;
CREATE FUNCTION regress_hostile.format(text, VARIADIC text[]) RETURNS text
    LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hostile format called'; END$$;
CREATE FUNCTION regress_hostile.pg_notify(text, text) RETURNS void
    LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hostile pg_notify called'; END$$;
CREATE FUNCTION regress_hostile.jsonb_build_object(VARIADIC text[]) RETURNS jsonb
    LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hostile jsonb_build_object called'; END$$;
SET ROLE regress_app_a;
SET search_path = regress_hostile, public, pg_catalog;
SELECT 'x'::text = 'y'::text AS hostile_operator_in_effect;
SELECT cobalt_submit('task.create', '{"title": "hostile path"}', 'sec-a') AS job_hostile \gset
SELECT cobalt_submit('task.create', '{"title": "hostile path"}', 'sec-b');
SELECT state, account FROM cobalt_job_status(:job_hostile);
SELECT state FROM cobalt_wait(:job_hostile, '0');
SELECT count(*) AS visible FROM cobalt.jobs;
SELECT state FROM cobalt_cancel(:job_hostile);
SELECT cobalt_retry(:job_hostile);
SELECT cobalt_recheck(:job_hostile);
SELECT cobalt_job_status(:job_b1);
RESET search_path;
RESET ROLE;
SET search_path = regress_hostile, public, pg_catalog;
SELECT cobalt_grant_account('sec-c', 'regress_nobody');
SELECT cobalt_revoke_account('sec-c', 'regress_nobody');
SELECT state FROM cobalt_job_status(:job_a1);
SELECT cobalt_set_client('regress-client-id', 'regress-client-secret');
RESET search_path;
SELECT state, submitted_by FROM cobalt.jobs WHERE id = :job_hostile;
DROP SCHEMA regress_hostile CASCADE;

-- Every SECURITY DEFINER function pins its search path.
SELECT p.oid::regprocedure::text AS function, p.proconfig
FROM pg_proc p
WHERE p.prosecdef
  AND p.oid IN (SELECT objid FROM pg_depend
                WHERE refclassid = 'pg_extension'::regclass AND classid = 'pg_proc'::regclass
                  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'cobalt'))
ORDER BY p.oid::regprocedure::text COLLATE "C";

--
-- Revoking: the role loses the account's jobs at once; with its last
-- account, the functions and SELECT too.  A granted role cannot be
-- dropped until then.
--
DROP ROLE regress_app_b;
SELECT cobalt_revoke_account('sec-b', 'regress_app_b');
SELECT cobalt_revoke_account('sec-b', 'regress_app_b');     -- not granted any more
SET ROLE regress_app_b;
SELECT account, payload->>'mrn' AS mrn FROM cobalt.jobs ORDER BY id;
SELECT cobalt_job_status(:job_b1);
SELECT cobalt_submit('patient.create', '{"mrn": "b-2"}', 'sec-b');
SELECT cobalt_submit('patient.create', '{"mrn": "b-2"}') > 0 AS submitted_for_sec_c;
RESET ROLE;
SELECT cobalt_revoke_account('sec-c', 'regress_app_b');
SELECT count(*) FILTER (WHERE allowed) AS app_b_allowed FROM pg_temp.privileges('regress_app_b');
SET ROLE regress_app_b;
SELECT cobalt_submit('patient.create', '{"mrn": "b-3"}');
SELECT count(*) FROM cobalt.jobs;
RESET ROLE;
DROP ROLE regress_app_b;
SELECT cobalt_revoke_account(NULL, 'regress_app_a');

-- Grants follow their account: deleting the account deletes them.
SELECT cobalt_grant_account('sec-c', 'regress_app_a');
DELETE FROM cobalt.accounts WHERE account = 'sec-c';
SELECT account, role FROM cobalt.account_grants ORDER BY account COLLATE "C";

-- A grant whose role was dropped (DROP OWNED took its privileges) is
-- forgotten at the next grant.
CREATE ROLE regress_doomed NOLOGIN;
SELECT cobalt_grant_account('sec-a', 'regress_doomed');
DROP OWNED BY regress_doomed;
DROP ROLE regress_doomed;
SELECT count(*) AS dangling FROM cobalt.account_grants g
WHERE NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = g.role);
SELECT cobalt_grant_account('sec-a', 'regress_member');
SELECT count(*) AS dangling FROM cobalt.account_grants g
WHERE NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = g.role);
SELECT cobalt_revoke_account('sec-a', 'regress_member');

--
-- Secrets from files: nothing in the statement text.  A relative name is
-- taken from the data directory.
--
SELECT current_setting('data_directory') || '/regress_cobalt_secret' AS secret_path \gset
COPY (SELECT 'regress-file-secret') TO :'secret_path';
SELECT cobalt_set_client_from_file('regress-file-id', :'secret_path');
SELECT client_id, client_secret FROM cobalt.client;
COPY (SELECT 'regress-file-token') TO :'secret_path';
SELECT cobalt_add_account_from_file('sec-a', 'regress_cobalt_secret');
SELECT access_token FROM cobalt.accounts WHERE account = 'sec-a';
COPY (SELECT 'regress-file-webhook-secret') TO :'secret_path';
SELECT cobalt_set_webhook_secret_from_file('regress_cobalt_secret');
SELECT secret FROM cobalt.webhook;
-- A file with Windows line ends, and one without a line break at all.
SELECT format('printf ''regress-crlf-token\r\n'' > %s', :'secret_path') AS write_crlf \gset
COPY (SELECT 1) TO PROGRAM :'write_crlf';
SELECT cobalt_add_account_from_file('sec-a', 'regress_cobalt_secret');
SELECT access_token FROM cobalt.accounts WHERE account = 'sec-a';
-- Bad files: refused with the file's name, never its content.
SELECT cobalt_add_account_from_file('sec-a', 'regress_no_such_file');
SELECT cobalt_add_account_from_file('sec-a', '.');
SELECT cobalt_add_account_from_file('sec-a', '');
SELECT cobalt_add_account_from_file('sec-a', NULL);
COPY (SELECT repeat('regress-LONG-secret', 300)) TO :'secret_path';
SELECT cobalt_add_account_from_file('sec-a', 'regress_cobalt_secret');
COPY (SELECT 'regress-BINARY-secret') TO :'secret_path' (FORMAT binary);
SELECT cobalt_add_account_from_file('sec-a', 'regress_cobalt_secret');
COPY (SELECT E'regress-CTRL\x01-secret') TO :'secret_path';
SELECT cobalt_add_account_from_file('sec-a', 'regress_cobalt_secret');
COPY (SELECT '') TO :'secret_path';
SELECT cobalt_add_account_from_file('sec-a', 'regress_cobalt_secret');
SELECT access_token FROM cobalt.accounts WHERE account = 'sec-a';
-- Only roles that may read server files may name one.
GRANT EXECUTE ON FUNCTION cobalt_add_account_from_file(text, text) TO regress_nobody;
SET ROLE regress_nobody;
SELECT cobalt_add_account_from_file('sec-a', 'regress_cobalt_secret');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION cobalt_add_account_from_file(text, text) FROM regress_nobody;
SELECT cobalt_set_client('regress-client-id', 'regress-client-secret');

-- No setting holds a secret, and none turns TLS verification off: these
-- are all of cobalt's settings.
SELECT name, context FROM pg_settings WHERE name LIKE 'cobalt.%' ORDER BY name COLLATE "C";
SELECT count(*) AS settings_holding_secrets FROM pg_settings
WHERE setting ~ 'regress-(client-secret|token|file)';
-- The ones that point the worker somewhere or choose whom it trusts are
-- the superuser's; so is the payload limit.
SET ROLE regress_nobody;
SHOW cobalt.api_url;
SHOW cobalt.ca_file;
SHOW cobalt.database_name;
SET cobalt.api_url = 'http://127.0.0.1:1/v1';
SET cobalt.ca_file = '/tmp/evil-ca.pem';
SET cobalt.max_payload_size = '1GB';
SHOW cobalt.max_payload_size;
RESET ROLE;
SET cobalt.ca_file = '/tmp/evil-ca.pem';
ALTER SYSTEM RESET cobalt.ca_file;

--
-- Hostile payloads: refused with a clear ERROR, nothing stored.
--
SELECT count(*) AS jobs_before FROM cobalt.jobs \gset
-- over cobalt.max_payload_size (32 MB by default), documents included
SHOW cobalt.max_payload_size;
SELECT cobalt_submit('note.create', jsonb_build_object('appointment_id', 'x', 'note', repeat('n', 33 * 1024 * 1024)), 'sec-a');
SET cobalt.max_payload_size = '4kB';
SELECT cobalt_submit('note.create', jsonb_build_object('appointment_id', 'x', 'note', repeat('n', 5000)), 'sec-a');
SELECT cobalt_submit('document.upload', jsonb_build_object('patient_mrn', '1', 'filename', 'a.pdf',
                     'document', encode(convert_to(repeat('x', 4000), 'UTF8'), 'base64')), 'sec-a');
SELECT cobalt_submit('note.create', jsonb_build_object('appointment_id', 'x', 'note', repeat('n', 3000)), 'sec-a') > 0 AS under_the_limit;
SET cobalt.max_payload_size = 100;
RESET cobalt.max_payload_size;
-- nested deeper than 32 levels
SELECT cobalt_submit('note.create', (repeat('{"a":', 32) || '1' || repeat('}', 32))::jsonb, 'sec-a') > 0 AS depth_32_accepted;
SELECT cobalt_submit('note.create', (repeat('{"a":', 33) || '1' || repeat('}', 33))::jsonb, 'sec-a');
SELECT cobalt_submit('note.create', ('{"a":' || repeat('[', 33) || repeat(']', 33) || '}')::jsonb, 'sec-a');
SELECT cobalt_submit('note.create', (repeat('[', 5000) || repeat(']', 5000))::jsonb, 'sec-a');
-- NUL bytes and invalid UTF-8 never get in: PostgreSQL refuses them first
SELECT cobalt_submit('note.create', '{"note": "a\u0000b"}', 'sec-a');
SELECT cobalt_submit(E'note\x00.create', '{}', 'sec-a');
SELECT cobalt_submit('note.create', jsonb_build_object('note', convert_from('\xc328'::bytea, 'UTF8')), 'sec-a');
SELECT cobalt_submit('note.create', '{"note": "x"}', convert_from('\xff'::bytea, 'UTF8'));
-- absurd waits and job ids
SELECT cobalt_wait(:job_a1, '-1 second');
SELECT cobalt_wait(:job_a1, '8 days');
SELECT cobalt_wait(:job_a1, '1000000 years');
SELECT cobalt_wait(:job_a1, NULL);
SELECT cobalt_job_status(-1);
SELECT cobalt_job_status(0);
SELECT cobalt_cancel(NULL);
SELECT count(*) - :jobs_before AS jobs_added FROM cobalt.jobs;

--
-- The install script replaces nothing that exists, and names
-- @extschema@ only outside quoted strings.
--
SELECT pg_read_file((SELECT setting FROM pg_config WHERE name = 'SHAREDIR') || '/extension/cobalt--1.0.sql') AS script \gset
SELECT :'script' !~* 'create\s+or\s+replace' AS no_or_replace,
       (length(:'script') - length(replace(:'script', '@extschema@', ''))) / length('@extschema@') AS extschema_uses,
       (SELECT (length(s) - length(replace(s, '@extschema@', ''))) / length('@extschema@')
        FROM (SELECT regexp_replace(regexp_replace(regexp_replace(regexp_replace(:'script',
                  '\$\$.*?\$\$', '', 'g'), '/\*.*?\*/', '', 'g'), '--[^\n]*', '', 'g'),
                  '''(''''|[^''])*''', '', 'g') AS s) x) AS extschema_uses_outside_strings;
BEGIN;
CREATE TABLE pg_temp.saved AS SELECT * FROM cobalt.jobs WHERE false;
DROP EXTENSION cobalt;
CREATE FUNCTION public.cobalt_submit(text, jsonb, text) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint';
SAVEPOINT s;
CREATE EXTENSION cobalt;
ROLLBACK TO s;
DROP FUNCTION public.cobalt_submit(text, jsonb, text);
CREATE SCHEMA cobalt;
SAVEPOINT s;
CREATE EXTENSION cobalt;
ROLLBACK;
SELECT extversion FROM pg_extension WHERE extname = 'cobalt';

-- Clean up.
DELETE FROM cobalt.jobs WHERE account LIKE 'sec-%';
SELECT cobalt_revoke_account('sec-a', 'regress_app_a');
DELETE FROM cobalt.accounts WHERE account LIKE 'sec-%';
DROP ROLE regress_app_a, regress_member, regress_noinherit, regress_nobody;

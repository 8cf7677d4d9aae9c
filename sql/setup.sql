--
-- setup: install the extension and check what the install script creates.
--
-- The tests run in this order in one database:
--   setup, operations, submit, status, admin.
-- No worker serves this database (cobalt.database_name points elsewhere),
-- so jobs stay where the tests put them.
--
CREATE EXTENSION cobalt;

SELECT extname, extversion, extnamespace::regnamespace AS schema, extrelocatable
FROM pg_extension WHERE extname = 'cobalt';

-- The tables live in schema cobalt, and all are LOGGED (relpersistence 'p'):
-- queued jobs and credentials must survive a crash.
SELECT c.relname, c.relkind, c.relpersistence
FROM pg_class c
WHERE c.relnamespace = 'cobalt'::regnamespace AND c.relkind IN ('r', 'S')
ORDER BY c.relname;

SELECT to_regclass('cobalt.jobs') IS NOT NULL AS jobs,
       to_regclass('cobalt.operations') IS NOT NULL AS operations,
       to_regclass('cobalt.accounts') IS NOT NULL AS accounts,
       to_regclass('cobalt.client') IS NOT NULL AS client;

-- The worker's "what is due" index is partial: it holds only jobs the
-- worker still has something to do for.
SELECT i.indisunique, i.indpred IS NOT NULL AS is_partial,
       pg_get_expr(i.indpred, i.indrelid) AS predicate
FROM pg_index i WHERE i.indexrelid = 'cobalt.jobs_due_idx'::regclass;
SELECT pg_get_indexdef('cobalt.jobs_due_idx'::regclass);

-- The seeded operations.
SELECT operation, method, path, timeout, body_format, file_field
FROM cobalt.operations ORDER BY operation COLLATE "C";
SELECT count(*) AS seeded_operations FROM cobalt.operations;

-- No jobs, no credentials, no accounts yet.
SELECT (SELECT count(*) FROM cobalt.jobs) AS jobs,
       (SELECT count(*) FROM cobalt.client) AS client,
       (SELECT count(*) FROM cobalt.accounts) AS accounts;

-- The functions are in the extension's schema (public), so they are
-- callable unqualified; the internal helper stays in schema cobalt.
SELECT p.oid::regprocedure AS function, p.pronamespace::regnamespace AS schema,
       p.prosecdef AS security_definer,
       array_to_string(p.proconfig, ', ') AS settings
FROM pg_proc p
WHERE p.oid IN (SELECT objid FROM pg_depend
                WHERE refclassid = 'pg_extension'::regclass
                  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'cobalt')
                  AND classid = 'pg_proc'::regclass)
ORDER BY p.proname;

-- Nothing is granted to PUBLIC: no PUBLIC entry in the effective ACL of
-- any relation, function or the schema (a NULL ACL means the default one,
-- which for functions includes EXECUTE for PUBLIC).
SELECT count(*) AS public_grants_on_relations
FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault(
        (CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::"char", c.relowner))) a
WHERE c.relnamespace = 'cobalt'::regnamespace AND a.grantee = 0;
SELECT count(*) AS public_grants_on_functions
FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
WHERE p.oid IN (SELECT objid FROM pg_depend
                WHERE refclassid = 'pg_extension'::regclass
                  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'cobalt')
                  AND classid = 'pg_proc'::regclass)
  AND a.grantee = 0;
SELECT count(*) AS public_grants_on_schema
FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
WHERE n.nspname = 'cobalt' AND a.grantee = 0;

-- A fresh role holds no privilege on any of it.
CREATE ROLE regress_cobalt_nobody NOLOGIN;

SELECT t AS tbl,
       has_table_privilege('regress_cobalt_nobody', t,
                           'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') AS any_privilege
FROM (SELECT c.oid::regclass::text AS t FROM pg_class c
      WHERE c.relnamespace = 'cobalt'::regnamespace AND c.relkind IN ('r', 'v')) AS rels
ORDER BY t COLLATE "C";
SELECT has_sequence_privilege('regress_cobalt_nobody', 'cobalt.jobs_id_seq',
                              'USAGE, SELECT, UPDATE') AS sequence_privilege;
SELECT has_schema_privilege('regress_cobalt_nobody', 'cobalt', 'USAGE, CREATE') AS schema_privilege;
-- every function of the extension
SELECT count(*) AS functions,
       count(*) FILTER (WHERE has_function_privilege('regress_cobalt_nobody', p.oid, 'EXECUTE')) AS executable
FROM pg_proc p
WHERE p.oid IN (SELECT objid FROM pg_depend
                WHERE refclassid = 'pg_extension'::regclass
                  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'cobalt')
                  AND classid = 'pg_proc'::regclass);

SET ROLE regress_cobalt_nobody;
SELECT cobalt_submit('patient.create', '{"mrn": "1234"}');
SELECT cobalt_job_status(1);
SELECT cobalt_wait(1, '0');
SELECT cobalt_set_client('id', 'secret');
SELECT cobalt_add_account('clinic-a', 'token');
SELECT count(*) FROM cobalt.jobs;
SELECT count(*) FROM cobalt.client;
RESET ROLE;

DROP ROLE regress_cobalt_nobody;

-- The functions are callable unqualified: these errors come from the
-- extension's own argument checks.
SELECT cobalt_job_status(NULL);
SELECT cobalt_wait(NULL);
SELECT cobalt_submit(NULL, '{}');

-- A submit before cobalt_set_client was ever called is refused and
-- inserts nothing.
SELECT cobalt_submit('patient.create', '{"mrn": "1234"}');
SELECT cobalt_submit('patient.create', '{"mrn": "1234"}', 'clinic-a');
SELECT count(*) AS jobs FROM cobalt.jobs;

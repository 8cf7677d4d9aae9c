--
-- submit: cobalt_submit queues a job, or refuses bad input with an ERROR
-- (and a hint) and inserts nothing.
--
-- Client credentials and one account, clinic-a, were set in "operations".
SELECT account FROM cobalt.accounts ORDER BY account COLLATE "C";
SELECT count(*) AS jobs_before FROM cobalt.jobs \gset

--
-- Bad operation
--
SELECT cobalt_submit('patient.delete', '{"mrn": "1234"}');
SELECT cobalt_submit('Patient.Create', '{"mrn": "1234"}');
SELECT cobalt_submit(NULL, '{"mrn": "1234"}');
SELECT cobalt_submit('', '{"mrn": "1234"}');

--
-- Bad payload
--
SELECT cobalt_submit('patient.create', NULL);
-- not an object
SELECT cobalt_submit('patient.create', '[{"mrn": "1234"}]');
SELECT cobalt_submit('patient.create', '[]');
SELECT cobalt_submit('patient.create', '"1234"');
SELECT cobalt_submit('patient.create', '1234');
SELECT cobalt_submit('patient.create', 'true');
SELECT cobalt_submit('patient.create', 'null'::jsonb);
SELECT cobalt_submit('patient.create', to_jsonb('{"mrn": "1234"}'::text));

-- appointment.update (path /appointments/{id}) needs "id": a non-empty
-- string or a number.
SELECT cobalt_submit('appointment.update', '{"status": "cancelled"}');
SELECT cobalt_submit('appointment.update', '{"ID": 42, "status": "cancelled"}');
SELECT cobalt_submit('appointment.update', '{"id": {"value": 42}, "status": "cancelled"}');
SELECT cobalt_submit('appointment.update', '{"id": [42], "status": "cancelled"}');
SELECT cobalt_submit('appointment.update', '{"id": "", "status": "cancelled"}');
SELECT cobalt_submit('appointment.update', '{"id": null, "status": "cancelled"}');
SELECT cobalt_submit('appointment.update', '{"id": true, "status": "cancelled"}');
SELECT cobalt_submit('appointment.update', '{"status": {"id": 42}}');
-- insurance.create (path /patients/{patient_mrn}/insurances) needs "patient_mrn".
SELECT cobalt_submit('insurance.create', '{"mrn": "1234", "payer": "Acme"}');
SELECT cobalt_submit('insurance.create', '{"patient_mrn": {}, "payer": "Acme"}');
SELECT cobalt_submit('insurance.create', '{"patient_mrn": "", "payer": "Acme"}');

-- document.upload needs "document" (the file in standard base64), a
-- "filename", and at most a string "content_type".
SELECT cobalt_submit('document.upload', '{"filename": "scan.pdf", "mrn": "1234"}');
SELECT cobalt_submit('document.upload', '{"document": "", "filename": "scan.pdf"}');
SELECT cobalt_submit('document.upload', '{"document": 12345, "filename": "scan.pdf"}');
SELECT cobalt_submit('document.upload', '{"document": {"base64": "aGVsbG8="}, "filename": "scan.pdf"}');
SELECT cobalt_submit('document.upload', '{"document": "not base64!", "filename": "scan.pdf"}');
SELECT cobalt_submit('document.upload', '{"document": "aGVsbG8", "filename": "scan.pdf"}');
SELECT cobalt_submit('document.upload', '{"document": "aGVs=G8=", "filename": "scan.pdf"}');
SELECT cobalt_submit('document.upload', '{"document": "====", "filename": "scan.pdf"}');
SELECT cobalt_submit('document.upload', '{"document": "aGVsbG8=", "mrn": "1234"}');
SELECT cobalt_submit('document.upload', '{"document": "aGVsbG8=", "filename": ""}');
SELECT cobalt_submit('document.upload', '{"document": "aGVsbG8=", "filename": 7}');
SELECT cobalt_submit('document.upload', '{"document": "aGVsbG8=", "filename": "scan.pdf", "content_type": 7}');
SELECT cobalt_submit('document.upload', '{"document": "aGVsbG8=", "filename": "scan.pdf", "content_type": null}');
SELECT cobalt_submit('document.upload', '{"document": "aGVsbG8=", "filename": "scan.pdf", "content_type": ""}');
SELECT cobalt_submit('document.upload', '{"document": "aGVsbG8=", "filename": "scan.pdf", "content_type": ["application/pdf"]}');

--
-- Bad account
--
SELECT cobalt_submit('patient.create', '{"mrn": "1234"}', 'clinic-z');
SELECT cobalt_submit('patient.create', '{"mrn": "1234"}', 'Clinic-A');
SELECT cobalt_submit('patient.create', '{"mrn": "1234"}', '');

-- Nothing was inserted by any of the above.
SELECT count(*) - :jobs_before AS jobs_added FROM cobalt.jobs;

--
-- Successes
--
-- With exactly one account, the account may be left out ...
SELECT cobalt_submit('patient.create', '{"mrn": "1234"}') AS job_implicit \gset
SELECT :job_implicit > 0 AS submitted;
-- ... or given, by name or as NULL.
SELECT cobalt_submit('patient.create', '{"mrn": "1235"}', 'clinic-a') AS job_explicit \gset
SELECT :job_explicit > :job_implicit AS submitted;
SELECT cobalt_submit('patient.create', '{"mrn": "1236"}', account => NULL) > 0 AS submitted;
SELECT cobalt_submit(operation => 'patient.create', payload => '{"mrn": "1237"}', account => 'clinic-a') > 0 AS submitted;
SELECT id = :job_implicit AS implicit, id = :job_explicit AS explicit, operation, account, payload
FROM cobalt.jobs WHERE id IN (:job_implicit, :job_explicit) ORDER BY id;

-- Placeholder fields: a string or a number.
SELECT cobalt_submit('appointment.update', '{"id": 42, "status": "cancelled"}') > 0 AS submitted;
SELECT cobalt_submit('appointment.update', '{"id": "apt-42/7", "status": "cancelled"}') > 0 AS submitted;
SELECT cobalt_submit('insurance.create', '{"patient_mrn": "1234", "payer": "Acme", "member_id": 99}') > 0 AS submitted;

-- Documents, with and without a content_type.
SELECT cobalt_submit('document.upload',
                     jsonb_build_object('document', encode('%PDF-1.4 tiny', 'base64'),
                                        'filename', 'scan.pdf',
                                        'content_type', 'application/pdf',
                                        'mrn', '1234')) > 0 AS submitted;
SELECT cobalt_submit('document.upload', '{"document": "AA==", "filename": "zero.bin"}') > 0 AS submitted;
-- encode(..., 'base64') breaks lines every 76 characters: line breaks are ignored
SELECT position(E'\n' IN encode(convert_to(repeat('x', 200), 'UTF8'), 'base64')) > 0 AS has_line_breaks;
SELECT cobalt_submit('document.upload',
                     jsonb_build_object('document', encode(convert_to(repeat('x', 200), 'UTF8'), 'base64'),
                                        'filename', 'long.txt')) > 0 AS submitted;

-- Every placeholder of a path is checked, however many there are.
INSERT INTO cobalt.operations (operation, method, path, timeout)
VALUES ('many.update', 'PATCH', '/a/{p1}/{p2}/{p3}/{p4}/{p5}/{p6}/{p7}/{p8}/{p9}', '1 min');
SELECT cobalt_submit('many.update', '{"p1":1,"p2":2,"p3":3,"p4":4,"p5":5,"p6":6,"p7":7,"p8":8}');
SELECT cobalt_submit('many.update', '{"p1":1,"p2":2,"p3":3,"p4":4,"p5":5,"p6":6,"p7":7,"p8":8,"p9":9}') > 0 AS submitted;
DELETE FROM cobalt.jobs WHERE operation = 'many.update';
DELETE FROM cobalt.operations WHERE operation = 'many.update';

-- The stored row: the payload is kept exactly as given, unknown fields
-- and every digit of big numbers included.
SELECT cobalt_submit('note.create',
  '{"mrn": "1234", "text": "Patient called: \"pain 7/10\"\nfollow-up ✓",
    "amount": 12345678901234567890.123, "tiny": 1e-30, "big_int": 98765432109876543210,
    "custom_unknown_field": {"nested": [1, 2.50, null, true, "x"]}, "empty": {}}') AS job \gset
SELECT operation, account, state, attempts, next_due_at IS NOT NULL AS due,
       next_due_at <= now() AS due_now,
       submitted_by = current_user AS submitted_by_me,
       remote_job_id, http_status, event_type, result, error, last_error, attempt_errors,
       created_at IS NOT NULL AS created, sent_at, accepted_at, timeout_at, finished_at
FROM cobalt.jobs WHERE id = :job;
SELECT payload FROM cobalt.jobs WHERE id = :job;
SELECT payload = '{"mrn": "1234", "text": "Patient called: \"pain 7/10\"\nfollow-up ✓",
    "amount": 12345678901234567890.123, "tiny": 1e-30, "big_int": 98765432109876543210,
    "custom_unknown_field": {"nested": [1, 2.50, null, true, "x"]}, "empty": {}}'::jsonb AS same_payload,
       payload->>'amount' AS amount, payload->>'big_int' AS big_int,
       payload->'custom_unknown_field' AS custom
FROM cobalt.jobs WHERE id = :job;

-- EXECUTE alone is not enough: a role submits only for accounts granted
-- to it.  submitted_by is the calling role, not the extension's owner the
-- row is written as.  (The rules in full: the security test.)
CREATE ROLE regress_cobalt_app NOLOGIN;
GRANT EXECUTE ON FUNCTION cobalt_submit(text, jsonb, text) TO regress_cobalt_app;
SET ROLE regress_cobalt_app;
SELECT cobalt_submit('task.create', '{"title": "call back"}');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION cobalt_submit(text, jsonb, text) FROM regress_cobalt_app;
SELECT cobalt_grant_account('clinic-a', 'regress_cobalt_app');
SET ROLE regress_cobalt_app;
SELECT cobalt_submit('task.create', '{"title": "call back"}') AS app_job \gset
SELECT operation, account, submitted_by, state FROM cobalt.jobs WHERE id = :app_job;
RESET ROLE;
SELECT cobalt_revoke_account('clinic-a', 'regress_cobalt_app');
DROP ROLE regress_cobalt_app;

--
-- Several accounts: the account must then be given.
--
SELECT cobalt_add_account('clinic-b', 'token-b');
SELECT count(*) AS jobs_before FROM cobalt.jobs \gset
SELECT cobalt_submit('patient.create', '{"mrn": "1234"}');
SELECT cobalt_submit('patient.create', '{"mrn": "1234"}', NULL);
SELECT cobalt_submit('patient.create', '{"mrn": "1234"}', 'clinic-c');
SELECT count(*) - :jobs_before AS jobs_added FROM cobalt.jobs;
SELECT cobalt_submit('patient.create', '{"mrn": "2001"}', 'clinic-b') AS job_b \gset
SELECT cobalt_submit('patient.create', '{"mrn": "2002"}', 'clinic-a') AS job_a \gset
SELECT id = :job_b AS is_job_b, account, payload FROM cobalt.jobs
WHERE id IN (:job_a, :job_b) ORDER BY account COLLATE "C";

--
-- No account at all, no client credentials: checked in transactions that
-- are rolled back.
--
BEGIN;
DELETE FROM cobalt.accounts;
SELECT count(*) AS jobs_before FROM cobalt.jobs \gset
SAVEPOINT s;
SELECT cobalt_submit('patient.create', '{"mrn": "1234"}');
ROLLBACK TO s;
SELECT cobalt_submit('patient.create', '{"mrn": "1234"}', 'clinic-a');
ROLLBACK TO s;
SELECT count(*) - :jobs_before AS jobs_added FROM cobalt.jobs;
ROLLBACK;

BEGIN;
DELETE FROM cobalt.client;
SELECT count(*) AS jobs_before FROM cobalt.jobs \gset
SAVEPOINT s;
SELECT cobalt_submit('patient.create', '{"mrn": "1234"}', 'clinic-a');
ROLLBACK TO s;
SELECT count(*) - :jobs_before AS jobs_added FROM cobalt.jobs;
ROLLBACK;

-- The credentials and accounts are still there.
SELECT count(*) AS client FROM cobalt.client;
SELECT account FROM cobalt.accounts ORDER BY account COLLATE "C";

--
-- A submit in a transaction that rolls back leaves no row, nor does one
-- in a savepoint that is rolled back; the transaction's other submits stay.
--
SELECT count(*) AS jobs_before FROM cobalt.jobs \gset
BEGIN;
SELECT cobalt_submit('message.create', '{"to": "dr-x", "body": "rolled back"}', 'clinic-a') AS rolled_back_job \gset
SELECT state FROM cobalt.jobs WHERE id = :rolled_back_job;
ROLLBACK;
SELECT count(*) AS rolled_back_rows FROM cobalt.jobs WHERE id = :rolled_back_job;
SELECT count(*) - :jobs_before AS jobs_added FROM cobalt.jobs;

BEGIN;
SAVEPOINT s;
SELECT cobalt_submit('message.create', '{"to": "dr-x", "body": "in a rolled-back savepoint"}', 'clinic-a') AS savepoint_job \gset
ROLLBACK TO s;
SELECT cobalt_submit('message.create', '{"to": "dr-x", "body": "kept"}', 'clinic-a') AS kept_job \gset
COMMIT;
SELECT count(*) AS savepoint_rows FROM cobalt.jobs WHERE id = :savepoint_job;
SELECT payload->>'body' AS body, state FROM cobalt.jobs WHERE id = :kept_job;

-- Every job so far is queued and due, none attempted.
SELECT state, attempts, count(*) AS jobs, bool_and(next_due_at IS NOT NULL) AS all_due
FROM cobalt.jobs GROUP BY state, attempts;

-- The statements cobalt_submit runs are schema-qualified and run with the
-- search path pinned: same-named functions and operators placed early on
-- the caller's search_path are never called.
CREATE SCHEMA regress_hostile;
CREATE FUNCTION regress_hostile.always_equal(text, text) RETURNS boolean
    LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR regress_hostile.= (LEFTARG = text, RIGHTARG = text,
                                   PROCEDURE = regress_hostile.always_equal);
CREATE FUNCTION regress_hostile.now() RETURNS timestamptz
    LANGUAGE sql AS $$SELECT '2000-01-01'::timestamptz$$;
SET search_path = regress_hostile, public, pg_catalog;
SELECT 'x'::text = 'y'::text AS hostile_operator_in_effect;
SELECT cobalt_submit('no.such_operation', '{"mrn": "1"}');
SELECT cobalt_submit('patient.create', '{"mrn": "hostile"}', 'no-such-account');
SELECT cobalt_submit('patient.create', '{"mrn": "hostile"}', 'clinic-a') AS hostile_job \gset
RESET search_path;
SELECT next_due_at > '2001-01-01' AS real_now_used FROM cobalt.jobs WHERE id = :hostile_job;
DELETE FROM cobalt.jobs WHERE id = :hostile_job;
DROP SCHEMA regress_hostile CASCADE;

--
-- operations: an administrator manages cobalt.operations with plain SQL.
--
-- The credentials and the one account the following tests use.
SELECT cobalt_set_client('regress-client-id', 'regress-client-secret');
SELECT cobalt_add_account('clinic-a', 'token-a');

SELECT count(*) AS jobs_before FROM cobalt.jobs \gset

-- Change an operation's timeout.
UPDATE cobalt.operations SET timeout = '10 min' WHERE operation = 'note.create';
SELECT operation, timeout FROM cobalt.operations WHERE operation = 'note.create';

-- Add an operation, and submit it at once.
INSERT INTO cobalt.operations (operation, method, path, timeout)
VALUES ('lab_order.create', 'POST', '/lab-orders', '90 seconds');
SELECT operation, method, path, timeout, body_format, file_field
FROM cobalt.operations WHERE operation = 'lab_order.create';

SELECT cobalt_submit('lab_order.create', '{"mrn": "1234", "tests": ["CBC"]}') AS lab_job \gset
SELECT :lab_job > 0 AS submitted;
SELECT operation, account, payload, state
FROM cobalt.jobs WHERE id = :lab_job;

-- A new operation with a path placeholder is checked like the seeded ones.
INSERT INTO cobalt.operations (operation, method, path, timeout)
VALUES ('patient.update', 'PUT', '/patients/{mrn}', '2 min');
SELECT cobalt_submit('patient.update', '{"first_name": "Ada"}');
SELECT cobalt_submit('patient.update', '{"mrn": "A-17", "first_name": "Ada"}') > 0 AS submitted;

-- A new multipart operation needs its own file field.
INSERT INTO cobalt.operations (operation, method, path, timeout, body_format, file_field)
VALUES ('fax.send', 'POST', '/faxes', '5 min', 'multipart', 'fax');
SELECT cobalt_submit('fax.send', '{"document": "aGVsbG8=", "filename": "a.pdf"}');
SELECT cobalt_submit('fax.send', '{"fax": "aGVsbG8=", "filename": "a.pdf", "to": "+15550100"}') > 0 AS submitted;

SELECT count(*) - :jobs_before AS jobs_added FROM cobalt.jobs;
SELECT operation, account, state FROM cobalt.jobs ORDER BY id;

-- The constraints keep the table usable by the worker.
-- Methods: POST, PATCH, PUT only, upper case.
INSERT INTO cobalt.operations (operation, method, path, timeout)
VALUES ('lab_result.read', 'GET', '/lab-results', '2 min');
INSERT INTO cobalt.operations (operation, method, path, timeout)
VALUES ('lab_result.create', 'post', '/lab-results', '2 min');
UPDATE cobalt.operations SET method = 'DELETE' WHERE operation = 'lab_order.create';
-- A path starts with a slash and has no empty placeholder.
INSERT INTO cobalt.operations (operation, method, path, timeout)
VALUES ('lab_result.create', 'POST', 'lab-results', '2 min');
INSERT INTO cobalt.operations (operation, method, path, timeout)
VALUES ('lab_result.create', 'POST', 'https://example.com/lab-results', '2 min');
INSERT INTO cobalt.operations (operation, method, path, timeout)
VALUES ('lab_result.create', 'POST', '/lab-results/{}', '2 min');
INSERT INTO cobalt.operations (operation, method, path, timeout)
VALUES ('lab_result.create', 'POST', '/lab results', '2 min');
UPDATE cobalt.operations SET path = 'lab-orders' WHERE operation = 'lab_order.create';
-- A timeout is positive: at least 1 second, at most 7 days.
INSERT INTO cobalt.operations (operation, method, path, timeout)
VALUES ('lab_result.create', 'POST', '/lab-results', '0');
INSERT INTO cobalt.operations (operation, method, path, timeout)
VALUES ('lab_result.create', 'POST', '/lab-results', '-5 min');
INSERT INTO cobalt.operations (operation, method, path, timeout)
VALUES ('lab_result.create', 'POST', '/lab-results', '8 days');
UPDATE cobalt.operations SET timeout = '0' WHERE operation = 'lab_order.create';
INSERT INTO cobalt.operations (operation, method, path, timeout)
VALUES ('lab_result.create', 'POST', '/lab-results', NULL);
-- The bounds themselves are allowed.
BEGIN;
UPDATE cobalt.operations SET timeout = '1 second' WHERE operation = 'lab_order.create'
RETURNING operation, timeout;
UPDATE cobalt.operations SET timeout = '7 days' WHERE operation = 'lab_order.create'
RETURNING operation, timeout;
ROLLBACK;
-- multipart needs a file_field, and only multipart has one.
INSERT INTO cobalt.operations (operation, method, path, timeout, body_format)
VALUES ('scan.upload', 'POST', '/scans', '2 min', 'multipart');
INSERT INTO cobalt.operations (operation, method, path, timeout, body_format, file_field)
VALUES ('scan.upload', 'POST', '/scans', '2 min', 'json', 'scan');
INSERT INTO cobalt.operations (operation, method, path, timeout, body_format)
VALUES ('scan.upload', 'POST', '/scans', '2 min', 'xml');
UPDATE cobalt.operations SET file_field = NULL WHERE operation = 'document.upload';
-- Operation names are lower-case dotted words.
INSERT INTO cobalt.operations (operation, method, path, timeout)
VALUES ('Lab_Result.Create', 'POST', '/lab-results', '2 min');
INSERT INTO cobalt.operations (operation, method, path, timeout)
VALUES ('labresult', 'POST', '/lab-results', '2 min');

-- None of the rejected rows or changes got in.
SELECT operation, method, path, timeout, body_format, file_field
FROM cobalt.operations ORDER BY operation COLLATE "C";

-- An operation an administrator removes can no longer be submitted.
DELETE FROM cobalt.operations WHERE operation IN ('lab_order.create', 'patient.update', 'fax.send');
SELECT cobalt_submit('lab_order.create', '{"mrn": "1234"}');

-- Back to the seeded operations for the following tests.
UPDATE cobalt.operations SET timeout = '3 min' WHERE operation = 'note.create';
SELECT count(*) AS operations FROM cobalt.operations;

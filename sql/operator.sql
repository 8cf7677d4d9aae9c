--
-- operator: cobalt_recheck, cobalt_retry, cobalt_cancel and cobalt_resolve.
--
-- No worker serves this database, so every job is put by hand into the
-- state a case needs (pg_temp.job_in below) and stays there.  Every error
-- is shown with its hint and followed by pg_temp.unchanged(job): whether
-- that job's row, and every row that was in the table, are as they were at
-- the last pg_temp.snapshot(), and how many jobs were added since.
-- Timestamps are compared, never printed; job ids are fixed (below).
--
-- The PL/pgSQL CONTEXT lines ("... line N at RAISE") say nothing about the
-- contract.
\set SHOW_CONTEXT never

-- A job of operation appointment.create for clinic-a, submitted, then set
-- to the given state with the columns the worker would have set.
CREATE FUNCTION pg_temp.job_in(st text,
                               p jsonb DEFAULT '{"mrn": "7001", "location": "L1"}')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint := cobalt_submit('appointment.create', p, 'clinic-a');
BEGIN
    IF st = 'queued' THEN
        NULL;       -- as cobalt_submit left it: due at once
    ELSIF st = 'sending' THEN
        UPDATE cobalt.jobs SET state = st, attempts = 1, sent_at = now(), next_due_at = now()
        WHERE id = new_id;
    ELSIF st = 'polling' THEN
        UPDATE cobalt.jobs SET state = st, attempts = 1, remote_job_id = 'remote-polling',
               http_status = 200, sent_at = now(), accepted_at = now(),
               timeout_at = now() + interval '2 min', next_due_at = now() + interval '2 min'
        WHERE id = new_id;
    ELSIF st = 'timed_out' THEN
        UPDATE cobalt.jobs SET state = st, attempts = 1, remote_job_id = 'remote-timed-out',
               http_status = 200, sent_at = now() - interval '3 min',
               accepted_at = now() - interval '3 min', timeout_at = now() - interval '1 min',
               next_due_at = now() + interval '1 min',
               error = 'no outcome within the operation''s timeout; still checked (see cobalt.late_check_interval)'
        WHERE id = new_id;
    ELSIF st = 'succeeded' THEN
        UPDATE cobalt.jobs SET state = st, attempts = 1, remote_job_id = 'remote-succeeded',
               http_status = 200, event_type = 'appointment.created',
               result = '{"appointment_id": "a1", "status": "success"}',
               sent_at = now(), accepted_at = now(), timeout_at = now() + interval '2 min',
               finished_at = now(), next_due_at = NULL
        WHERE id = new_id;
    ELSIF st = 'failed' THEN
        UPDATE cobalt.jobs SET state = st, attempts = 1, http_status = 400,
               error = 'Missing required field: subject',
               attempt_errors = '[{"attempt": 1, "http_status": 400, "error": "Missing required field: subject"}]',
               sent_at = now(), finished_at = now(), next_due_at = NULL
        WHERE id = new_id;
    ELSIF st = 'unknown' THEN
        UPDATE cobalt.jobs SET state = st, attempts = 1, http_status = 500,
               error = 'Internal error',
               attempt_errors = '[{"attempt": 1, "http_status": 500, "error": "Internal error"}]',
               sent_at = now(), finished_at = now(), next_due_at = NULL
        WHERE id = new_id;
    ELSIF st = 'cancelled' THEN
        UPDATE cobalt.jobs SET state = st, finished_at = now(), next_due_at = NULL
        WHERE id = new_id;
    ELSE
        RAISE EXCEPTION 'job_in: no such state %', st;
    END IF;
    RETURN new_id;
END
$$;

-- The table as it is now, to compare with after an error.
CREATE TEMP TABLE jobs_snapshot AS SELECT * FROM cobalt.jobs WITH NO DATA;
CREATE FUNCTION pg_temp.snapshot() RETURNS void LANGUAGE sql AS $$
    DELETE FROM jobs_snapshot;
    INSERT INTO jobs_snapshot SELECT * FROM cobalt.jobs;
$$;
CREATE FUNCTION pg_temp.unchanged(job bigint,
    OUT job_unchanged boolean, OUT rows_unchanged boolean, OUT jobs_added bigint)
LANGUAGE sql AS $$
    SELECT (SELECT to_jsonb(j) FROM cobalt.jobs j WHERE j.id = job)
               IS NOT DISTINCT FROM
           (SELECT to_jsonb(s) FROM jobs_snapshot s WHERE s.id = job),
           -- every row that was there still is, unchanged
           NOT EXISTS (SELECT to_jsonb(s) FROM jobs_snapshot s
                       EXCEPT ALL SELECT to_jsonb(j) FROM cobalt.jobs j),
           (SELECT count(*) FROM cobalt.jobs) - (SELECT count(*) FROM jobs_snapshot)
$$;
-- A job's row, to compare with later.
CREATE FUNCTION pg_temp.row_of(job bigint) RETURNS jsonb LANGUAGE sql AS $$
    SELECT to_jsonb(j) FROM cobalt.jobs j WHERE j.id = job
$$;

-- The ids of the jobs made here are fixed, so that the messages quoting
-- them do not depend on how many jobs the earlier tests made.
SELECT max(id) < 1000 AS room_below_1000 FROM cobalt.jobs;
SELECT setval('cobalt.jobs_id_seq', 1000);

-- One job in each state; they stay in it unless a case says otherwise.
SELECT pg_temp.job_in('queued') AS queued_job,
       pg_temp.job_in('sending') AS sending_job,
       pg_temp.job_in('polling') AS polling_job,
       pg_temp.job_in('timed_out') AS timed_out_job,
       pg_temp.job_in('succeeded') AS succeeded_job,
       pg_temp.job_in('failed') AS failed_job,
       pg_temp.job_in('unknown') AS unknown_job,
       pg_temp.job_in('cancelled') AS cancelled_job \gset
SELECT j.state, j.attempts, j.remote_job_id, j.http_status, j.error,
       j.next_due_at IS NOT NULL AS due, j.finished_at IS NOT NULL AS finished
FROM cobalt.jobs j
WHERE j.id IN (:queued_job, :sending_job, :polling_job, :timed_out_job,
               :succeeded_job, :failed_job, :unknown_job, :cancelled_job)
ORDER BY j.id;

SELECT pg_temp.snapshot();

--
-- Bad job ids: a missing id, NULL, zero and a negative id, for each function.
--
SELECT * FROM cobalt_recheck(9223372036854775807);
SELECT * FROM cobalt_recheck(NULL);
SELECT * FROM cobalt_recheck(0);
SELECT * FROM cobalt_recheck(-1);
SELECT rows_unchanged, jobs_added FROM pg_temp.unchanged(NULL);

SELECT cobalt_retry(9223372036854775807);
SELECT cobalt_retry(9223372036854775807, force => true);
SELECT cobalt_retry(NULL);
SELECT cobalt_retry(NULL, force => true);
SELECT cobalt_retry(0);
SELECT cobalt_retry(-1);
SELECT cobalt_retry(-1, force => true);
SELECT rows_unchanged, jobs_added FROM pg_temp.unchanged(NULL);

SELECT * FROM cobalt_cancel(9223372036854775807);
SELECT * FROM cobalt_cancel(NULL);
SELECT * FROM cobalt_cancel(0);
SELECT * FROM cobalt_cancel(-1);
SELECT rows_unchanged, jobs_added FROM pg_temp.unchanged(NULL);

SELECT * FROM cobalt_resolve(9223372036854775807, 'succeeded', 'appointment found in the EHR');
SELECT * FROM cobalt_resolve(NULL, 'succeeded', 'appointment found in the EHR');
SELECT * FROM cobalt_resolve(0, 'failed', 'not in the EHR');
SELECT * FROM cobalt_resolve(-1, 'failed', 'not in the EHR');
-- the id is checked first, whatever the other arguments
SELECT * FROM cobalt_resolve(-1, NULL, NULL);
SELECT rows_unchanged, jobs_added FROM pg_temp.unchanged(NULL);

--
-- cobalt_recheck: only timed_out and polling jobs can be checked.
--
SELECT * FROM cobalt_recheck(:queued_job);
SELECT * FROM pg_temp.unchanged(:queued_job);
SELECT * FROM cobalt_recheck(:sending_job);
SELECT * FROM pg_temp.unchanged(:sending_job);
SELECT * FROM cobalt_recheck(:succeeded_job);
SELECT * FROM pg_temp.unchanged(:succeeded_job);
SELECT * FROM cobalt_recheck(:failed_job);
SELECT * FROM pg_temp.unchanged(:failed_job);
SELECT * FROM cobalt_recheck(:unknown_job);
SELECT * FROM pg_temp.unchanged(:unknown_job);
SELECT * FROM cobalt_recheck(:cancelled_job);
SELECT * FROM pg_temp.unchanged(:cancelled_job);

-- A timed_out job still in its late-check window (next check in a minute):
-- it returns the status row and the job becomes due at once; nothing else
-- changes.
SELECT pg_temp.job_in('timed_out') AS job \gset
SELECT pg_temp.row_of(:job) AS before \gset
SELECT job_id = :job AS same_id, operation, account, state, remote_job_id, http_status,
       event_type, result, error, last_error, attempts,
       sent_at IS NOT NULL AS sent, accepted_at IS NOT NULL AS accepted, finished_at
FROM cobalt_recheck(:job);
SELECT state, next_due_at <= now() AS due_now,
       (:'before'::jsonb ->> 'next_due_at')::timestamptz > now() AS was_due_later,
       pg_temp.row_of(:job) - 'next_due_at' = :'before'::jsonb - 'next_due_at' AS rest_unchanged
FROM cobalt.jobs WHERE id = :job;

-- A timed_out job past its late-check window (next_due_at NULL: the worker
-- has stopped checking it) is checked again too.
UPDATE cobalt.jobs SET accepted_at = now() - interval '3 days', sent_at = now() - interval '3 days',
       timeout_at = now() - interval '2 days', next_due_at = NULL
WHERE id = :job;
SELECT pg_temp.row_of(:job) AS before \gset
SELECT job_id = :job AS same_id, state, remote_job_id, error, attempts, finished_at
FROM cobalt_recheck(:job);
SELECT state, next_due_at IS NOT NULL AS due, next_due_at <= now() AS due_now,
       pg_temp.row_of(:job) - 'next_due_at' = :'before'::jsonb - 'next_due_at' AS rest_unchanged
FROM cobalt.jobs WHERE id = :job;
-- and again (each call asks for one more check)
SELECT state FROM cobalt_recheck(:job);
SELECT state, next_due_at <= now() AS due_now FROM cobalt.jobs WHERE id = :job;

-- A polling job: due at once, i.e. before its timeout, which tells the
-- worker to poll it now rather than time it out.
SELECT pg_temp.job_in('polling') AS job \gset
SELECT pg_temp.row_of(:job) AS before \gset
SELECT job_id = :job AS same_id, operation, account, state, remote_job_id, http_status,
       event_type, result, error, last_error, attempts,
       sent_at IS NOT NULL AS sent, accepted_at IS NOT NULL AS accepted, finished_at
FROM cobalt_recheck(:job);
SELECT state, next_due_at <= now() AS due_now, next_due_at < timeout_at AS before_timeout,
       pg_temp.row_of(:job) - 'next_due_at' = :'before'::jsonb - 'next_due_at' AS rest_unchanged
FROM cobalt.jobs WHERE id = :job;

-- A recheck in a transaction that rolls back changes nothing.
SELECT pg_temp.job_in('timed_out') AS job \gset
SELECT pg_temp.row_of(:job) AS before \gset
BEGIN;
SELECT state FROM cobalt_recheck(:job);
ROLLBACK;
SELECT pg_temp.row_of(:job) = :'before'::jsonb AS unchanged;

--
-- cobalt_retry: a failed job is submitted again as a new job.
--
SELECT pg_temp.snapshot();
SELECT * FROM cobalt_retry(:unknown_job);
SELECT * FROM pg_temp.unchanged(:unknown_job);
SELECT * FROM cobalt_retry(:unknown_job, force => false);
SELECT * FROM pg_temp.unchanged(:unknown_job);
SELECT * FROM cobalt_retry(:timed_out_job);
SELECT * FROM pg_temp.unchanged(:timed_out_job);
SELECT * FROM cobalt_retry(:timed_out_job, force => true);
SELECT * FROM pg_temp.unchanged(:timed_out_job);
SELECT * FROM cobalt_retry(:polling_job);
SELECT * FROM pg_temp.unchanged(:polling_job);
SELECT * FROM cobalt_retry(:succeeded_job);
SELECT * FROM pg_temp.unchanged(:succeeded_job);
SELECT * FROM cobalt_retry(:cancelled_job);
SELECT * FROM pg_temp.unchanged(:cancelled_job);
SELECT * FROM cobalt_retry(:queued_job);
SELECT * FROM pg_temp.unchanged(:queued_job);
SELECT * FROM cobalt_retry(:sending_job);
SELECT * FROM pg_temp.unchanged(:sending_job);
SELECT * FROM cobalt_retry(:sending_job, force => true);
SELECT * FROM pg_temp.unchanged(:sending_job);
-- force must be true or false
SELECT * FROM cobalt_retry(:failed_job, NULL);
SELECT * FROM pg_temp.unchanged(:failed_job);
SELECT * FROM cobalt_retry(:unknown_job, force => NULL);
SELECT * FROM pg_temp.unchanged(:unknown_job);

-- A failed job: a new queued job, due at once, with the same operation,
-- account and payload (numbers with every digit), linked by retry_of and
-- submitted by the caller.  The failed job is left as it was.
SELECT pg_temp.job_in('failed',
    '{"mrn": "7002", "amount": 12345678901234567890.123, "notes": {"list": [1, 2.50, null, "x"]}}')
    AS job \gset
SELECT pg_temp.snapshot();
SELECT cobalt_retry(:job) AS new_job \gset
SELECT :new_job > :job AS new_id;
SELECT n.retry_of = :job AS linked, n.operation, n.account, n.payload,
       n.payload = o.payload AS same_payload, n.state, n.attempts, n.remote_job_id,
       n.http_status, n.error, n.last_error, n.attempt_errors,
       n.submitted_by = current_user AS submitted_by_caller,
       n.resolved_by, n.resolution_note,
       n.next_due_at <= now() AS due_now,
       n.sent_at, n.accepted_at, n.timeout_at, n.finished_at
FROM cobalt.jobs n, cobalt.jobs o
WHERE n.id = :new_job AND o.id = :job;
SELECT * FROM pg_temp.unchanged(:job);
SELECT state, retry_of FROM cobalt.jobs WHERE id = :job;
-- the new job reads like any other
SELECT job_id = :new_job AS same_id, operation, account, state, attempts
FROM cobalt_job_status(:new_job);

-- An unknown job with force => true: the same, and the unknown job is left
-- as it was.
SELECT pg_temp.job_in('unknown', '{"mrn": "7003", "location": "L3"}') AS job \gset
SELECT pg_temp.snapshot();
SELECT cobalt_retry(:job, force => true) AS new_job \gset
SELECT n.retry_of = :job AS linked, n.operation, n.account, n.payload,
       n.state, n.attempts, n.submitted_by = current_user AS submitted_by_caller,
       n.next_due_at <= now() AS due_now
FROM cobalt.jobs n WHERE n.id = :new_job;
SELECT * FROM pg_temp.unchanged(:job);
-- force => true is allowed on a failed job too
SELECT pg_temp.job_in('failed') AS job \gset
SELECT cobalt_retry(:job, true) AS new_job \gset
SELECT retry_of = :job AS linked, state FROM cobalt.jobs WHERE id = :new_job;

-- The retry of a retry links to the job it retries.
UPDATE cobalt.jobs SET state = 'failed', attempts = 1, error = 'Patient not found',
       finished_at = now(), next_due_at = NULL
WHERE id = :new_job;
SELECT cobalt_retry(:new_job) AS third_job \gset
SELECT retry_of = :new_job AS linked_to_previous, state FROM cobalt.jobs WHERE id = :third_job;

-- A retry in a transaction that rolls back leaves no job.
SELECT pg_temp.snapshot();
BEGIN;
SELECT cobalt_retry(:failed_job) > 0 AS retried;
ROLLBACK;
SELECT * FROM pg_temp.unchanged(:failed_job);

--
-- cobalt_cancel: only queued jobs are cancelled.
--
SELECT pg_temp.snapshot();
SELECT * FROM cobalt_cancel(:sending_job);
SELECT * FROM pg_temp.unchanged(:sending_job);
SELECT * FROM cobalt_cancel(:polling_job);
SELECT * FROM pg_temp.unchanged(:polling_job);
SELECT * FROM cobalt_cancel(:timed_out_job);
SELECT * FROM pg_temp.unchanged(:timed_out_job);
SELECT * FROM cobalt_cancel(:unknown_job);
SELECT * FROM pg_temp.unchanged(:unknown_job);
SELECT * FROM cobalt_cancel(:succeeded_job);
SELECT * FROM pg_temp.unchanged(:succeeded_job);
SELECT * FROM cobalt_cancel(:failed_job);
SELECT * FROM pg_temp.unchanged(:failed_job);
SELECT * FROM cobalt_cancel(:cancelled_job);
SELECT * FROM pg_temp.unchanged(:cancelled_job);

-- A queued job: cancelled, finished now, and no longer due.
SELECT pg_temp.job_in('queued') AS job \gset
SELECT pg_temp.row_of(:job) AS before \gset
SELECT job_id = :job AS same_id, operation, account, state, remote_job_id, http_status,
       event_type, result, error, last_error, attempts, sent_at, accepted_at,
       finished_at IS NOT NULL AS finished
FROM cobalt_cancel(:job);
SELECT state, next_due_at, finished_at <= now() AS finished_now,
       pg_temp.row_of(:job) - '{state, next_due_at, finished_at}'::text[]
         = :'before'::jsonb - '{state, next_due_at, finished_at}'::text[] AS rest_unchanged
FROM cobalt.jobs WHERE id = :job;
-- cancelled once: a second cancel is refused, and so is a retry
SELECT pg_temp.snapshot();
SELECT * FROM cobalt_cancel(:job);
SELECT * FROM pg_temp.unchanged(:job);
SELECT * FROM cobalt_retry(:job);
SELECT * FROM pg_temp.unchanged(:job);

-- A queued job waiting to be sent again after a 429 (nothing reached
-- Cobalt) can be cancelled too.
SELECT pg_temp.job_in('queued') AS job \gset
UPDATE cobalt.jobs SET attempts = 1, http_status = 429, sent_at = now(),
       last_error = 'HTTP 429: Too many requests', next_due_at = now() + interval '30 seconds'
WHERE id = :job;
SELECT state, attempts, last_error, finished_at IS NOT NULL AS finished
FROM cobalt_cancel(:job);
SELECT state, next_due_at FROM cobalt.jobs WHERE id = :job;

-- A cancel in a transaction that rolls back changes nothing.
SELECT pg_temp.job_in('queued') AS job \gset
SELECT pg_temp.row_of(:job) AS before \gset
BEGIN;
SELECT state FROM cobalt_cancel(:job);
ROLLBACK;
SELECT pg_temp.row_of(:job) = :'before'::jsonb AS unchanged;

--
-- cobalt_resolve: record the outcome of an unknown job checked by hand.
--
SELECT pg_temp.snapshot();
-- the state must be 'succeeded' or 'failed'
SELECT * FROM cobalt_resolve(:unknown_job, 'SUCCEEDED', 'appointment found in the EHR');
SELECT * FROM pg_temp.unchanged(:unknown_job);
SELECT * FROM cobalt_resolve(:unknown_job, 'success', 'appointment found in the EHR');
SELECT * FROM pg_temp.unchanged(:unknown_job);
SELECT * FROM cobalt_resolve(:unknown_job, 'cancelled', 'appointment found in the EHR');
SELECT * FROM pg_temp.unchanged(:unknown_job);
SELECT * FROM cobalt_resolve(:unknown_job, 'unknown', 'still not sure');
SELECT * FROM pg_temp.unchanged(:unknown_job);
SELECT * FROM cobalt_resolve(:unknown_job, '', 'appointment found in the EHR');
SELECT * FROM pg_temp.unchanged(:unknown_job);
SELECT * FROM cobalt_resolve(:unknown_job, NULL, 'appointment found in the EHR');
SELECT * FROM pg_temp.unchanged(:unknown_job);
-- the note must say something
SELECT * FROM cobalt_resolve(:unknown_job, 'succeeded', NULL);
SELECT * FROM pg_temp.unchanged(:unknown_job);
SELECT * FROM cobalt_resolve(:unknown_job, 'succeeded', '');
SELECT * FROM pg_temp.unchanged(:unknown_job);
SELECT * FROM cobalt_resolve(:unknown_job, 'failed', '   ');
SELECT * FROM pg_temp.unchanged(:unknown_job);
-- both wrong: the state is reported first
SELECT * FROM cobalt_resolve(:unknown_job, 'done', NULL);
SELECT * FROM pg_temp.unchanged(:unknown_job);
-- only unknown jobs are resolved by hand
SELECT * FROM cobalt_resolve(:queued_job, 'succeeded', 'appointment found in the EHR');
SELECT * FROM pg_temp.unchanged(:queued_job);
SELECT * FROM cobalt_resolve(:sending_job, 'succeeded', 'appointment found in the EHR');
SELECT * FROM pg_temp.unchanged(:sending_job);
SELECT * FROM cobalt_resolve(:polling_job, 'succeeded', 'appointment found in the EHR');
SELECT * FROM pg_temp.unchanged(:polling_job);
SELECT * FROM cobalt_resolve(:timed_out_job, 'succeeded', 'appointment found in the EHR');
SELECT * FROM pg_temp.unchanged(:timed_out_job);
SELECT * FROM cobalt_resolve(:succeeded_job, 'failed', 'not in the EHR');
SELECT * FROM pg_temp.unchanged(:succeeded_job);
SELECT * FROM cobalt_resolve(:failed_job, 'succeeded', 'appointment found in the EHR');
SELECT * FROM pg_temp.unchanged(:failed_job);
SELECT * FROM cobalt_resolve(:cancelled_job, 'failed', 'not in the EHR');
SELECT * FROM pg_temp.unchanged(:cancelled_job);

-- 'succeeded': the state, who resolved it and the note are recorded; the
-- error that made it unknown is kept.
SELECT pg_temp.job_in('unknown') AS job \gset
SELECT pg_temp.row_of(:job) AS before \gset
SELECT job_id = :job AS same_id, operation, account, state, remote_job_id, http_status,
       event_type, result, error, last_error, attempts, finished_at IS NOT NULL AS finished
FROM cobalt_resolve(:job, 'succeeded', 'Appointment found in the EHR by J. Smith, 10:42');
SELECT state, resolved_by = current_user AS resolved_by_caller, resolution_note, error,
       next_due_at, finished_at >= (:'before'::jsonb ->> 'finished_at')::timestamptz AS finished_now,
       pg_temp.row_of(:job) - '{state, resolved_by, resolution_note, finished_at}'::text[]
         = :'before'::jsonb - '{state, resolved_by, resolution_note, finished_at}'::text[] AS rest_unchanged
FROM cobalt.jobs WHERE id = :job;
-- resolved once: it is no longer unknown
SELECT pg_temp.snapshot();
SELECT * FROM cobalt_resolve(:job, 'failed', 'changed my mind');
SELECT * FROM pg_temp.unchanged(:job);
SELECT * FROM cobalt_retry(:job, force => true);
SELECT * FROM pg_temp.unchanged(:job);

-- 'failed': likewise; the note is kept as given.
SELECT pg_temp.job_in('unknown') AS job \gset
SELECT state, error, finished_at IS NOT NULL AS finished
FROM cobalt_resolve(:job, 'failed', E'  Not in the EHR.\nChecked by J. Smith.  ');
SELECT state, resolved_by = current_user AS resolved_by_caller, resolution_note, error, next_due_at
FROM cobalt.jobs WHERE id = :job;
-- a job resolved as failed is retried like any failed job, without force
SELECT cobalt_retry(:job) AS new_job \gset
SELECT retry_of = :job AS linked, state, payload FROM cobalt.jobs WHERE id = :new_job;

-- A resolve in a transaction that rolls back changes nothing.
SELECT pg_temp.job_in('unknown') AS job \gset
SELECT pg_temp.row_of(:job) AS before \gset
BEGIN;
SELECT state FROM cobalt_resolve(:job, 'succeeded', 'found');
ROLLBACK;
SELECT pg_temp.row_of(:job) = :'before'::jsonb AS unchanged;

-- After all the refused calls, the jobs of each state are as they were.
SELECT j.state, j.attempts, j.remote_job_id, j.http_status, j.error,
       j.next_due_at IS NOT NULL AS due, j.finished_at IS NOT NULL AS finished,
       j.retry_of, j.resolved_by, j.resolution_note
FROM cobalt.jobs j
WHERE j.id IN (:queued_job, :sending_job, :polling_job, :timed_out_job,
               :succeeded_job, :failed_job, :unknown_job, :cancelled_job)
ORDER BY j.id;

--
-- The error codes.
--
CREATE FUNCTION pg_temp.sqlstate(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
SELECT s AS statement, pg_temp.sqlstate(s) AS sqlstate
FROM unnest(ARRAY[
    'SELECT cobalt_recheck(9223372036854775807)',
    'SELECT cobalt_recheck(NULL)',
    'SELECT cobalt_recheck(-1)',
    format('SELECT cobalt_recheck(%s)', :queued_job),
    format('SELECT cobalt_retry(%s)', :unknown_job),
    format('SELECT cobalt_retry(%s)', :succeeded_job),
    format('SELECT cobalt_retry(%s, NULL)', :failed_job),
    format('SELECT cobalt_cancel(%s)', :polling_job),
    format('SELECT cobalt_resolve(%s, ''done'', ''x'')', :unknown_job),
    format('SELECT cobalt_resolve(%s, ''failed'', '' '')', :unknown_job),
    format('SELECT cobalt_resolve(%s, ''failed'', ''x'')', :failed_job)
]) WITH ORDINALITY AS u(s, n)
ORDER BY n;

--
-- Nothing is granted to PUBLIC: a role without grants cannot call them.
--
CREATE ROLE regress_cobalt_operator NOLOGIN;
SELECT f AS func, has_function_privilege('regress_cobalt_operator', f, 'EXECUTE') AS can_execute
FROM unnest(ARRAY['cobalt_recheck(bigint)', 'cobalt_retry(bigint, boolean)',
                  'cobalt_cancel(bigint)', 'cobalt_resolve(bigint, text, text)',
                  'cobalt._lock_job(bigint)', 'cobalt._status(bigint)',
                  'cobalt._wake_at_commit(boolean)']) AS f
ORDER BY f COLLATE "C";
SET ROLE regress_cobalt_operator;
SELECT cobalt_recheck(1);
SELECT cobalt_retry(1);
SELECT cobalt_cancel(1);
SELECT cobalt_resolve(1, 'succeeded', 'found');
RESET ROLE;
DROP ROLE regress_cobalt_operator;

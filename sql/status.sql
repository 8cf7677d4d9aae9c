--
-- status: cobalt_job_status and cobalt_wait.
--
-- No worker serves this database, so a queued job stays queued; final
-- states are set by hand.  Timings are only checked with wide margins.
--
SELECT cobalt_submit('patient.create', '{"mrn": "5001"}', 'clinic-a') AS job \gset

--
-- cobalt_job_status
--
SELECT job_id = :job AS same_id, operation, account, state, remote_job_id, http_status,
       event_type, result, error, last_error, attempts,
       created_at = (SELECT created_at FROM cobalt.jobs WHERE id = :job) AS created_at_ok,
       sent_at, accepted_at, finished_at
FROM cobalt_job_status(:job);

-- The columns, in order.
SELECT attnum, attname, atttypid::regtype
FROM pg_attribute
WHERE attrelid = 'cobalt.job_status'::regclass AND attnum > 0 AND NOT attisdropped
ORDER BY attnum;

-- Missing, NULL, zero and negative ids.
SELECT * FROM cobalt_job_status(9223372036854775807);
SELECT * FROM cobalt_job_status(NULL);
SELECT * FROM cobalt_job_status(0);
SELECT * FROM cobalt_job_status(-1);

-- A job submitted in the current transaction is visible to it.
BEGIN;
SELECT cobalt_submit('task.create', '{"title": "not committed"}', 'clinic-a') AS uncommitted_job \gset
SELECT operation, state FROM cobalt_job_status(:uncommitted_job);
ROLLBACK;
SELECT count(*) AS rolled_back_rows FROM cobalt.jobs WHERE id = :uncommitted_job;

--
-- cobalt_wait on a job that is not final
--
-- Timeout 0: the current state, at once.
SELECT clock_timestamp() AS t0 \gset
SELECT job_id = :job AS same_id, state, attempts FROM cobalt_wait(:job, '0');
SELECT clock_timestamp() - :'t0'::timestamptz < interval '1 second' AS returned_at_once;

-- Timeout 200 ms: the job stays queued, so cobalt_wait returns it queued
-- after (at least) 200 ms.
SELECT clock_timestamp() AS t0 \gset
SELECT job_id = :job AS same_id, state, attempts FROM cobalt_wait(:job, '200 ms');
SELECT clock_timestamp() - :'t0'::timestamptz >= interval '200 ms' AS waited_200ms,
       clock_timestamp() - :'t0'::timestamptz < interval '10 seconds' AS not_much_longer;

-- The same for a job in flight ('polling' is not final either).
UPDATE cobalt.jobs SET state = 'polling', attempts = 1, remote_job_id = 'remote-1',
       http_status = 202, sent_at = now(), accepted_at = now()
WHERE id = :job;
SELECT clock_timestamp() AS t0 \gset
SELECT state, remote_job_id, http_status, attempts,
       sent_at IS NOT NULL AS sent, accepted_at IS NOT NULL AS accepted, finished_at
FROM cobalt_wait(:job, '200 ms');
SELECT clock_timestamp() - :'t0'::timestamptz >= interval '200 ms' AS waited_200ms;

-- Bad timeouts.
SELECT * FROM cobalt_wait(:job, NULL);
SELECT * FROM cobalt_wait(:job, '-1 second');
SELECT * FROM cobalt_wait(:job, '-1 day');
SELECT * FROM cobalt_wait(:job, '7 days 1 second');
SELECT * FROM cobalt_wait(:job, '1 month');
SELECT * FROM cobalt_wait(:job, '1000 years');
SELECT * FROM cobalt_wait(:job, '2562047788 hours');
-- only the total counts: one day less 24 hours is no wait at all
SELECT state FROM cobalt_wait(:job, '1 day -24 hours');

-- Bad job ids.
SELECT * FROM cobalt_wait(9223372036854775807, '0');
SELECT * FROM cobalt_wait(9223372036854775807);
SELECT * FROM cobalt_wait(NULL, '0');
SELECT * FROM cobalt_wait(0, '0');
SELECT * FROM cobalt_wait(-5);

--
-- cobalt_wait on a job in a final state returns at once, whatever the
-- timeout (the default is 2 minutes).
--
UPDATE cobalt.jobs SET state = 'succeeded', http_status = 200, event_type = 'job.succeeded',
       result = '{"appointment_id": "apt-1", "amount": 12345678901234567890.123}',
       finished_at = now(), next_due_at = NULL
WHERE id = :job;
SELECT clock_timestamp() AS t0 \gset
SELECT job_id = :job AS same_id, state, http_status, event_type, result, error,
       finished_at IS NOT NULL AS finished
FROM cobalt_wait(:job);
SELECT state FROM cobalt_wait(:job, '7 days');
SELECT state FROM cobalt_wait(:job, '0');
SELECT clock_timestamp() - :'t0'::timestamptz < interval '1 second' AS returned_at_once;

-- Every final state.
SELECT clock_timestamp() AS t0 \gset
UPDATE cobalt.jobs SET state = 'failed', error = 'rejected by Cobalt' WHERE id = :job;
SELECT state, error FROM cobalt_wait(:job, '1 min');
UPDATE cobalt.jobs SET state = 'timed_out', error = 'no outcome in time' WHERE id = :job;
SELECT state, error FROM cobalt_wait(:job, '1 min');
UPDATE cobalt.jobs SET state = 'unknown', error = 'interrupted while sending' WHERE id = :job;
SELECT state, error FROM cobalt_wait(:job, '1 min');
UPDATE cobalt.jobs SET state = 'cancelled', error = 'cancelled by an administrator' WHERE id = :job;
SELECT state, error FROM cobalt_wait(:job, '1 min');
SELECT clock_timestamp() - :'t0'::timestamptz < interval '2 seconds' AS returned_at_once;

-- cobalt_job_status agrees.
SELECT state, error FROM cobalt_job_status(:job);

--
-- REPEATABLE READ / SERIALIZABLE: the transaction's snapshot would never
-- show the worker's progress, so waiting there is refused ...
--
SELECT cobalt_submit('patient.create', '{"mrn": "5002"}', 'clinic-a') AS queued_job \gset
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT state FROM cobalt_wait(:queued_job, '1 second');
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT state FROM cobalt_wait(:queued_job);
ROLLBACK;
-- ... but there is nothing to wait for with timeout 0, or for a final job.
SELECT clock_timestamp() AS t0 \gset
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT state FROM cobalt_wait(:queued_job, '0');
SELECT state FROM cobalt_wait(:job);
SELECT state FROM cobalt_wait(:job, '7 days');
SELECT state FROM cobalt_job_status(:queued_job);
COMMIT;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT state FROM cobalt_wait(:job);
COMMIT;
SELECT clock_timestamp() - :'t0'::timestamptz < interval '1 second' AS returned_at_once;

-- In READ COMMITTED (the default) waiting works inside a transaction block.
BEGIN;
SELECT state FROM cobalt_wait(:queued_job, '100 ms');
COMMIT;

-- Neither function changes the job.
SELECT state, attempts, next_due_at IS NOT NULL AS due FROM cobalt.jobs WHERE id = :queued_job;

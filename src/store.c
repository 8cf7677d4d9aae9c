/*-------------------------------------------------------------------------
 *
 * store.c
 *		Every SQL statement cobalt runs against its tables: the session side
 *		(submit, status) and the worker side (recover, claim, record).
 *
 * Statements are prepared once per process and kept (SPI_keepplan); the
 * plan cache re-plans them after DROP/CREATE EXTENSION, and for another
 * user where row security applies.  All names are schema-qualified, and
 * callers run with the search path pinned (cobalt_pin_search_path, or the
 * worker's own setting), so no user object can capture them.
 *
 * Session-side reads of cobalt.jobs run as the calling role, so its row
 * security decides what they see; writes run as the extension's owner.
 *
 * Session-side functions connect to SPI themselves and copy what they
 * return into the caller's memory context.  Worker-side functions must be
 * called inside a transaction with SPI already connected.
 *
 * The job invariants kept here:
 *	- a job is claimed ('queued' -> 'sending', attempts + 1) with FOR UPDATE
 *	  SKIP LOCKED, and the claim is committed before any request leaves;
 *	- every later change names the state it expects the job to be in, so a
 *	  job changed meanwhile (cancelled, resolved, dropped) is left alone;
 *	- next_due_at is non-NULL exactly while the worker still has something
 *	  to do for the job, so the partial index jobs_due_idx holds only those.
 *
 * src/store.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "cobalt.h"

#define ACCOUNT_KEY_SIZE 256

typedef struct TokenEntry
{
	char		account[ACCOUNT_KEY_SIZE];
	char	   *token;
} TokenEntry;

static char *outcome_notice(int64 id, const char *state, const char *operation,
							const char *account);
static void send_notices(List *notices);
static Datum text_array(const char **strings, int n, size_t stride);

/*
 * Prepare a statement once per process.  The plan lives in a long-lived
 * context; argument types are given by OID.  cursor_options may ask for
 * CURSOR_OPT_CUSTOM_PLAN: planned anew at each execution with the
 * parameters' values.
 */
static SPIPlanPtr
prepare_with_options(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types,
					 int cursor_options)
{
	if (*cache == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, types, cursor_options);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for cobalt statement: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*cache = plan;
	}
	return *cache;
}

static SPIPlanPtr
prepare_once(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types)
{
	return prepare_with_options(cache, sql, nargs, types, 0);
}

static char *
text_column(HeapTuple tuple, TupleDesc desc, int col)
{
	return SPI_getvalue(tuple, desc, col);
}

static int64
int64_column(HeapTuple tuple, TupleDesc desc, int col, int64 if_null)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);

	return isnull ? if_null : DatumGetInt64(d);
}

/* Fill an operation from columns first..first+5 of a result row. */
static void
read_operation(HeapTuple tuple, TupleDesc desc, int first, CobaltOperation *op)
{
	op->operation = text_column(tuple, desc, first);
	op->method = text_column(tuple, desc, first + 1);
	op->path = text_column(tuple, desc, first + 2);
	op->body_format = text_column(tuple, desc, first + 3);
	op->file_field = text_column(tuple, desc, first + 4);
	op->timeout_ms = int64_column(tuple, desc, first + 5, 0);
}

#define OPERATION_COLUMNS \
	"o.operation, o.method, o.path, o.body_format, o.file_field, " \
	"(pg_catalog.date_part('epoch', o.timeout) * 1000)::pg_catalog.int8"

/*
 * Read what cobalt_submit needs into "snap", allocated in "cxt": every
 * operation, whether client credentials are set, every account's name
 * (never its token) and every grant.  Connects to SPI itself; runs as the
 * extension's owner.
 */
void
cobalt_store_load_config(CobaltConfigSnapshot *snap, MemoryContext cxt)
{
	MemoryContext old;

	memset(snap, 0, sizeof(*snap));
	SPI_connect();
	if (SPI_execute("SELECT " OPERATION_COLUMNS " FROM cobalt.operations o", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "cobalt: reading cobalt.operations failed");
	old = MemoryContextSwitchTo(cxt);
	snap->nops = (int) SPI_processed;
	snap->ops = palloc0(sizeof(CobaltOperation) * Max(snap->nops, 1));
	for (int i = 0; i < snap->nops; i++)
		read_operation(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &snap->ops[i]);
	MemoryContextSwitchTo(old);

	if (SPI_execute("SELECT 1 FROM cobalt.client LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "cobalt: reading cobalt.client failed");
	snap->client_set = (SPI_processed == 1);

	if (SPI_execute("SELECT account FROM cobalt.accounts", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "cobalt: reading cobalt.accounts failed");
	old = MemoryContextSwitchTo(cxt);
	snap->naccounts = (int) SPI_processed;
	snap->accounts = palloc0(sizeof(char *) * Max(snap->naccounts, 1));
	for (int i = 0; i < snap->naccounts; i++)
		snap->accounts[i] = text_column(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
	MemoryContextSwitchTo(old);

	if (SPI_execute("SELECT account, role::pg_catalog.oid FROM cobalt.account_grants", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "cobalt: reading cobalt.account_grants failed");
	old = MemoryContextSwitchTo(cxt);
	snap->ngrants = (int) SPI_processed;
	snap->grant_accounts = palloc0(sizeof(char *) * Max(snap->ngrants, 1));
	snap->grant_roles = palloc0(sizeof(Oid) * Max(snap->ngrants, 1));
	for (int i = 0; i < snap->ngrants; i++)
	{
		bool		isnull;

		snap->grant_accounts[i] = text_column(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		snap->grant_roles[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
															  SPI_tuptable->tupdesc, 2, &isnull));
	}
	MemoryContextSwitchTo(old);
	SPI_finish();
}

/*
 * The valid operation names, comma-separated, for an error hint.  Connects
 * to SPI itself.
 */
char *
cobalt_store_operation_list(void)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *list = NULL;

	SPI_connect();
	if (SPI_execute("SELECT pg_catalog.string_agg(operation, ', ' ORDER BY operation) "
					"FROM cobalt.operations", true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		char	   *s = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (s != NULL)
			list = MemoryContextStrdup(caller, s);
	}
	SPI_finish();
	return list ? list : pstrdup("(none: cobalt.operations is empty)");
}

/*
 * Insert a queued job, due now, and return its id.  Connects to SPI itself.
 */
int64
cobalt_store_insert_job(const char *operation, const char *account, Jsonb *payload,
						const char *submitted_by)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[4] = {TEXTOID, TEXTOID, JSONBOID, TEXTOID};
	Datum		values[4];
	bool		isnull;
	int64		id;

	SPI_connect();
	prepare_once(&plan,
				 "INSERT INTO cobalt.jobs (operation, account, payload, submitted_by, next_due_at) "
				 "VALUES ($1, $2, $3, $4, pg_catalog.now()) RETURNING id",
				 4, types);
	values[0] = CStringGetTextDatum(operation);
	values[1] = CStringGetTextDatum(account);
	values[2] = JsonbPGetDatum(payload);
	values[3] = CStringGetTextDatum(submitted_by);
	if (SPI_execute_plan(plan, values, NULL, false, 1) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "cobalt: inserting the job failed");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return id;
}

/*
 * A job's status row, formed with "desc" (the columns of type
 * cobalt.job_status) in the caller's memory context, with its state in
 * *state; NULL when there is no such job.  Connects to SPI itself; each
 * call sees a fresh snapshot in READ COMMITTED.
 */
HeapTuple
cobalt_store_job_status(int64 job_id, TupleDesc *desc, char **state)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	MemoryContext caller = CurrentMemoryContext;
	HeapTuple	result = NULL;

	SPI_connect();
	prepare_once(&plan,
				 "SELECT id, operation, account, state, remote_job_id, http_status, "
				 "       event_type, result, error, last_error, attempts, "
				 "       created_at, sent_at, accepted_at, finished_at "
				 "FROM cobalt.jobs WHERE id OPERATOR(pg_catalog.=) $1",
				 1, types);
	values[0] = Int64GetDatum(job_id);
	/* not read-only: in READ COMMITTED each call then takes a new snapshot */
	if (SPI_execute_plan(plan, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "cobalt: reading job %lld failed", (long long) job_id);
	if (SPI_processed == 1)
	{
		TupleDesc	spidesc = SPI_tuptable->tupdesc;
		HeapTuple	spitup = SPI_tuptable->vals[0];
		int			natts = (*desc)->natts;
		Datum	   *vals;
		bool	   *nulls;

		MemoryContextSwitchTo(caller);
		if (natts != spidesc->natts)
			elog(ERROR, "cobalt: job status has %d columns, expected %d",
				 spidesc->natts, natts);
		vals = palloc(sizeof(Datum) * natts);
		nulls = palloc(sizeof(bool) * natts);
		heap_deform_tuple(spitup, spidesc, vals, nulls);
		result = heap_form_tuple(*desc, vals, nulls);
		*state = SPI_getvalue(spitup, spidesc, 4);
	}
	SPI_finish();
	return result;
}

/*
 * Does job "job_id" exist for the current user?  Read through cobalt.jobs'
 * row security, so a job of an account the user may not use does not.
 * Connects to SPI itself.
 */
bool
cobalt_store_job_visible(int64 job_id)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	bool		found;

	SPI_connect();
	prepare_once(&plan,
				 "SELECT 1 FROM cobalt.jobs WHERE id OPERATOR(pg_catalog.=) $1",
				 1, types);
	values[0] = Int64GetDatum(job_id);
	if (SPI_execute_plan(plan, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "cobalt: reading job %lld failed", (long long) job_id);
	found = (SPI_processed == 1);
	SPI_finish();
	return found;
}

/*
 * At worker start: every job left in 'sending' may or may not have reached
 * Cobalt.  Mark it 'unknown'; it is never sent again automatically.
 * Returns how many were found.
 */
int
cobalt_store_recover_sending(void)
{
	int			ret;
	int			n;
	List	   *notices = NIL;

	ret = SPI_execute("UPDATE cobalt.jobs SET state = 'unknown', next_due_at = NULL, "
					  "  finished_at = pg_catalog.now(), "
					  "  error = 'the worker stopped while this request was in flight; "
					  "it may or may not have reached Cobalt, so it is not sent again', "
					  "  attempt_errors = attempt_errors OPERATOR(pg_catalog.||) "
					  "    pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object("
					  "      'attempt', attempts, 'at', pg_catalog.now(), "
					  "      'error', 'interrupted while sending')) "
					  "WHERE next_due_at IS NOT NULL AND state OPERATOR(pg_catalog.=) 'sending' "
					  "RETURNING id, operation, account",
					  false, 0);
	if (ret != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "cobalt: recovering interrupted jobs failed: %s",
			 SPI_result_code_string(ret));
	n = (int) SPI_processed;
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		notices = lappend(notices,
						  outcome_notice(int64_column(tuple, desc, 1, 0), COBALT_STATE_UNKNOWN,
										 text_column(tuple, desc, 2), text_column(tuple, desc, 3)));
	}
	send_notices(notices);
	return n;
}

/* Read the CobaltPolledJob columns (id, account, remote_job_id, timeout_at). */
static CobaltPolledJob *
read_polled_job(HeapTuple tuple, TupleDesc desc)
{
	CobaltPolledJob *job = palloc0(sizeof(CobaltPolledJob));
	bool		isnull;
	Datum		d;

	job->id = int64_column(tuple, desc, 1, 0);
	job->account = text_column(tuple, desc, 2);
	job->remote_job_id = text_column(tuple, desc, 3);
	d = SPI_getbinval(tuple, desc, 4, &isnull);
	job->timeout_at = isnull ? DT_NOEND : DatumGetTimestampTz(d);
	return job;
}

/*
 * Every 'polling' job, as CobaltPolledJob in the current memory context
 * (the caller switches to a long-lived one).
 */
List *
cobalt_store_load_polling(void)
{
	List	   *jobs = NIL;
	MemoryContext target = CurrentMemoryContext;
	int			ret;

	ret = SPI_execute("SELECT id, account, remote_job_id, timeout_at FROM cobalt.jobs "
					  "WHERE next_due_at IS NOT NULL AND state OPERATOR(pg_catalog.=) 'polling'",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "cobalt: loading polling jobs failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(target);

		jobs = lappend(jobs, read_polled_job(SPI_tuptable->vals[i], SPI_tuptable->tupdesc));
		MemoryContextSwitchTo(old);
	}
	return jobs;
}

/*
 * Which of jobs ids[0..n-1] are no longer 'polling' (or no longer exist)?
 * Sets gone[i] for those.  For the poll schedule's reconciliation.
 */
void
cobalt_store_not_polling(const int64 *ids, int n, bool *gone)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1];
	Datum	   *elems;

	if (n == 0)
		return;
	prepare_once(&plan,
				 "SELECT u.i::pg_catalog.int4 FROM pg_catalog.unnest($1) WITH ORDINALITY AS u(id, i) "
				 " WHERE NOT EXISTS (SELECT 1 FROM cobalt.jobs j "
				 "                    WHERE j.id OPERATOR(pg_catalog.=) u.id "
				 "                      AND j.state OPERATOR(pg_catalog.=) 'polling')",
				 1, types);
	elems = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(ids[i]);
	values[0] = PointerGetDatum(construct_array(elems, n, INT8OID, 8, true, TYPALIGN_DOUBLE));
	if (SPI_execute_plan(plan, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "cobalt: reconciling the poll schedule failed");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int			i = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));

		if (i >= 1 && i <= n)
			gone[i - 1] = true;
	}
}

/*
 * Claim up to "limit" due queued jobs: they become 'sending' with one more
 * attempt, in this transaction.  Returns CobaltClaimedJob in the current
 * memory context.
 *
 * *from is where in next_due_at order the search starts (DT_NOBEGIN: at
 * the beginning).  When the claim fills its limit, *from moves to the last
 * claimed job, so that the next claim does not walk again over the index
 * entries of the jobs just claimed (they stay in jobs_due_idx, dead, until
 * vacuum: in a drain of thousands of jobs each claim would otherwise read
 * all the earlier ones).  When it does not, *from goes back to the
 * beginning: a job skipped because it was locked, or one due earlier than
 * the mark, is found by the next claim.
 */
List *
cobalt_store_claim_queued(int limit, TimestampTz *from)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT4OID, TIMESTAMPTZOID};
	Datum		values[2];
	List	   *jobs = NIL;
	MemoryContext target = CurrentMemoryContext;
	TimestampTz last = DT_NOBEGIN;

	/*
	 * The claimed ids are matched with "= ANY", never joined, so that no
	 * plan can hash the whole table to find them.  Planned with the
	 * parameters' values each time: a generic plan cannot see how few
	 * rows LIMIT $1 wants, and may then read every due job (a bitmap scan
	 * and a sort) instead of the first few from jobs_due_idx in its order;
	 * in a drain that is thousands of rows per claim.
	 */
	prepare_with_options(&plan,
				   "WITH due AS ("
				   "  SELECT d.id, d.next_due_at FROM cobalt.jobs d "
				   "   WHERE d.state OPERATOR(pg_catalog.=) 'queued' "
				   "     AND d.next_due_at OPERATOR(pg_catalog.>=) $2 "
				   "     AND d.next_due_at OPERATOR(pg_catalog.<=) pg_catalog.now() "
				   "   ORDER BY d.next_due_at LIMIT $1 "
				   "   FOR UPDATE SKIP LOCKED), "
				   "claimed AS ("
				   "  UPDATE cobalt.jobs j SET state = 'sending', "
				   "         attempts = j.attempts OPERATOR(pg_catalog.+) 1, "
				   "         sent_at = pg_catalog.now(), next_due_at = pg_catalog.now() "
				   "   WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT due.id FROM due)) "
				   "  RETURNING j.id, j.account, j.attempts, j.created_at, j.payload, j.operation) "
				   "SELECT c.id, c.account, c.attempts, c.created_at, c.payload, "
				   OPERATION_COLUMNS ", "
				   "       (SELECT pg_catalog.max(due.next_due_at) FROM due) "
				   "  FROM claimed c LEFT JOIN cobalt.operations o "
				   "       ON o.operation OPERATOR(pg_catalog.=) c.operation",
				   2, types, CURSOR_OPT_CUSTOM_PLAN);
	values[0] = Int32GetDatum(limit);
	values[1] = TimestampTzGetDatum(*from);
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "cobalt: claiming queued jobs failed");

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(target);
		CobaltClaimedJob *job = palloc0(sizeof(CobaltClaimedJob));
		bool		isnull;

		job->id = int64_column(tuple, desc, 1, 0);
		job->account = text_column(tuple, desc, 2);
		job->attempts = DatumGetInt32(SPI_getbinval(tuple, desc, 3, &isnull));
		job->created_at = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 4, &isnull));
		job->payload = DatumGetJsonbPCopy(SPI_getbinval(tuple, desc, 5, &isnull));
		read_operation(tuple, desc, 6, &job->op);
		job->operation_found = (job->op.operation != NULL);
		last = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 12, &isnull));
		jobs = lappend(jobs, job);
		MemoryContextSwitchTo(old);
	}
	*from = (list_length(jobs) >= limit) ? last : DT_NOBEGIN;
	return jobs;
}

/*
 * Claim up to "limit" jobs due for a single poll outside the in-memory
 * schedule: 'timed_out' jobs due for a late check, whose next check moves
 * "interval_ms" ahead (or stops once "window_ms" after their timeout has
 * passed), and 'polling' jobs an operator asked to recheck (next_due_at
 * moved before their timeout_at; it is put back).  Returns CobaltPolledJob
 * in the current memory context.
 */
List *
cobalt_store_claim_late_checks(int limit, int64 interval_ms, int64 window_ms)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {INT4OID, INT8OID, INT8OID};
	Datum		values[3];
	List	   *jobs = NIL;
	MemoryContext target = CurrentMemoryContext;

	prepare_once(&plan,
				   "UPDATE cobalt.jobs j SET next_due_at = CASE "
				 "    WHEN j.state OPERATOR(pg_catalog.=) 'polling' THEN j.timeout_at "
				 "    WHEN (pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $2 OPERATOR(pg_catalog./) 1000.0)) "
				 "         OPERATOR(pg_catalog.<) "
				 "         (j.timeout_at OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $3 OPERATOR(pg_catalog./) 1000.0)) "
				 "    THEN pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $2 OPERATOR(pg_catalog./) 1000.0) "
				 "    ELSE NULL END "
				 " WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY("
				 "           SELECT d.id FROM cobalt.jobs d "
				 "            WHERE d.state OPERATOR(pg_catalog.=) 'timed_out' "
				 "              AND d.next_due_at OPERATOR(pg_catalog.<=) pg_catalog.now() "
				 "            ORDER BY d.next_due_at LIMIT $1 FOR UPDATE SKIP LOCKED) "
				 "         OPERATOR(pg_catalog.||) ARRAY("
				 "           SELECT d.id FROM cobalt.jobs d "
				 "            WHERE d.state OPERATOR(pg_catalog.=) 'polling' "
				 "              AND d.next_due_at OPERATOR(pg_catalog.<=) pg_catalog.now() "
				 "              AND d.next_due_at OPERATOR(pg_catalog.<) d.timeout_at "
				 "            ORDER BY d.next_due_at LIMIT $1 FOR UPDATE SKIP LOCKED)) "
				 "RETURNING j.id, j.account, j.remote_job_id, j.timeout_at, j.state",
				 3, types);
	values[0] = Int32GetDatum(limit);
	values[1] = Int64GetDatum(interval_ms);
	values[2] = Int64GetDatum(window_ms);
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "cobalt: claiming late checks failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(target);
		CobaltPolledJob *job = read_polled_job(SPI_tuptable->vals[i], SPI_tuptable->tupdesc);

		job->state = text_column(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 5);
		jobs = lappend(jobs, job);
		MemoryContextSwitchTo(old);
	}
	return jobs;
}

/* A text[] from n C strings, NULL pointers as NULL elements. */
static Datum
text_array(const char **strings, int n, size_t stride)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	bool	   *nulls = palloc(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		const char *s = *(const char **) ((const char *) strings + i * stride);

		nulls[i] = (s == NULL);
		elems[i] = s ? CStringGetTextDatum(s) : (Datum) 0;
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  TEXTOID, -1, false, TYPALIGN_INT));
}

/* An array of a by-value type from a field of n updates. */
static Datum
value_array(CobaltJobUpdate *u, int n, Oid type, Datum (*get) (CobaltJobUpdate *))
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	int16		typlen;
	bool		typbyval;
	char		typalign;

	for (int i = 0; i < n; i++)
		elems[i] = get(&u[i]);
	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_array(elems, n, type, typlen, typbyval, typalign));
}

static Datum
get_id(CobaltJobUpdate *u)
{
	return Int64GetDatum(u->job_id);
}
static Datum
get_status(CobaltJobUpdate *u)
{
	return Int32GetDatum(u->http_status);
}
static Datum
get_next_due(CobaltJobUpdate *u)
{
	return Int64GetDatum(u->next_due_ms);
}
static Datum
get_timeout(CobaltJobUpdate *u)
{
	return Int64GetDatum(u->timeout_ms);
}
static Datum
get_finished(CobaltJobUpdate *u)
{
	return BoolGetDatum(u->finished);
}

#define UPDATE_TEXT_ARRAY(field) \
	text_array(&updates[0].field, n, sizeof(CobaltJobUpdate))

/* The outcomes applications hear about on channel cobalt_jobs. */
static bool
state_is_notified(const char *state)
{
	return strcmp(state, COBALT_STATE_SUCCEEDED) == 0 ||
		strcmp(state, COBALT_STATE_FAILED) == 0 ||
		strcmp(state, COBALT_STATE_TIMED_OUT) == 0 ||
		strcmp(state, COBALT_STATE_UNKNOWN) == 0;
}

/* {"job_id":…,"state":…,"operation":…,"account":…} */
static char *
outcome_notice(int64 id, const char *state, const char *operation, const char *account)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"job_id\": " INT64_FORMAT ", \"state\": ", id);
	escape_json(&buf, state);
	appendStringInfoString(&buf, ", \"operation\": ");
	escape_json(&buf, operation ? operation : "");
	appendStringInfoString(&buf, ", \"account\": ");
	escape_json(&buf, account ? account : "");
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/* NOTIFY cobalt_jobs once per notice, delivered when the transaction commits. */
static void
send_notices(List *notices)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TEXTARRAYOID};
	Datum		values[1];
	const char **texts;
	int			n = list_length(notices);
	ListCell   *lc;
	int			i = 0;

	if (n == 0)
		return;
	texts = palloc(sizeof(char *) * n);
	foreach(lc, notices)
		texts[i++] = lfirst(lc);
	prepare_once(&plan,
				 "SELECT pg_catalog.pg_notify('cobalt_jobs', p) FROM pg_catalog.unnest($1) p",
				 1, types);
	values[0] = text_array(texts, n, sizeof(char *));
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "cobalt: sending notifications failed");
}

/*
 * Run one batch UPDATE for updates[0..n-1] and mark the applied ones.
 * Errors propagate to the caller.
 */
static void
run_update_batch(CobaltJobUpdate *updates, int n)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[13] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID, BOOLARRAYOID};
	Datum		values[13];
	List	   *notices;

	prepare_once(&plan,
				 "UPDATE cobalt.jobs j SET "
				 "  state = u.to_state, "
				 "  remote_job_id = COALESCE(u.remote_job_id, j.remote_job_id), "
				 "  http_status = CASE WHEN u.http_status OPERATOR(pg_catalog.>) 0 "
				 "                THEN u.http_status ELSE j.http_status END, "
				 "  event_type = COALESCE(u.event_type, j.event_type), "
				 "  result = COALESCE(u.result::pg_catalog.jsonb, j.result), "
				 "  error = COALESCE(u.error, j.error), "
				 "  last_error = CASE WHEN u.last_error IS NULL THEN j.last_error "
				 "               WHEN u.last_error OPERATOR(pg_catalog.=) '' THEN NULL "
				 "               ELSE u.last_error END, "
				 "  attempt_errors = CASE WHEN u.attempt_error IS NULL THEN j.attempt_errors "
				 "    ELSE j.attempt_errors OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_array("
				 "      pg_catalog.jsonb_build_object('attempt', j.attempts, 'at', pg_catalog.now(), "
				 "        'http_status', NULLIF(u.http_status, 0), 'error', u.attempt_error)) END, "
				 "  next_due_at = CASE WHEN u.finished OR u.next_due_ms OPERATOR(pg_catalog.=) -1 THEN NULL "
				 "    WHEN u.next_due_ms OPERATOR(pg_catalog.<) 0 THEN j.next_due_at "
				 "    ELSE pg_catalog.now() OPERATOR(pg_catalog.+) "
				 "         pg_catalog.make_interval(secs => u.next_due_ms OPERATOR(pg_catalog./) 1000.0) END, "
				 "  accepted_at = CASE WHEN u.timeout_ms OPERATOR(pg_catalog.>=) 0 "
				 "    THEN pg_catalog.now() ELSE j.accepted_at END, "
				 "  timeout_at = CASE WHEN u.timeout_ms OPERATOR(pg_catalog.>=) 0 "
				 "    THEN pg_catalog.now() OPERATOR(pg_catalog.+) "
				 "         pg_catalog.make_interval(secs => u.timeout_ms OPERATOR(pg_catalog./) 1000.0) "
				 "    ELSE j.timeout_at END, "
				 "  finished_at = CASE WHEN u.finished THEN pg_catalog.now() ELSE j.finished_at END "
				 "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), "
				 "  pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), "
				 "  pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9), "
				 "  pg_catalog.unnest($10), pg_catalog.unnest($11), pg_catalog.unnest($12), "
				 "  pg_catalog.unnest($13)) "
				 "  AS u(id, from_state, to_state, remote_job_id, http_status, event_type, "
				 "       result, error, last_error, attempt_error, next_due_ms, timeout_ms, finished) "
				 "WHERE j.id OPERATOR(pg_catalog.=) u.id "
				 "  AND j.state OPERATOR(pg_catalog.=) u.from_state "
				 "RETURNING j.id, j.operation, j.account",
				 13, types);

	values[0] = value_array(updates, n, INT8OID, get_id);
	values[1] = UPDATE_TEXT_ARRAY(from_state);
	values[2] = UPDATE_TEXT_ARRAY(to_state);
	values[3] = UPDATE_TEXT_ARRAY(remote_job_id);
	values[4] = value_array(updates, n, INT4OID, get_status);
	values[5] = UPDATE_TEXT_ARRAY(event_type);
	values[6] = UPDATE_TEXT_ARRAY(result_json);
	values[7] = UPDATE_TEXT_ARRAY(error);
	values[8] = UPDATE_TEXT_ARRAY(last_error);
	values[9] = UPDATE_TEXT_ARRAY(attempt_error);
	values[10] = value_array(updates, n, INT8OID, get_next_due);
	values[11] = value_array(updates, n, INT8OID, get_timeout);
	values[12] = value_array(updates, n, BOOLOID, get_finished);

	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "cobalt: recording job outcomes failed");

	notices = NIL;
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int64		id = int64_column(tuple, desc, 1, 0);

		for (int i = 0; i < n; i++)
		{
			CobaltJobUpdate *u = &updates[i];

			if (u->job_id != id)
				continue;
			u->applied = true;
			if (strcmp(u->from_state, u->to_state) != 0 && state_is_notified(u->to_state))
				notices = lappend(notices,
								  outcome_notice(id, u->to_state, text_column(tuple, desc, 2),
												 text_column(tuple, desc, 3)));
		}
	}
	send_notices(notices);
}

/*
 * Run fn(arg) in a subtransaction; on error, log it as "what", roll the
 * subtransaction back and return false.
 */
static bool
try_in_subtransaction(void (*fn) (void *), void *arg, const char *what)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ereport(WARNING,
				(errmsg("cobalt worker could not %s: %s", what, edata->message)));
		cobalt_report_worker_error(edata->message);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return ok;
}

typedef struct UpdateBatch
{
	CobaltJobUpdate *updates;
	int			n;
} UpdateBatch;

static void
update_batch_fn(void *arg)
{
	UpdateBatch *b = arg;

	run_update_batch(b->updates, b->n);
}

static bool
try_update_batch(CobaltJobUpdate *updates, int n)
{
	UpdateBatch b = {updates, n};

	return try_in_subtransaction(update_batch_fn, &b, "record job outcomes");
}

/*
 * Apply a batch of job changes in one statement.  If the batch fails (for
 * instance an answer that jsonb refuses), each change is retried alone, and
 * one that still fails is retried without its result, so one bad answer
 * never holds back the other jobs.
 */
void
cobalt_store_apply_updates(CobaltJobUpdate *updates, int n)
{
	if (n == 0 || try_update_batch(updates, n))
		return;
	for (int i = 0; i < n; i++)
	{
		if (try_update_batch(&updates[i], 1))
			continue;
		updates[i].result_json = NULL;
		updates[i].event_type = NULL;
		if (updates[i].error == NULL)
			updates[i].error = "Cobalt's answer could not be stored";
		if (!try_update_batch(&updates[i], 1))
			elog(WARNING, "cobalt worker could not record the outcome of job %lld",
				 (long long) updates[i].job_id);
	}
}

typedef struct EventBatch
{
	CobaltPolledEvent *events;
	int			n;
} EventBatch;

static void
insert_events_fn(void *arg)
{
	static SPIPlanPtr plan = NULL;
	EventBatch *b = arg;
	Oid			types[5] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[5];
	Datum	   *ids = palloc(sizeof(Datum) * b->n);

	prepare_once(&plan,
				 "INSERT INTO cobalt.events (job_id, remote_job_id, event_id, event_type, data, source) "
				 "SELECT e.job_id, e.remote_job_id, e.event_id, e.event_type, e.data::pg_catalog.jsonb, 'poll' "
				 "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), "
				 "                pg_catalog.unnest($4), pg_catalog.unnest($5)) "
				 "     AS e(job_id, remote_job_id, event_id, event_type, data) "
				 "WHERE EXISTS (SELECT 1 FROM cobalt.jobs j WHERE j.id OPERATOR(pg_catalog.=) e.job_id) "
				 "ON CONFLICT DO NOTHING",
				 5, types);
	for (int i = 0; i < b->n; i++)
		ids[i] = Int64GetDatum(b->events[i].job_id);
	values[0] = PointerGetDatum(construct_array(ids, b->n, INT8OID, 8, true, TYPALIGN_DOUBLE));
	values[1] = text_array(&b->events[0].remote_job_id, b->n, sizeof(CobaltPolledEvent));
	values[2] = text_array(&b->events[0].event_id, b->n, sizeof(CobaltPolledEvent));
	values[3] = text_array(&b->events[0].event_type, b->n, sizeof(CobaltPolledEvent));
	values[4] = text_array(&b->events[0].data_json, b->n, sizeof(CobaltPolledEvent));
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "cobalt: recording polled events failed");
}

/*
 * Keep the events polls brought in cobalt.events, one row per distinct
 * event (an event already delivered by webhook is not stored twice).
 */
void
cobalt_store_insert_events(CobaltPolledEvent *events, int n)
{
	if (n == 0)
		return;
	if (!try_in_subtransaction(insert_events_fn, &(EventBatch) {events, n}, "record polled events"))
		for (int i = 0; i < n; i++)
			(void) try_in_subtransaction(insert_events_fn, &(EventBatch) {&events[i], 1},
										 "record a polled event");
}

typedef struct Expiry
{
	int64		retention_s;
	int			limit;
	int			deleted;
} Expiry;

static void
delete_expired_fn(void *arg)
{
	static SPIPlanPtr jobs_plan = NULL;
	static SPIPlanPtr events_plan = NULL;
	Expiry	   *x = arg;
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2];

	prepare_once(&jobs_plan,
				 "WITH doomed AS ("
				 "  SELECT id FROM cobalt.jobs "
				 "   WHERE finished_at OPERATOR(pg_catalog.<) "
				 "         (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1)) "
				 "     AND state OPERATOR(pg_catalog.=) ANY ('{succeeded,failed,cancelled}'::pg_catalog.text[]) "
				 "   ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED) "
				 "DELETE FROM cobalt.jobs j USING doomed WHERE j.id OPERATOR(pg_catalog.=) doomed.id",
				 2, types);
	prepare_once(&events_plan,
				 "DELETE FROM cobalt.events WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
				 "  SELECT id FROM cobalt.events WHERE job_id IS NULL "
				 "     AND received_at OPERATOR(pg_catalog.<) "
				 "         (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1)) "
				 "   ORDER BY received_at LIMIT $2))",
				 2, types);
	values[0] = Int64GetDatum(x->retention_s);
	values[1] = Int32GetDatum(x->limit);
	if (SPI_execute_plan(jobs_plan, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "cobalt: deleting expired jobs failed");
	x->deleted = (int) SPI_processed;
	if (SPI_execute_plan(events_plan, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "cobalt: deleting expired events failed");
}

/*
 * Delete up to "limit" jobs that finished (succeeded, failed, cancelled)
 * more than retention_s ago, with their events, and as many unmatched
 * events; never unknown or timed_out jobs.  A failure is logged and does
 * not hold back the rest of the worker's transaction.  Returns the jobs
 * deleted.
 */
int
cobalt_store_delete_expired(int64 retention_s, int limit)
{
	Expiry		x = {retention_s, limit, 0};

	if (!try_in_subtransaction(delete_expired_fn, &x, "delete expired jobs"))
		return 0;
	return x.deleted;
}

/* Jobs due now (queued or due for a late check).  Connects to SPI itself. */
int64
cobalt_store_count_due(void)
{
	int64		n = 0;
	bool		isnull;

	SPI_connect();
	if (SPI_execute("SELECT pg_catalog.count(*) FROM cobalt.jobs "
					"WHERE next_due_at OPERATOR(pg_catalog.<=) pg_catalog.now() "
					"  AND state OPERATOR(pg_catalog.=) ANY ('{queued,timed_out}'::pg_catalog.text[])",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
		n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return n;
}

/*
 * Load client credentials and every account's token into "cxt" (reset by
 * the caller beforehand).  Missing client credentials leave them NULL.
 */
void
cobalt_store_load_credentials(CobaltCredentials *creds, MemoryContext cxt)
{
	HASHCTL		info;
	int			ret;

	memset(&info, 0, sizeof(info));
	info.keysize = ACCOUNT_KEY_SIZE;
	info.entrysize = sizeof(TokenEntry);
	info.hcxt = cxt;
	creds->tokens = hash_create("cobalt tokens", 64, &info,
								HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	creds->client_id = NULL;
	creds->client_secret = NULL;

	ret = SPI_execute("SELECT client_id, client_secret FROM cobalt.client", true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "cobalt: reading client credentials failed");
	if (SPI_processed == 1)
	{
		creds->client_id = MemoryContextStrdup(cxt,
											   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		creds->client_secret = MemoryContextStrdup(cxt,
												   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
	}

	ret = SPI_execute("SELECT account, access_token FROM cobalt.accounts", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "cobalt: reading account tokens failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *account = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *token = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		TokenEntry *entry;

		if (strlen(account) >= ACCOUNT_KEY_SIZE)
			continue;
		entry = hash_search(creds->tokens, account, HASH_ENTER, NULL);
		entry->token = MemoryContextStrdup(cxt, token);
	}
}

/* An account's access token, or NULL when the account is unknown. */
const char *
cobalt_credentials_token(CobaltCredentials *creds, const char *account)
{
	TokenEntry *entry;

	if (creds->tokens == NULL || account == NULL ||
		strlen(account) >= ACCOUNT_KEY_SIZE)
		return NULL;
	entry = hash_search(creds->tokens, account, HASH_FIND, NULL);
	return entry ? entry->token : NULL;
}

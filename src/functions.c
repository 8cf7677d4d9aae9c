/*-------------------------------------------------------------------------
 *
 * functions.c
 *		SQL-callable functions: cobalt_submit, cobalt_job_status,
 *		cobalt_wait, and the worker wake-up used by the admin functions.
 *
 * These are entry points only: argument checks and error reporting live
 * here, every table access in store.c.  Bad input is refused with an
 * ERROR carrying an errcode and a hint before anything is inserted.
 *
 * cobalt_wait sleeps on a condition variable in shared memory that the
 * worker broadcasts after each commit of job outcomes, re-reading the job
 * with a fresh snapshot after every wake-up; the sleep is bounded so that
 * even a missed broadcast costs at most WAIT_RECHECK_MS.
 *
 * src/functions.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "cobalt.h"

#define WAIT_RECHECK_MS 1000

PG_FUNCTION_INFO_V1(cobalt_submit);
PG_FUNCTION_INFO_V1(cobalt_job_status);
PG_FUNCTION_INFO_V1(cobalt_wait);
PG_FUNCTION_INFO_V1(cobalt_wake_at_commit);
PG_FUNCTION_INFO_V1(cobalt_outer_user);
PG_FUNCTION_INFO_V1(cobalt_hmac_matches);
PG_FUNCTION_INFO_V1(cobalt_worker_status);

/* A required text argument as a C string; ERROR when NULL or empty. */
static char *
required_text_arg(FunctionCallInfo fcinfo, int argno, const char *name,
				  const char *hint)
{
	char	   *s;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cobalt %s must not be null", name),
				 errhint("%s", hint)));
	s = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (s[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cobalt %s must not be empty", name),
				 errhint("%s", hint)));
	return s;
}

/* The job id argument; ERROR when NULL or not positive. */
static int64
job_id_arg(FunctionCallInfo fcinfo)
{
	int64		id;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cobalt job id must not be null"),
				 errhint("Pass the id cobalt_submit returned.")));
	id = PG_GETARG_INT64(0);
	if (id <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cobalt job id must be positive"),
				 errdetail("Job ids are the positive numbers cobalt_submit returns."),
				 errhint("Pass the id cobalt_submit returned.")));
	return id;
}

/*
 * cobalt_submit(operation text, payload jsonb, account text DEFAULT NULL)
 * returns bigint: queue one Cobalt operation; it is sent once the calling
 * transaction commits.  Returns the local job id.
 */
Datum
cobalt_submit(PG_FUNCTION_ARGS)
{
	char	   *operation = required_text_arg(fcinfo, 0, "operation",
												  "Name one of the operations in cobalt.operations, such as 'appointment.create'.");
	char	   *account = NULL;
	Jsonb	   *payload;
	CobaltSubmitContext ctx;
	int64		id;
	Oid			save_userid;
	int			save_sec;
	OverrideSearchPath pinned;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cobalt payload must not be null"),
				 errhint("Pass the operation's fields as a JSON object, for example '{\"mrn\": \"1234\"}'.")));
	payload = PG_GETARG_JSONB_P(1);
	if (!PG_ARGISNULL(2))
		account = required_text_arg(fcinfo, 2, "account",
									"Name an account added with cobalt_add_account, or leave it out when only one exists.");

	/*
	 * Read and write cobalt's tables as the extension's owner, with the
	 * search path pinned to pg_catalog.  Done here rather than with
	 * SECURITY DEFINER ... SET search_path, whose per-call configuration
	 * change costs about a third of a submit.  An error restores both (at
	 * (sub)transaction abort).
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(cobalt_extension_owner(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	pinned.schemas = NIL;
	pinned.addCatalog = true;
	pinned.addTemp = false;
	pinned.generation = 0;
	PushOverrideSearchPath(&pinned);

	cobalt_store_submit_context(operation, account, &ctx);

	if (!ctx.operation_found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("unknown cobalt operation \"%s\"", operation),
				 errhint("Valid operations are: %s.", cobalt_store_operation_list())));
	if (!ctx.client_set)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cobalt client credentials are not set"),
				 errhint("Call cobalt_set_client(client_id, client_secret) first.")));
	if (account != NULL && ctx.naccounts == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("unknown cobalt account \"%s\"", account),
				 errhint("Add it with cobalt_add_account(account, access_token).")));
	if (account == NULL && ctx.naccounts == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no cobalt account exists"),
				 errhint("Add one with cobalt_add_account(account, access_token).")));
	if (account == NULL && ctx.naccounts > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cobalt account must be given when several accounts exist"),
				 errhint("Pass account => 'name'; the accounts are listed in cobalt.accounts.")));

	cobalt_validate_payload(&ctx.op, payload);
	id = cobalt_store_insert_job(ctx.op.operation, ctx.account, payload);

	PopOverrideSearchPath();
	SetUserIdAndSecContext(save_userid, save_sec);
	cobalt_wake_worker_at_commit(false);
	PG_RETURN_INT64(id);
}

/* The result row type of cobalt_job_status and cobalt_wait. */
static TupleDesc
status_desc(FunctionCallInfo fcinfo)
{
	TupleDesc	desc;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "cobalt: function must return a composite type");
	return BlessTupleDesc(desc);
}

static void
report_no_such_job(int64 id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("cobalt job %lld does not exist", (long long) id),
			 errhint("Job ids are returned by cobalt_submit and listed in cobalt.jobs.")));
}

/*
 * cobalt_job_status(job_id bigint) returns cobalt.job_status: the job's
 * current row.  ERROR when there is no such job.
 */
Datum
cobalt_job_status(PG_FUNCTION_ARGS)
{
	int64		id = job_id_arg(fcinfo);
	TupleDesc	desc = status_desc(fcinfo);
	char	   *state;
	HeapTuple	tuple = cobalt_store_job_status(id, &desc, &state);

	if (tuple == NULL)
		report_no_such_job(id);
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}

/*
 * cobalt_wait(job_id bigint, timeout interval DEFAULT '2 min') returns
 * cobalt.job_status: block until the job reaches succeeded, failed,
 * timed_out, unknown or cancelled, or until the timeout; return its row
 * either way.  Sends nothing itself; interruptible (statement_timeout,
 * pg_cancel_backend) at every wake-up.
 */
Datum
cobalt_wait(PG_FUNCTION_ARGS)
{
	int64		id = job_id_arg(fcinfo);
	TupleDesc	desc = status_desc(fcinfo);
	Interval   *timeout;
	TimestampTz deadline;
	HeapTuple	tuple;
	char	   *state;
	bool		sleeping = false;
	int64		timeout_us;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cobalt_wait timeout must not be null"),
				 errhint("Leave it out to wait up to 2 minutes.")));
	timeout = PG_GETARG_INTERVAL_P(1);
	timeout_us = timeout->time +
		(int64) timeout->day * USECS_PER_DAY +
		(int64) timeout->month * DAYS_PER_MONTH * USECS_PER_DAY;
	if (timeout_us < 0 || timeout_us > (int64) 7 * USECS_PER_DAY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cobalt_wait timeout must be between 0 and 7 days"),
				 errhint("Wait in shorter steps, or check back later with cobalt_job_status.")));
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_us / 1000);

	for (;;)
	{
		long		left_ms;

		/* prepare before reading, so a broadcast after the read is not lost */
		if (cobalt_shared != NULL && !sleeping)
		{
			ConditionVariablePrepareToSleep(&cobalt_shared->outcome_cv);
			sleeping = true;
		}

		tuple = cobalt_store_job_status(id, &desc, &state);
		if (tuple == NULL)
			report_no_such_job(id);
		if (cobalt_state_is_final(state))
			break;
		left_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (left_ms <= 0)
			break;
		if (IsolationUsesXactSnapshot())
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cobalt_wait cannot wait in a REPEATABLE READ or SERIALIZABLE transaction"),
					 errdetail("The transaction's snapshot would never show the worker's progress."),
					 errhint("Call cobalt_wait in a READ COMMITTED transaction.")));

		if (cobalt_shared != NULL)
			ConditionVariableTimedSleep(&cobalt_shared->outcome_cv,
										Min(left_ms, WAIT_RECHECK_MS),
										PG_WAIT_EXTENSION);
		else
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(left_ms, 100), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		CHECK_FOR_INTERRUPTS();
		heap_freetuple(tuple);
	}
	if (sleeping)
		ConditionVariableCancelSleep();
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}

/*
 * cobalt._outer_user(): the role that called into cobalt (SET ROLE
 * respected), not the owner a SECURITY DEFINER function runs as.
 */
Datum
cobalt_outer_user(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(GetUserNameFromId(GetOuterUserId(), false)));
}

/*
 * cobalt._wake_at_commit(credentials_changed boolean): wake the worker when
 * the calling transaction commits, and have it reload client credentials
 * and tokens if they changed.
 */
Datum
cobalt_wake_at_commit(PG_FUNCTION_ARGS)
{
	cobalt_wake_worker_at_commit(!PG_ARGISNULL(0) && PG_GETARG_BOOL(0));
	PG_RETURN_VOID();
}

/*
 * cobalt._hmac_matches(secret text, body text, signature text): is
 * "signature" the hex HMAC-SHA256 of the exact bytes of "body" keyed with
 * "secret"?  Hex digits of either case; compared in constant time.
 */
Datum
cobalt_hmac_matches(PG_FUNCTION_ARGS)
{
	text	   *secret = PG_GETARG_TEXT_PP(0);
	text	   *body = PG_GETARG_TEXT_PP(1);
	text	   *signature = PG_GETARG_TEXT_PP(2);
	const char *sig = VARDATA_ANY(signature);
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	static const char hex[] = "0123456789abcdef";
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	unsigned char diff = 0;

	if (ctx == NULL ||
		pg_hmac_init(ctx, (const uint8 *) VARDATA_ANY(secret), VARSIZE_ANY_EXHDR(secret)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body)) < 0 ||
		pg_hmac_final(ctx, mac, sizeof(mac)) < 0)
		elog(ERROR, "cobalt: could not compute HMAC-SHA256: %s", pg_hmac_error(ctx));
	pg_hmac_free(ctx);

	if (VARSIZE_ANY_EXHDR(signature) != 2 * PG_SHA256_DIGEST_LENGTH)
		PG_RETURN_BOOL(false);
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
	{
		diff |= (unsigned char) (pg_ascii_tolower((unsigned char) sig[2 * i]) ^ hex[mac[i] >> 4]);
		diff |= (unsigned char) (pg_ascii_tolower((unsigned char) sig[2 * i + 1]) ^ hex[mac[i] & 15]);
	}
	PG_RETURN_BOOL(diff == 0);
}

/*
 * cobalt_worker_status(): the worker's pid, start time, requests in flight,
 * jobs polling and due now, and its last error.  pid and started_at are
 * NULL while no worker runs.
 */
Datum
cobalt_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[7];
	bool		nulls[7] = {0};
	CobaltShared snapshot;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "cobalt: function must return a composite type");
	if (cobalt_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cobalt is not loaded through shared_preload_libraries"),
				 errhint("Add cobalt to shared_preload_libraries and restart the server.")));

	SpinLockAcquire(&cobalt_shared->mutex);
	memcpy(&snapshot, cobalt_shared, sizeof(snapshot));
	SpinLockRelease(&cobalt_shared->mutex);

	if (snapshot.worker_pid != 0)
	{
		values[0] = Int32GetDatum(snapshot.worker_pid);
		values[1] = TimestampTzGetDatum(snapshot.worker_started_at);
	}
	else
		nulls[0] = nulls[1] = true;
	values[2] = Int32GetDatum(snapshot.worker_pid ? snapshot.requests_in_flight : 0);
	values[3] = Int32GetDatum(snapshot.worker_pid ? snapshot.jobs_polling : 0);
	values[4] = Int64GetDatum(cobalt_store_count_due());
	if (snapshot.last_error[0] != '\0')
	{
		values[5] = CStringGetTextDatum(snapshot.last_error);
		values[6] = TimestampTzGetDatum(snapshot.last_error_at);
	}
	else
		nulls[5] = nulls[6] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

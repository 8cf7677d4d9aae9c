/*-------------------------------------------------------------------------
 *
 * functions.c
 *		SQL-callable functions: cobalt_submit, cobalt_job_status,
 *		cobalt_wait, the operator functions' access checks, the webhook
 *		signature check, the worker's status, and the wake-up used by the
 *		SQL functions.
 *
 * These are entry points only: argument checks and error reporting live
 * here, every table access in store.c, the rules of who may do what in
 * access.c.  Bad input is refused with an ERROR carrying an errcode and a
 * hint before anything is inserted.
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
#include "catalog/pg_type.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "cobalt.h"

#define WAIT_RECHECK_MS 1000

PG_FUNCTION_INFO_V1(cobalt_submit);
PG_FUNCTION_INFO_V1(cobalt_job_status);
PG_FUNCTION_INFO_V1(cobalt_wait);
PG_FUNCTION_INFO_V1(cobalt_wake_at_commit);
PG_FUNCTION_INFO_V1(cobalt_recheck);
PG_FUNCTION_INFO_V1(cobalt_retry);
PG_FUNCTION_INFO_V1(cobalt_cancel);
PG_FUNCTION_INFO_V1(cobalt_resolve);
PG_FUNCTION_INFO_V1(cobalt_read_secret_file_sql);
PG_FUNCTION_INFO_V1(cobalt_grant_account);
PG_FUNCTION_INFO_V1(cobalt_revoke_account);
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
 * ERROR for a submit that found no account the caller may use ("account"
 * is the one asked for, or NULL).  To a role that is not the owner, an
 * account that does not exist and one it was not granted look the same.
 */
static void
report_no_usable_account(const char *account, const char *caller_name,
						 bool caller_is_owner)
{
	if (account != NULL && caller_is_owner)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("unknown cobalt account \"%s\"", account),
				 errhint("Add it with cobalt_add_account(account, access_token).")));
	if (account != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for cobalt account \"%s\"", account),
				 errdetail("Role \"%s\" may submit jobs only for the accounts granted to it or to a role it belongs to.",
						   caller_name),
				 errhint("The extension's owner grants an account with cobalt_grant_account(account, role).")));
	if (caller_is_owner)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no cobalt account exists"),
				 errhint("Add one with cobalt_add_account(account, access_token).")));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("no cobalt account is granted to role \"%s\"", caller_name),
			 errhint("The extension's owner grants an account with cobalt_grant_account(account, role).")));
}

/*
 * cobalt_submit(operation text, payload jsonb, account text DEFAULT NULL)
 * returns bigint: queue one Cobalt operation for an account the caller may
 * use; it is sent once the calling transaction commits.  Returns the local
 * job id.
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
	Oid			caller = GetUserId();
	Oid			owner;
	bool		caller_is_owner;
	char	   *caller_name;
	CobaltSavedUser saved;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cobalt payload must not be null"),
				 errhint("Pass the operation's fields as a JSON object, for example '{\"mrn\": \"1234\"}'.")));
	payload = PG_GETARG_JSONB_P(1);
	if (!PG_ARGISNULL(2))
		account = required_text_arg(fcinfo, 2, "account",
									"Name an account added with cobalt_add_account, or leave it out when only one exists.");
	cobalt_check_payload_limits(payload);

	/*
	 * Read and write cobalt's tables as the extension's owner, with the
	 * search path pinned.  Done here rather than with SECURITY DEFINER ...
	 * SET search_path, whose per-call configuration change costs about a
	 * third of a submit.  An error restores both (at (sub)transaction
	 * abort).
	 */
	owner = cobalt_extension_owner();
	caller_is_owner = has_privs_of_role(caller, owner);
	caller_name = GetUserNameFromId(caller, false);
	cobalt_act_as_owner(&saved, owner);

	cobalt_submit_context(operation, account, caller, caller_is_owner, &ctx);

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
	if (ctx.naccounts == 0)
		report_no_usable_account(account, caller_name, caller_is_owner);
	if (account == NULL && ctx.naccounts > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cobalt account must be given when several accounts exist"),
				 caller_is_owner ?
				 errhint("Pass account => 'name'; the accounts are listed in cobalt.accounts.") :
				 errhint("Pass account => 'name'; the accounts granted to you are listed in cobalt.account_grants.")));

	cobalt_validate_payload(&ctx.op, payload);
	id = cobalt_store_insert_job(ctx.op.operation, ctx.account, payload, caller_name);

	cobalt_act_as_caller(&saved);
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
	HeapTuple	tuple;

	cobalt_require_job_reader(GetUserId());
	cobalt_pin_search_path();
	tuple = cobalt_store_job_status(id, &desc, &state);
	cobalt_unpin_search_path();
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

	cobalt_require_job_reader(GetUserId());
	cobalt_pin_search_path();
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
	cobalt_unpin_search_path();
	if (sleeping)
		ConditionVariableCancelSleep();
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}

/*
 * ERROR, as if it did not exist, unless the caller may see job "id"
 * through cobalt.jobs' row security.
 */
static void
require_visible_job(int64 id)
{
	bool		visible;

	cobalt_require_job_reader(GetUserId());
	cobalt_pin_search_path();
	visible = cobalt_store_job_visible(id);
	cobalt_unpin_search_path();
	if (!visible)
		report_no_such_job(id);
}

/*
 * The operator functions: check the caller may see the job, then run the
 * internal function of the same name as the extension's owner.  The
 * arguments after the job id are passed as they are (NULLs included: the
 * internal functions check them), then, for those that record who acted,
 * the caller's name.
 */
static Datum
job_operator(FunctionCallInfo fcinfo, const char *internal, int nargs,
			 const Oid *types, bool add_caller)
{
	int64		id = job_id_arg(fcinfo);
	Oid			argtypes[COBALT_INTERNAL_MAX_ARGS];
	Datum		args[COBALT_INTERNAL_MAX_ARGS];
	bool		nulls[COBALT_INTERNAL_MAX_ARGS];
	int			n = 0;
	bool		isnull;
	Datum		result;

	require_visible_job(id);
	argtypes[n] = INT8OID;
	args[n] = Int64GetDatum(id);
	nulls[n++] = false;
	for (int i = 1; i < nargs; i++)
	{
		argtypes[n] = types[i];
		nulls[n] = PG_ARGISNULL(i);
		args[n] = nulls[n] ? (Datum) 0 : PG_GETARG_DATUM(i);
		n++;
	}
	if (add_caller)
	{
		argtypes[n] = TEXTOID;
		args[n] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
		nulls[n++] = false;
	}
	result = cobalt_call_as_owner(internal, n, argtypes, args, nulls, &isnull);
	if (isnull)
		PG_RETURN_NULL();
	return result;
}

/* cobalt_recheck(job_id bigint) returns cobalt.job_status */
Datum
cobalt_recheck(PG_FUNCTION_ARGS)
{
	static const Oid types[] = {INT8OID};

	return job_operator(fcinfo, "_recheck", 1, types, false);
}

/* cobalt_retry(job_id bigint, force boolean DEFAULT false) returns bigint */
Datum
cobalt_retry(PG_FUNCTION_ARGS)
{
	static const Oid types[] = {INT8OID, BOOLOID};

	return job_operator(fcinfo, "_retry", 2, types, true);
}

/* cobalt_cancel(job_id bigint) returns cobalt.job_status */
Datum
cobalt_cancel(PG_FUNCTION_ARGS)
{
	static const Oid types[] = {INT8OID};

	return job_operator(fcinfo, "_cancel", 1, types, false);
}

/*
 * cobalt_resolve(job_id bigint, state text, note text) returns
 * cobalt.job_status
 */
Datum
cobalt_resolve(PG_FUNCTION_ARGS)
{
	static const Oid types[] = {INT8OID, TEXTOID, TEXTOID};

	return job_operator(fcinfo, "_resolve", 3, types, true);
}

/*
 * cobalt_grant_account(account text, role regrole) and
 * cobalt_revoke_account(account text, role regrole): for the extension's
 * owner (and its members, and superusers) only; the internal functions do
 * the work as the owner.
 */
static Datum
account_grant(FunctionCallInfo fcinfo, bool grant)
{
	Oid			argtypes[3] = {TEXTOID, REGROLEOID, TEXTOID};
	Datum		args[3];
	bool		nulls[3] = {false, false, false};
	bool		isnull;

	if (!has_privs_of_role(GetUserId(), cobalt_extension_owner()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s cobalt accounts", grant ? "grant" : "revoke"),
				 errdetail("Only the owner of the cobalt extension, its members and superusers administer cobalt."),
				 errhint("Ask the extension's owner to do it.")));
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_GETARG_OID(1) == InvalidOid)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cobalt account and role must not be null"),
				 errhint("Name an account added with cobalt_add_account and an existing role.")));
	args[0] = PG_GETARG_DATUM(0);
	args[1] = PG_GETARG_DATUM(1);
	args[2] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	(void) cobalt_call_as_owner(grant ? "_grant_account" : "_revoke_account",
								grant ? 3 : 2, argtypes, args, nulls, &isnull);
	PG_RETURN_VOID();
}

Datum
cobalt_grant_account(PG_FUNCTION_ARGS)
{
	return account_grant(fcinfo, true);
}

Datum
cobalt_revoke_account(PG_FUNCTION_ARGS)
{
	return account_grant(fcinfo, false);
}

/*
 * cobalt._read_secret_file(path text) returns text: a secret from a file
 * the server can read (see cobalt_read_secret_file).
 */
Datum
cobalt_read_secret_file_sql(PG_FUNCTION_ARGS)
{
	char	   *secret = cobalt_read_secret_file(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	text	   *result = cstring_to_text(secret);

	explicit_bzero(secret, strlen(secret));
	PG_RETURN_TEXT_P(result);
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

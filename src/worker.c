/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The cobalt background worker: sends queued jobs, polls accepted ones
 *		to an outcome, and records what happened.
 *
 * One loop, one process.  Each turn it
 *	1. runs a short transaction (a "tick") that records the outcomes
 *	   gathered since the last tick, times out overdue jobs, and claims due
 *	   queued jobs and late checks ('sending' is committed here, before any
 *	   request leaves);
 *	2. starts the claimed requests and the polls that are due, at most
 *	   cobalt.max_concurrent_requests in flight;
 *	3. waits on its latch and libcurl's sockets together, then lets libcurl
 *	   work and classifies each finished exchange into a pending update.
 * No transaction is ever open while a request is in flight.
 *
 * Jobs in 'polling' are scheduled in memory (schedule.c), so an unchanged
 * poll writes nothing.  They are loaded from the table at start, when
 * every job left in 'sending' becomes 'unknown' (it may have reached
 * Cobalt; it is never sent again).
 *
 * The tick is guarded: an error rolls it back, is logged, and the loop goes
 * on after a pause, so a dropped extension or a bad row never crash-loops
 * the worker.  If the extension is missing, the worker idles and checks
 * again every few seconds.
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "common/pg_prng.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "cobalt.h"
#include "cobalt_pure.h"

#define MISSING_EXTENSION_RECHECK_MS	2000
#define TICK_ERROR_PAUSE_MS				1000
#define FALLBACK_SCAN_MS				1000
#define CREDENTIALS_RELOAD_MS			10000
#define SHUTDOWN_GRACE_MS				500
#define RETENTION_EVERY_MS				1000
#define MIN_TICK_GAP_MS					10	/* gather work this long between ticks */
#define RETENTION_BATCH					500

typedef enum RequestKind
{
	REQUEST_SEND,
	REQUEST_POLL,
	REQUEST_LATE_CHECK
} RequestKind;

/* One request in flight; lives in its own memory context. */
typedef struct WorkerRequest
{
	CobaltHttpRequest http;
	MemoryContext cxt;
	RequestKind kind;
	const char *from_state;		/* polls: the state the job is polled in */
	char	   *remote_job_id;	/* polls */
	int64		job_id;
	int			attempts;
	TimestampTz created_at;
	int64		op_timeout_ms;
	char	   *account;
	CobaltPollEntry *entry;		/* REQUEST_POLL */
} WorkerRequest;

/* What to do once an update has been committed. */
typedef struct Followup
{
	CobaltPollEntry *entry;		/* entry to release after commit */
	bool		start_polling;	/* create an entry from the update */
	char	   *account;
} Followup;

static CobaltHttp *http = NULL;
static MemoryContext worker_cxt;	/* lives as long as the worker */
static MemoryContext loop_cxt;	/* reset every turn */
static MemoryContext pending_cxt;	/* pending updates, reset after commit */
static MemoryContext creds_cxt; /* credentials, reset on reload */

static Oid	extension_oid = InvalidOid;

static CobaltJobUpdate *pending;
static Followup *followups;
static int	npending = 0;
static int	pending_cap = 0;

static CobaltPolledEvent *pending_events;	/* in pending_cxt */
static int	npending_events = 0;
static int	pending_events_cap = 0;
static TimestampTz retention_ran_at = 0;
static bool retention_behind = false;	/* the last batch was full */

static CobaltCredentials creds;
static uint64 creds_generation = 0;
static TimestampTz creds_loaded_at = 0;
static bool creds_loaded = false;

static bool step_aside = false;	/* the database is being dropped/altered */
static List *ready_requests = NIL;	/* built in a tick, started after commit */
static bool more_queued = false;	/* the last claim filled its batch */
static TimestampTz claim_from = DT_NOBEGIN; /* where the next claim starts */
static bool any_final_committed = false;

/* Reserve one pending update (zeroed, with "leave alone" defaults). */
static CobaltJobUpdate *
add_pending(int64 job_id, const char *from_state, const char *to_state,
			Followup **followup)
{
	CobaltJobUpdate *u;

	if (npending == pending_cap)
	{
		int			cap = pending_cap ? pending_cap * 2 : 256;

		pending = pending ? repalloc(pending, sizeof(CobaltJobUpdate) * cap) :
			MemoryContextAlloc(worker_cxt, sizeof(CobaltJobUpdate) * cap);
		followups = followups ? repalloc(followups, sizeof(Followup) * cap) :
			MemoryContextAlloc(worker_cxt, sizeof(Followup) * cap);
		pending_cap = cap;
	}
	u = &pending[npending];
	memset(u, 0, sizeof(*u));
	u->job_id = job_id;
	u->from_state = from_state;
	u->to_state = to_state;
	u->next_due_ms = COBALT_DUE_KEEP;
	u->timeout_ms = -1;
	memset(&followups[npending], 0, sizeof(Followup));
	if (followup)
		*followup = &followups[npending];
	npending++;
	return u;
}

static char *
pending_strdup(const char *s)
{
	return s ? MemoryContextStrdup(pending_cxt, s) : NULL;
}

/* Keep an event a poll brought, for cobalt.events. */
static void
add_pending_event(WorkerRequest *wr, CobaltEvent *ev)
{
	CobaltPolledEvent *e;

	if (npending_events == pending_events_cap)
	{
		pending_events_cap = pending_events_cap ? pending_events_cap * 2 : 64;
		pending_events = pending_events ?
			repalloc(pending_events, sizeof(CobaltPolledEvent) * pending_events_cap) :
			MemoryContextAlloc(pending_cxt, sizeof(CobaltPolledEvent) * pending_events_cap);
	}
	e = &pending_events[npending_events++];
	e->job_id = wr->job_id;
	e->remote_job_id = pending_strdup(wr->remote_job_id);
	e->event_id = pending_strdup(ev->event_id);
	e->event_type = pending_strdup(ev->event_type);
	e->data_json = pending_strdup(ev->data_json);
}

static double
random_fraction(void)
{
	return pg_prng_double(&pg_global_prng_state);
}

/*
 * The outcome of a job-creating request, as a pending update.  Called from
 * the HTTP completion callback, outside any transaction.
 */
static void
record_send(WorkerRequest *wr)
{
	CobaltSendOutcome out;
	CobaltJobUpdate *u = NULL;
	Followup   *f;
	TimestampTz now = GetCurrentTimestamp();

	cobalt_classify_send(&wr->http, time(NULL), &out);
	if (out.verdict == COBALT_SEND_RETRY || out.verdict == COBALT_SEND_UNKNOWN)
		cobalt_report_worker_error(out.error);
	switch (out.verdict)
	{
		case COBALT_SEND_ACCEPTED:
			u = add_pending(wr->job_id, COBALT_STATE_SENDING, COBALT_STATE_POLLING, &f);
			u->remote_job_id = pending_strdup(out.remote_job_id);
			u->timeout_ms = wr->op_timeout_ms;
			u->next_due_ms = wr->op_timeout_ms;
			u->last_error = "";
			f->start_polling = true;
			f->account = pending_strdup(wr->account);
			break;
		case COBALT_SEND_COMPLETED:
			u = add_pending(wr->job_id, COBALT_STATE_SENDING, COBALT_STATE_SUCCEEDED, NULL);
			u->result_json = pending_strdup(out.result_json);
			u->finished = true;
			u->last_error = "";
			break;
		case COBALT_SEND_REJECTED:
			u = add_pending(wr->job_id, COBALT_STATE_SENDING, COBALT_STATE_FAILED, NULL);
			u->result_json = pending_strdup(out.result_json);
			u->error = pending_strdup(out.error);
			u->attempt_error = u->error;
			u->finished = true;
			break;
		case COBALT_SEND_RETRY:
			if (TimestampDifferenceExceeds(wr->created_at, now, (int) Min(wr->op_timeout_ms, INT_MAX)))
			{
				u = add_pending(wr->job_id, COBALT_STATE_SENDING, COBALT_STATE_FAILED, NULL);
				u->error = psprintf("never delivered: %s", out.error);
				u->error = pending_strdup(u->error);
				u->attempt_error = pending_strdup(out.error);
				u->finished = true;
			}
			else
			{
				u = add_pending(wr->job_id, COBALT_STATE_SENDING, COBALT_STATE_QUEUED, NULL);
				u->next_due_ms = out.retry_after_ms >= 0 ? out.retry_after_ms :
					cobalt_backoff_ms(wr->attempts, random_fraction());
				u->last_error = pending_strdup(out.error);
				u->attempt_error = u->last_error;
			}
			break;
		case COBALT_SEND_UNKNOWN:
			u = add_pending(wr->job_id, COBALT_STATE_SENDING, COBALT_STATE_UNKNOWN, NULL);
			u->result_json = pending_strdup(out.result_json);
			u->error = pending_strdup(out.error);
			u->attempt_error = u->error;
			u->finished = true;
			break;
	}
	if (u != NULL)
		u->http_status = (int) wr->http.status;
	cobalt_send_outcome_free(&out);
}

/*
 * The outcome of a poll or late check, as a pending update (none for an
 * unchanged poll).  A polled job's entry goes back into the heap at once
 * unless the job reached an outcome.
 */
static void
record_poll(WorkerRequest *wr)
{
	CobaltPollOutcome out;
	CobaltJobUpdate *u;
	Followup   *f;
	const char *from = wr->from_state;
	CobaltPollEntry *entry = wr->entry;

	cobalt_classify_poll(&wr->http, time(NULL), &out);
	if (entry)
		entry->polls++;
	switch (out.verdict)
	{
		case COBALT_POLL_PENDING:
			if (entry)
				cobalt_schedule_poll(entry, cobalt_poll_interval_ms);
			break;
		case COBALT_POLL_ERROR:
			cobalt_report_worker_error(out.error);
			u = add_pending(wr->job_id, from, from, NULL);
			u->last_error = pending_strdup(out.error);
			if (entry)
				cobalt_schedule_poll(entry, Max(cobalt_poll_interval_ms, out.retry_after_ms));
			break;
		case COBALT_POLL_SUCCEEDED:
		case COBALT_POLL_FAILED:
			for (int i = 0; i < out.nevents; i++)
				add_pending_event(wr, &out.events[i]);
			u = add_pending(wr->job_id, from,
							out.verdict == COBALT_POLL_SUCCEEDED ?
							COBALT_STATE_SUCCEEDED : COBALT_STATE_FAILED, &f);
			u->event_type = pending_strdup(out.event_type);
			u->result_json = pending_strdup(out.result_json);
			u->error = pending_strdup(out.error);
			u->last_error = "";
			u->finished = true;
			f->entry = entry;
			break;
	}
	cobalt_poll_outcome_free(&out);
}

/* libcurl finished a request: classify it, then free it. */
static void
request_done(CobaltHttpRequest *req, void *arg)
{
	WorkerRequest *wr = (WorkerRequest *) req;
	bool		discard = *(bool *) arg;

	if (!discard)
	{
		if (wr->kind == REQUEST_SEND)
			record_send(wr);
		else
			record_poll(wr);
	}
	else if (wr->entry)
		cobalt_schedule_forget(wr->entry);
	free(req->response);
	MemoryContextDelete(wr->cxt);
}

static WorkerRequest *
new_request(RequestKind kind, int64 job_id, const char *account)
{
	MemoryContext cxt = AllocSetContextCreate(worker_cxt, "cobalt request",
											  ALLOCSET_SMALL_SIZES);
	WorkerRequest *wr = MemoryContextAllocZero(cxt, sizeof(WorkerRequest));

	wr->cxt = cxt;
	wr->kind = kind;
	wr->job_id = job_id;
	wr->account = MemoryContextStrdup(cxt, account);
	wr->http.timeout_ms = cobalt_request_timeout_ms;
	return wr;
}

/* A poll request for a job's remote id. */
static WorkerRequest *
new_poll_request(RequestKind kind, int64 job_id, const char *account,
				 const char *remote_job_id)
{
	WorkerRequest *wr = new_request(kind, job_id, account);
	char	   *escaped = cobalt_url_escape(remote_job_id, strlen(remote_job_id));

	if (escaped == NULL)
		elog(ERROR, "out of memory");
	wr->http.method = "GET";
	wr->from_state = COBALT_STATE_POLLING;
	wr->remote_job_id = MemoryContextStrdup(wr->cxt, remote_job_id);
	wr->http.url = MemoryContextStrdup(wr->cxt,
									   psprintf("%s/webhook-events?job_id=%s",
												cobalt_api_url, escaped));
	free(escaped);
	return wr;
}

/*
 * Start a request with the current credentials.  If it cannot start, the
 * failure is classified like a connection that was never made.
 */
static void
start_request(WorkerRequest *wr)
{
	char		errbuf[256];
	bool		discard = false;

	wr->http.client_id = creds.client_id;
	wr->http.client_secret = creds.client_secret;
	wr->http.access_token = cobalt_credentials_token(&creds, wr->account);
	if (wr->http.client_id == NULL)
		snprintf(errbuf, sizeof(errbuf), "client credentials are not set");
	else if (wr->http.access_token == NULL)
		snprintf(errbuf, sizeof(errbuf), "account \"%s\" has no access token",
				 wr->account);
	else if (cobalt_http_start(http, &wr->http, errbuf, sizeof(errbuf)))
		return;

	wr->http.curl_code = -1;
	wr->http.maybe_delivered = false;
	strlcpy(wr->http.error, errbuf, sizeof(wr->http.error));
	request_done(&wr->http, &discard);
}

/* Start the polls that are due, up to "budget"; time out overdue jobs. */
static void
start_due_polls(int budget)
{
	TimestampTz now = GetCurrentTimestamp();
	CobaltPollEntry *entry;

	while (budget > 0 && (entry = cobalt_schedule_next_due(now)) != NULL)
	{
		WorkerRequest *wr;

		if (entry->polls > 0 && now >= entry->timeout_at)
		{
			CobaltJobUpdate *u;
			Followup   *f;

			u = add_pending(entry->job_id, COBALT_STATE_POLLING, COBALT_STATE_TIMED_OUT, &f);
			u->next_due_ms = cobalt_late_check_window_s > 0 ?
				cobalt_late_check_interval_ms : COBALT_DUE_NONE;
			u->error = "no outcome within the operation's timeout; still checked (see cobalt.late_check_interval)";
			f->entry = entry;
			continue;
		}
		wr = new_poll_request(REQUEST_POLL, entry->job_id, entry->account,
							  entry->remote_job_id);
		wr->entry = entry;
		start_request(wr);
		budget--;
	}
}

/* Forget every in-memory job (the extension was dropped or recreated). */
static void drop_ready_requests(void);

static void
reset_state(void)
{
	bool		discard = true;

	cobalt_http_abort_all(http, request_done, &discard);
	drop_ready_requests();
	cobalt_schedule_reset();
	npending = 0;
	npending_events = 0;
	pending_events = NULL;
	pending_events_cap = 0;
	MemoryContextReset(pending_cxt);
	creds_loaded = false;
	claim_from = DT_NOBEGIN;
}

/*
 * Queue a request to start after the tick commits.  The list must outlive
 * the tick's transaction (whose memory is gone by then).
 */
static void
add_ready_request(WorkerRequest *wr)
{
	MemoryContext old = MemoryContextSwitchTo(worker_cxt);

	ready_requests = lappend(ready_requests, wr);
	MemoryContextSwitchTo(old);
}

/* Build the request for a claimed job; a job that cannot be sent fails. */
static void
prepare_send(CobaltClaimedJob *job)
{
	WorkerRequest *wr;
	CobaltRequestSpec spec;
	char	   *problem = NULL;
	MemoryContext old;

	if (!job->operation_found)
		problem = "its operation no longer exists in cobalt.operations";

	wr = new_request(REQUEST_SEND, job->id, job->account);
	old = MemoryContextSwitchTo(wr->cxt);
	if (problem == NULL)
		problem = cobalt_build_request(&job->op, job->payload, &spec);
	MemoryContextSwitchTo(old);
	if (problem != NULL)
	{
		CobaltJobUpdate *u = add_pending(job->id, COBALT_STATE_SENDING,
										 COBALT_STATE_FAILED, NULL);

		u->error = pending_strdup(psprintf("cannot be sent: %s", problem));
		u->finished = true;
		MemoryContextDelete(wr->cxt);
		return;
	}
	wr->attempts = job->attempts;
	wr->created_at = job->created_at;
	wr->op_timeout_ms = job->op.timeout_ms;
	wr->http.method = MemoryContextStrdup(wr->cxt, job->op.method);
	wr->http.url = MemoryContextStrdup(wr->cxt, psprintf("%s%s", cobalt_api_url, spec.path));
	wr->http.body = spec.body;
	wr->http.body_len = spec.body_len;
	wr->http.form = spec.form;
	wr->http.nform = spec.nform;
	add_ready_request(wr);
}

/* Reload credentials when told to, when stale, or not yet loaded. */
static void
maybe_reload_credentials(void)
{
	uint64		generation;

	SpinLockAcquire(&cobalt_shared->mutex);
	generation = cobalt_shared->config_generation;
	SpinLockRelease(&cobalt_shared->mutex);
	if (creds_loaded && generation == creds_generation &&
		!TimestampDifferenceExceeds(creds_loaded_at, GetCurrentTimestamp(),
									CREDENTIALS_RELOAD_MS))
		return;
	MemoryContextReset(creds_cxt);
	cobalt_store_load_credentials(&creds, creds_cxt);
	creds_generation = generation;
	creds_loaded_at = GetCurrentTimestamp();
	creds_loaded = true;
}

/*
 * Is someone dropping, renaming or moving our database?  Those take an
 * AccessExclusiveLock on it and wait for other sessions to leave; a
 * conditional AccessShareLock then fails (it also yields to waiters).
 * Must run inside a transaction.
 */
static bool
database_is_being_changed(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	if (LockAcquire(&tag, AccessShareLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, AccessShareLock, false);
	return false;
}

/*
 * One tick, inside a transaction: record pending outcomes, claim work
 * (late checks too when look_late: they are due a minute apart, or at
 * once after a cobalt_recheck, whose commit wakes the worker).  Returns
 * false when the extension does not exist (or the database is going
 * away: step_aside is then set).
 */
static bool
tick(int claim_budget, bool look_late)
{
	Oid			ext;
	List	   *claimed;
	ListCell   *lc;
	MemoryContext old;
	int			nbefore;

	if (database_is_being_changed())
	{
		step_aside = true;
		return false;
	}
	ext = get_extension_oid("cobalt", true);

	if (!OidIsValid(ext))
	{
		if (OidIsValid(extension_oid))
		{
			reset_state();
			extension_oid = InvalidOid;
		}
		return false;
	}
	if (ext != extension_oid)
	{
		int			recovered;
		List	   *polling;

		reset_state();
		recovered = cobalt_store_recover_sending();
		if (recovered > 0)
			ereport(LOG,
					(errmsg("cobalt worker marked %d interrupted job(s) unknown", recovered),
					 errdetail("They were being sent when the worker stopped; they may have reached Cobalt, so they are not sent again."),
					 errhint("Check the EHR, then record the outcome of each.")));
		old = MemoryContextSwitchTo(loop_cxt);
		polling = cobalt_store_load_polling();
		MemoryContextSwitchTo(old);
		foreach(lc, polling)
		{
			CobaltPolledJob *job = lfirst(lc);

			cobalt_schedule_poll(cobalt_schedule_add(job->id, job->account, job->remote_job_id,
													 job->timeout_at), 0);
		}
		extension_oid = ext;
		any_final_committed = any_final_committed || recovered > 0;
	}

	maybe_reload_credentials();

	cobalt_store_apply_updates(pending, npending);
	cobalt_store_insert_events(pending_events, npending_events);
	(void) cobalt_schedule_reconcile();

	if (cobalt_retention_s > 0 &&
		(retention_behind ||
		 TimestampDifferenceExceeds(retention_ran_at, GetCurrentTimestamp(), RETENTION_EVERY_MS)))
	{
		retention_behind = cobalt_store_delete_expired(cobalt_retention_s, RETENTION_BATCH) >= RETENTION_BATCH;
		retention_ran_at = GetCurrentTimestamp();
	}

	old = MemoryContextSwitchTo(loop_cxt);
	claimed = claim_budget > 0 ? cobalt_store_claim_queued(claim_budget, &claim_from) : NIL;
	MemoryContextSwitchTo(old);
	more_queued = claim_budget > 0 && list_length(claimed) >= claim_budget;
	nbefore = npending;
	foreach(lc, claimed)
		prepare_send(lfirst(lc));
	/* jobs that cannot be built fail in the same transaction as their claim */
	cobalt_store_apply_updates(pending + nbefore, npending - nbefore);

	if (claim_budget > 0 && look_late)
	{
		List	   *late;

		old = MemoryContextSwitchTo(loop_cxt);
		late = cobalt_store_claim_late_checks(Max(1, claim_budget / 4),
											  cobalt_late_check_interval_ms,
											  (int64) cobalt_late_check_window_s * 1000);
		MemoryContextSwitchTo(old);
		foreach(lc, late)
		{
			CobaltPolledJob *job = lfirst(lc);
			WorkerRequest *wr;

			if (job->remote_job_id == NULL)
				continue;
			wr = new_poll_request(REQUEST_LATE_CHECK, job->id, job->account,
								  job->remote_job_id);
			if (strcmp(job->state, COBALT_STATE_TIMED_OUT) == 0)
				wr->from_state = COBALT_STATE_TIMED_OUT;
			add_ready_request(wr);
		}
	}
	return true;
}

/* After a tick committed: act on the applied updates, start requests. */
static void
after_commit(void)
{
	ListCell   *lc;

	for (int i = 0; i < npending; i++)
	{
		CobaltJobUpdate *u = &pending[i];
		Followup   *f = &followups[i];

		if (u->applied && u->finished)
			any_final_committed = true;
		if (u->applied && strcmp(u->to_state, COBALT_STATE_TIMED_OUT) == 0)
			any_final_committed = true;
		if (f->start_polling && u->applied)
			cobalt_schedule_poll(cobalt_schedule_add(u->job_id, f->account, u->remote_job_id,
													 TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																				 u->timeout_ms)),
								 cobalt_poll_interval_ms);
		if (f->entry)
			cobalt_schedule_forget(f->entry);
	}
	npending = 0;
	npending_events = 0;
	pending_events = NULL;
	pending_events_cap = 0;
	MemoryContextReset(pending_cxt);

	if (any_final_committed)
	{
		ConditionVariableBroadcast(&cobalt_shared->outcome_cv);
		any_final_committed = false;
	}

	foreach(lc, ready_requests)
		start_request(lfirst(lc));
	list_free(ready_requests);
	ready_requests = NIL;
}

static void
drop_ready_requests(void)
{
	ListCell   *lc;

	foreach(lc, ready_requests)
		MemoryContextDelete(((WorkerRequest *) lfirst(lc))->cxt);
	list_free(ready_requests);
	ready_requests = NIL;
}

/*
 * Run one tick in its own transaction.  An error is logged and rolled
 * back; pending updates stay for the next try.  Returns false when the
 * extension is missing or the tick failed.
 */
static bool
run_tick(int claim_budget, bool look_late)
{
	MemoryContext old = CurrentMemoryContext;
	bool		ok = false;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "cobalt: recording outcomes and claiming jobs");
		ok = tick(claim_budget, look_late);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		MemoryContextSwitchTo(old);
		if (ok)
			after_commit();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(old);
		edata = CopyErrorData();
		cobalt_report_worker_error(edata->message);
		FreeErrorData(edata);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		MemoryContextSwitchTo(old);
		/* the claims were rolled back: drop their requests and updates */
		drop_ready_requests();
		claim_from = DT_NOBEGIN;
		for (int i = 0; i < npending; i++)
			pending[i].applied = false;
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* Drive libcurl: finished requests become pending updates. */
static void
drive_http(void)
{
	bool		discard = false;

	(void) cobalt_http_perform(http, request_done, &discard);
}

/* Publish what the worker is doing: pg_stat_activity and cobalt_worker_status(). */
static void
report_progress(void)
{
	static int	last_in_flight = -1;
	static int	last_polling = -1;
	int			in_flight = cobalt_http_in_flight(http);
	char		activity[128];

	SpinLockAcquire(&cobalt_shared->mutex);
	cobalt_shared->requests_in_flight = in_flight;
	cobalt_shared->jobs_polling = cobalt_schedule_count();
	SpinLockRelease(&cobalt_shared->mutex);

	if (in_flight == last_in_flight && cobalt_schedule_count() == last_polling)
		return;
	last_in_flight = in_flight;
	last_polling = cobalt_schedule_count();
	snprintf(activity, sizeof(activity),
			 "cobalt: waiting; %d request(s) in flight, %d job(s) polling",
			 in_flight, last_polling);
	pgstat_report_activity(STATE_IDLE, activity);
}

static void
worker_exit(int code, Datum arg)
{
	if (cobalt_shared == NULL)
		return;
	SpinLockAcquire(&cobalt_shared->mutex);
	if (cobalt_shared->worker_pid == MyProcPid)
	{
		cobalt_shared->worker_pid = 0;
		cobalt_shared->worker_latch = NULL;
	}
	SpinLockRelease(&cobalt_shared->mutex);
}

/*
 * On SIGTERM: give requests in flight a short grace period to finish and
 * record what they brought; whatever is still in flight stays 'sending'
 * and becomes 'unknown' at the next start.
 */
static void
shutdown_gracefully(void)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													SHUTDOWN_GRACE_MS);

	while (cobalt_http_in_flight(http) > 0 &&
		   GetCurrentTimestamp() < until)
	{
		long		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
		long		curl_ms = cobalt_http_timeout_ms(http);

		if (curl_ms >= 0)
			timeout = Min(timeout, Max(curl_ms, 1));
		(void) WaitLatchOrSocket(NULL, WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 cobalt_http_wait_fd(http), timeout, PG_WAIT_EXTENSION);
		drive_http();
	}
	if (npending > 0 && OidIsValid(extension_oid))
		(void) run_tick(0, false);
}

void
cobalt_worker_main(Datum main_arg)
{
	char		errbuf[256];
	TimestampTz next_scan = 0;
	TimestampTz last_tick = 0;
	bool		woken = true;
	bool		latch_woken = true;
	bool		wake_deferred = false;
	TimestampTz late_looked_at = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	if (cobalt_shared == NULL)
		elog(FATAL, "cobalt worker started without its shared memory");

	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(main_arg), InvalidOid, 0);
	pgstat_report_appname("cobalt worker");
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	if (GetDatabaseEncoding() != PG_UTF8 && GetDatabaseEncoding() != PG_SQL_ASCII)
		ereport(WARNING,
				(errmsg("cobalt worker serves database \"%s\", whose encoding is not UTF8",
						cobalt_database_name),
				 errdetail("Answers from Cobalt that cannot be converted are recorded without their data.")));

	worker_cxt = AllocSetContextCreate(TopMemoryContext, "cobalt worker",
									   ALLOCSET_DEFAULT_SIZES);
	loop_cxt = AllocSetContextCreate(worker_cxt, "cobalt loop", ALLOCSET_DEFAULT_SIZES);
	pending_cxt = AllocSetContextCreate(worker_cxt, "cobalt pending", ALLOCSET_DEFAULT_SIZES);
	creds_cxt = AllocSetContextCreate(worker_cxt, "cobalt credentials", ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(worker_cxt);
	cobalt_schedule_init(worker_cxt);

	http = cobalt_http_create(COBALT_USER_AGENT, cobalt_ca_file, errbuf, sizeof(errbuf));
	if (http == NULL)
		elog(FATAL, "cobalt worker could not start: %s", errbuf);
	cobalt_http_set_max_connections(http, cobalt_max_concurrent_requests);

	SpinLockAcquire(&cobalt_shared->mutex);
	if (cobalt_shared->worker_pid != 0)
	{
		SpinLockRelease(&cobalt_shared->mutex);
		ereport(LOG, (errmsg("cobalt worker not started: another one runs (PID %d)",
							 (int) cobalt_shared->worker_pid)));
		proc_exit(0);
	}
	cobalt_shared->worker_pid = MyProcPid;
	cobalt_shared->worker_latch = MyLatch;
	cobalt_shared->worker_dboid = MyDatabaseId;
	cobalt_shared->worker_started_at = GetCurrentTimestamp();
	SpinLockRelease(&cobalt_shared->mutex);
	before_shmem_exit(worker_exit, (Datum) 0);

	ereport(LOG, (errmsg("cobalt worker started for database \"%s\"",
						 cobalt_database_name)));

	while (!ShutdownRequestPending && !step_aside)
	{
		int			free_slots;
		long		timeout;
		long		t;
		TimestampTz now;
		int			rc;

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);

		if (ConfigReloadPending)
		{
			int			old_interval = cobalt_poll_interval_ms;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			cobalt_http_set_max_connections(http, cobalt_max_concurrent_requests);
			if (!cobalt_http_set_ca_file(http, cobalt_ca_file))
				ereport(WARNING,
						(errmsg("cobalt worker could not apply the new cobalt.ca_file: out of memory")));
			if (cobalt_poll_interval_ms < old_interval)
				cobalt_schedule_bring_forward(cobalt_poll_interval_ms);
			woken = true;
		}

		/* polls first, keeping half the slots for sends when there may be some */
		free_slots = cobalt_max_concurrent_requests - cobalt_http_in_flight(http);
		if (OidIsValid(extension_oid))
			start_due_polls((woken || more_queued) ? free_slots / 2 : free_slots);

		/*
		 * A tick costs about the same for one job as for sixty: ticking at
		 * each commit of a busy application, or at each answer while many
		 * requests are in flight, would spend the worker's time on
		 * transactions.  So within a few milliseconds of the last tick,
		 * wake-ups, answers and free slots are gathered and served
		 * together, unless the pipeline would otherwise run dry (nothing
		 * in flight while answers wait or more jobs are queued) or a
		 * whole batch of answers is waiting.
		 */
		now = GetCurrentTimestamp();
		if ((woken || more_queued || npending > 0) && now < next_scan &&
			!TimestampDifferenceExceeds(last_tick, now, MIN_TICK_GAP_MS) &&
			npending < cobalt_max_concurrent_requests &&
			(cobalt_http_in_flight(http) > 0 || (npending == 0 && !more_queued)))
			wake_deferred = true;
		else if (woken || more_queued || npending > 0 || now >= next_scan)
		{
			bool		tick_ok;
			bool		look_late;

			last_tick = now;
			wake_deferred = false;

			free_slots = cobalt_max_concurrent_requests - cobalt_http_in_flight(http);
			look_late = latch_woken ||
				TimestampDifferenceExceeds(late_looked_at, now, FALLBACK_SCAN_MS);
			tick_ok = run_tick(Max(free_slots, 0), look_late);
			if (look_late)
				late_looked_at = now;
			latch_woken = false;
			if (tick_ok)
				next_scan = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														Min(FALLBACK_SCAN_MS, cobalt_poll_interval_ms));
			else
				next_scan = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														OidIsValid(extension_oid) ?
														TICK_ERROR_PAUSE_MS :
														MISSING_EXTENSION_RECHECK_MS);
			woken = false;
		}
		if (OidIsValid(extension_oid))
			start_due_polls(cobalt_max_concurrent_requests - cobalt_http_in_flight(http));

		/* sleep until something needs doing */
		timeout = Max(0, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_scan));
		if ((t = cobalt_schedule_next_in_ms()) >= 0)
			timeout = Min(timeout, t);
		if ((t = cobalt_http_timeout_ms(http)) >= 0)
			timeout = Min(timeout, t);
		if (wake_deferred)
			timeout = Min(timeout, Max(1, MIN_TICK_GAP_MS -
									   TimestampDifferenceMilliseconds(last_tick, GetCurrentTimestamp())));
		else if (npending > 0 ||
				 (more_queued && cobalt_http_in_flight(http) < cobalt_max_concurrent_requests))
			timeout = 0;

		report_progress();
		rc = WaitLatchOrSocket(MyLatch,
							   WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   cobalt_http_wait_fd(http), timeout, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			woken = true;
			latch_woken = true;
		}
		else if (wake_deferred)
			woken = true;
		CHECK_FOR_INTERRUPTS();
		drive_http();
	}

	shutdown_gracefully();
	if (step_aside)
	{
		ereport(LOG,
				(errmsg("cobalt worker is stepping aside: database \"%s\" is being dropped or altered",
						cobalt_database_name),
				 errdetail("The launcher starts the worker again once the database can be served.")));
		proc_exit(0);
	}
	ereport(LOG, (errmsg("cobalt worker shutting down")));
	proc_exit(1);
}

/*-------------------------------------------------------------------------
 *
 * cobalt.h
 *		Declarations shared by cobalt's PostgreSQL-side files, grouped by
 *		the file that defines them.
 *
 * The plain-C layer (HTTP, JSON, outcome rules) is declared in
 * cobalt_pure.h; no file includes both json-c and this header.
 *
 * src/cobalt.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef COBALT_H
#define COBALT_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "lib/ilist.h"
#include "lib/pairingheap.h"
#include "nodes/pg_list.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/jsonb.h"

#define COBALT_VERSION			"1.0"
#define COBALT_USER_AGENT		"cobalt-pg/" COBALT_VERSION
#define COBALT_SCHEMA			"cobalt"

/* The job states, exactly as stored in cobalt.jobs.state. */
#define COBALT_STATE_QUEUED		"queued"
#define COBALT_STATE_SENDING	"sending"
#define COBALT_STATE_POLLING	"polling"
#define COBALT_STATE_SUCCEEDED	"succeeded"
#define COBALT_STATE_FAILED		"failed"
#define COBALT_STATE_TIMED_OUT	"timed_out"
#define COBALT_STATE_UNKNOWN	"unknown"
#define COBALT_STATE_CANCELLED	"cancelled"

/* ----------
 * cobalt.c: module start, shared state, waking the worker at commit
 * ----------
 */

/* State shared between the worker and the backends, in shared memory. */
typedef struct CobaltShared
{
	slock_t		mutex;			/* protects the fields below it */
	pid_t		worker_pid;		/* 0 when no worker runs */
	Latch	   *worker_latch;	/* the worker's latch, or NULL */
	Oid			worker_dboid;	/* the database it serves */
	TimestampTz worker_started_at;
	uint64		config_generation;	/* bumped when credentials change */
	int			requests_in_flight; /* as of the worker's last turn */
	int			jobs_polling;
	char		last_error[256];	/* the worker's last error, or "" */
	TimestampTz last_error_at;
	ConditionVariable outcome_cv;	/* broadcast when jobs reach outcomes */
} CobaltShared;

extern CobaltShared *cobalt_shared;

extern void cobalt_wake_worker_at_commit(bool credentials_changed);
extern void cobalt_wake_worker(void);
extern void cobalt_report_worker_error(const char *message);
extern bool cobalt_state_is_final(const char *state);

/* ----------
 * access.c: the caller's rights, acting as the owner, secret files
 * ----------
 */

/* The user and security context saved while acting as the owner. */
typedef struct CobaltSavedUser
{
	Oid			userid;
	int			sec_context;
} CobaltSavedUser;

/* Most arguments an internal function called as the owner takes. */
#define COBALT_INTERNAL_MAX_ARGS 4

extern Oid	cobalt_extension_owner(void);
extern void cobalt_require_job_reader(Oid roleid);
extern void cobalt_pin_search_path(void);
extern void cobalt_unpin_search_path(void);
extern void cobalt_act_as_owner(CobaltSavedUser *saved, Oid owner);
extern void cobalt_act_as_caller(const CobaltSavedUser *saved);
extern Datum cobalt_call_as_owner(const char *name, int nargs, Oid *argtypes,
								  Datum *args, bool *argnulls, bool *isnull);
extern char *cobalt_read_secret_file(const char *path);

/* ----------
 * guc.c: settings
 * ----------
 */
extern char *cobalt_database_name;
extern char *cobalt_api_url;
extern int	cobalt_poll_interval_ms;
extern int	cobalt_request_timeout_ms;
extern int	cobalt_max_concurrent_requests;
extern int	cobalt_late_check_interval_ms;
extern int	cobalt_late_check_window_s;
extern int	cobalt_retention_s;
extern int	cobalt_max_payload_size;
extern char *cobalt_ca_file;

extern void cobalt_define_settings(void);

/* ----------
 * request.c: turning a job into an HTTP request
 * ----------
 */

/* Deepest nesting of objects and arrays a payload may have. */
#define COBALT_PAYLOAD_MAX_DEPTH	32

/* One row of cobalt.operations. */
typedef struct CobaltOperation
{
	char	   *operation;
	char	   *method;
	char	   *path;
	char	   *body_format;	/* "json" or "multipart" */
	char	   *file_field;		/* multipart: payload field with the file */
	int64		timeout_ms;
} CobaltOperation;

/* The parts of a request that depend on the job alone. */
typedef struct CobaltRequestSpec
{
	char	   *path;			/* path with placeholders filled in */
	char	   *body;			/* JSON body, or NULL when multipart */
	size_t		body_len;
	struct CobaltFormField *form;
	int			nform;
} CobaltRequestSpec;

extern void cobalt_check_payload_limits(Jsonb *payload);
extern void cobalt_validate_payload(const CobaltOperation *op, Jsonb *payload);
extern char *cobalt_build_request(const CobaltOperation *op, Jsonb *payload,
								  CobaltRequestSpec *spec);

/* ----------
 * store.c: every SQL statement run against cobalt's tables
 * ----------
 */

/* What cobalt_submit needs to know before it inserts a job. */
typedef struct CobaltSubmitContext
{
	bool		operation_found;
	CobaltOperation op;
	bool		client_set;
	int			naccounts;		/* matching accounts the caller may use, at
								 * most 2 */
	char	   *account;		/* the account when naccounts == 1 */
} CobaltSubmitContext;

/* What cobalt_submit reads of cobalt's configuration tables. */
typedef struct CobaltConfigSnapshot
{
	int			nops;
	CobaltOperation *ops;
	bool		client_set;
	int			naccounts;
	char	  **accounts;		/* names only, never tokens */
	int			ngrants;
	char	  **grant_accounts; /* grant i: grant_accounts[i] to grant_roles[i] */
	Oid		   *grant_roles;
} CobaltConfigSnapshot;

/* A queued job the worker has just moved to 'sending'. */
typedef struct CobaltClaimedJob
{
	int64		id;
	char	   *account;
	int			attempts;
	TimestampTz created_at;
	bool		operation_found;
	CobaltOperation op;
	Jsonb	   *payload;
} CobaltClaimedJob;

/* A job the worker polls: 'polling', or 'timed_out' for a late check. */
typedef struct CobaltPolledJob
{
	int64		id;
	char	   *account;
	char	   *remote_job_id;
	TimestampTz timeout_at;
	char	   *state;			/* late checks: 'timed_out' or 'polling' */
} CobaltPolledJob;

/*
 * A change of one job's row, applied only if the job is still in
 * from_state.  NULL pointers and negative numbers leave a column alone,
 * except where noted.
 */
typedef struct CobaltJobUpdate
{
	int64		job_id;
	const char *from_state;
	const char *to_state;
	const char *remote_job_id;
	int			http_status;	/* 0: leave */
	const char *event_type;
	const char *result_json;
	const char *error;
	const char *last_error;
	const char *attempt_error;	/* appended to attempt_errors */
	int64		next_due_ms;	/* COBALT_DUE_KEEP, COBALT_DUE_NONE (NULL; also
								 * whenever finished), or now() + ms */
	int64		timeout_ms;		/* >= 0: accepted now, timeout_at = now()+ms */
	bool		finished;		/* set finished_at = now() */
	bool		applied;		/* out: the row was changed */
} CobaltJobUpdate;

/* An event seen by polling, to be kept in cobalt.events. */
typedef struct CobaltPolledEvent
{
	int64		job_id;
	const char *remote_job_id;
	const char *event_id;
	const char *event_type;
	const char *data_json;
} CobaltPolledEvent;

#define COBALT_DUE_NONE	(-1)
#define COBALT_DUE_KEEP	(-2)

/* Credentials the worker sends with each request. */
typedef struct CobaltCredentials
{
	char	   *client_id;
	char	   *client_secret;
	struct HTAB *tokens;		/* account -> access token */
} CobaltCredentials;

extern void cobalt_store_load_config(CobaltConfigSnapshot *snap,
									 MemoryContext cxt);
extern char *cobalt_store_operation_list(void);
extern int64 cobalt_store_insert_job(const char *operation, const char *account,
									 Jsonb *payload, const char *submitted_by);
extern HeapTuple cobalt_store_job_status(int64 job_id, TupleDesc *desc,
										 char **state);
extern bool cobalt_store_job_visible(int64 job_id);
extern void cobalt_store_not_polling(const int64 *ids, int n, bool *gone);
extern int	cobalt_store_recover_sending(void);
extern List *cobalt_store_load_polling(void);
extern List *cobalt_store_claim_queued(int limit, TimestampTz *from);
extern List *cobalt_store_claim_late_checks(int limit, int64 interval_ms,
											int64 window_ms);
extern void cobalt_store_apply_updates(CobaltJobUpdate *updates, int n);
extern void cobalt_store_insert_events(CobaltPolledEvent *events, int n);
extern int	cobalt_store_delete_expired(int64 retention_s, int limit);
extern int64 cobalt_store_count_due(void);
extern void cobalt_store_load_credentials(CobaltCredentials *creds,
										  MemoryContext cxt);
extern const char *cobalt_credentials_token(CobaltCredentials *creds,
											const char *account);

/* ----------
 * submit_cache.c: cobalt_submit's cached view of the configuration
 * ----------
 */
extern void cobalt_submit_cache_init(void);
extern void cobalt_submit_context(const char *operation, const char *account,
								  Oid caller, bool caller_is_owner,
								  CobaltSubmitContext *ctx);

/* ----------
 * schedule.c: the worker's poll schedule
 * ----------
 */

/* A job the worker polls, in memory. */
typedef struct CobaltPollEntry
{
	pairingheap_node node;		/* in the heap while waiting for its poll */
	dlist_node	all;			/* in the list of every entry */
	int64		job_id;
	char	   *account;
	char	   *remote_job_id;
	TimestampTz timeout_at;
	TimestampTz next_poll_at;
	int			polls;			/* polls answered since it was scheduled */
	bool		gone;			/* its job no longer polls: release it */
} CobaltPollEntry;

extern void cobalt_schedule_init(MemoryContext parent);
extern void cobalt_schedule_reset(void);
extern CobaltPollEntry *cobalt_schedule_add(int64 job_id, const char *account,
											const char *remote_job_id,
											TimestampTz timeout_at);
extern void cobalt_schedule_forget(CobaltPollEntry *entry);
extern void cobalt_schedule_poll(CobaltPollEntry *entry, int64 delay_ms);
extern CobaltPollEntry *cobalt_schedule_next_due(TimestampTz now);
extern long cobalt_schedule_next_in_ms(void);
extern void cobalt_schedule_bring_forward(int interval_ms);
extern int	cobalt_schedule_count(void);
extern int	cobalt_schedule_reconcile(void);

/* ----------
 * launcher.c: starts the worker when its database exists
 * ----------
 */
extern PGDLLEXPORT void cobalt_launcher_main(Datum main_arg);
extern void cobalt_register_launcher(void);

/* ----------
 * worker.c: the background worker
 * ----------
 */
extern PGDLLEXPORT void cobalt_worker_main(Datum main_arg);

#endif							/* COBALT_H */

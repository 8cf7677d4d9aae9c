/*-------------------------------------------------------------------------
 *
 * cobalt.c
 *		Module start: settings, shared memory, the background worker, and
 *		the commit-time wake-up of the worker.
 *
 * A backend that submits a job only sets a flag; the worker is woken by a
 * transaction callback once the transaction has committed (the rows are
 * then visible to it), never before, and not at all on abort.  So a job is
 * sent only if its transaction commits, and it is sent without waiting for
 * the worker's periodic scan.
 *
 * The shared state is protected by its spinlock; the worker publishes its
 * latch there at start and clears it at exit.
 *
 * src/cobalt.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "cobalt.h"

PG_MODULE_MAGIC;

CobaltShared *cobalt_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Set by this backend's submits; acted on at commit. */
static bool wake_at_commit = false;
static bool credentials_changed_at_commit = false;

void		_PG_init(void);

static void
cobalt_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(CobaltShared)));
}

static void
cobalt_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	cobalt_shared = ShmemInitStruct("cobalt", sizeof(CobaltShared), &found);
	if (!found)
	{
		memset(cobalt_shared, 0, sizeof(CobaltShared));
		SpinLockInit(&cobalt_shared->mutex);
		ConditionVariableInit(&cobalt_shared->outcome_cv);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Set the worker's latch, if a worker runs and serves this database (jobs
 * submitted elsewhere are never its business).
 */
void
cobalt_wake_worker(void)
{
	Latch	   *latch;

	if (cobalt_shared == NULL)
		return;
	SpinLockAcquire(&cobalt_shared->mutex);
	latch = (cobalt_shared->worker_dboid == MyDatabaseId) ? cobalt_shared->worker_latch : NULL;
	SpinLockRelease(&cobalt_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

static void
cobalt_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (credentials_changed_at_commit && cobalt_shared != NULL)
			{
				SpinLockAcquire(&cobalt_shared->mutex);
				cobalt_shared->config_generation++;
				SpinLockRelease(&cobalt_shared->mutex);
			}
			if (wake_at_commit)
			{
				cobalt_wake_worker();
				/* an outcome may have been recorded: let cobalt_wait look */
				if (cobalt_shared != NULL)
					ConditionVariableBroadcast(&cobalt_shared->outcome_cv);
			}
			wake_at_commit = false;
			credentials_changed_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction's jobs are found by the periodic scan */
			wake_at_commit = false;
			credentials_changed_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * Ask for the worker to be woken when the current transaction commits;
 * credentials_changed also makes it reload tokens and client credentials.
 */
void
cobalt_wake_worker_at_commit(bool credentials_changed)
{
	wake_at_commit = true;
	if (credentials_changed)
		credentials_changed_at_commit = true;
}

/* Keep the worker's last error for cobalt_worker_status(). */
void
cobalt_report_worker_error(const char *message)
{
	if (cobalt_shared == NULL || message == NULL)
		return;
	SpinLockAcquire(&cobalt_shared->mutex);
	strlcpy(cobalt_shared->last_error, message, sizeof(cobalt_shared->last_error));
	cobalt_shared->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&cobalt_shared->mutex);
}

/* States a job does not leave by itself (cobalt_wait returns on them). */
bool
cobalt_state_is_final(const char *state)
{
	return strcmp(state, COBALT_STATE_SUCCEEDED) == 0 ||
		strcmp(state, COBALT_STATE_FAILED) == 0 ||
		strcmp(state, COBALT_STATE_TIMED_OUT) == 0 ||
		strcmp(state, COBALT_STATE_UNKNOWN) == 0 ||
		strcmp(state, COBALT_STATE_CANCELLED) == 0;
}

void
_PG_init(void)
{
	cobalt_define_settings();
	RegisterXactCallback(cobalt_xact_callback, NULL);
	cobalt_submit_cache_init();

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = cobalt_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = cobalt_shmem_startup;

	cobalt_register_launcher();
}

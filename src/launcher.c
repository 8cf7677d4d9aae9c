/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		The cobalt launcher: a background worker connected to no database
 *		that starts the cobalt worker for cobalt.database_name whenever that
 *		database exists, and starts it again when it stops.
 *
 * A background worker can only connect to a database that exists, and a
 * worker connected to a database blocks DROP DATABASE.  So the launcher,
 * which reads only the shared catalog pg_database, waits quietly while
 * the database is missing (no crash loop), and the worker steps aside when
 * it sees the database being dropped or renamed (see worker.c).
 *
 * At most one worker runs: the launcher starts one only while the shared
 * worker_pid is 0, which the worker sets at start and clears at exit (and
 * which a crash restart resets).
 *
 * src/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "cobalt.h"

#define LAUNCHER_CHECK_MS		1000
#define WORKER_RESTART_DELAY_MS	2000

/* Register the launcher; called from _PG_init while preloading. */
void
cobalt_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "cobalt");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "cobalt_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "cobalt launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "cobalt launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * The served database's OID, or InvalidOid while it does not exist (or
 * refuses connections).  A plain heap scan of pg_database: with no database
 * selected, its indexes may not be usable (as in the autovacuum launcher).
 */
static Oid
served_database_oid(void)
{
	Oid			dboid = InvalidOid;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;

	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		if (strcmp(NameStr(db->datname), cobalt_database_name) == 0 &&
			db->datallowconn)
		{
			dboid = db->oid;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dboid;
}

static bool
worker_running(void)
{
	pid_t		pid;

	SpinLockAcquire(&cobalt_shared->mutex);
	pid = cobalt_shared->worker_pid;
	SpinLockRelease(&cobalt_shared->mutex);
	return pid != 0;
}

/* Start the worker for a database; returns its handle, or NULL. */
static BackgroundWorkerHandle *
start_worker(Oid dboid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	worker.bgw_notify_pid = MyProcPid;
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "cobalt");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "cobalt_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "cobalt worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "cobalt worker");
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ereport(WARNING,
				(errmsg("cobalt launcher could not start the cobalt worker"),
				 errhint("Raise max_worker_processes; cobalt needs two background workers.")));
		return NULL;
	}
	return handle;
}

void
cobalt_launcher_main(Datum main_arg)
{
	BackgroundWorkerHandle *handle = NULL;
	TimestampTz next_start = 0;
	bool		reported_missing = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	if (cobalt_shared == NULL)
		elog(FATAL, "cobalt launcher started without its shared memory");

	/* no database: only shared catalogs such as pg_database */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	while (!ShutdownRequestPending)
	{
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (handle != NULL)
		{
			pid_t		pid;

			if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
			{
				pfree(handle);
				handle = NULL;
				next_start = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 WORKER_RESTART_DELAY_MS);
			}
		}

		if (handle == NULL && !worker_running() &&
			GetCurrentTimestamp() >= next_start)
		{
			Oid			dboid = served_database_oid();

			if (OidIsValid(dboid))
			{
				handle = start_worker(dboid);
				reported_missing = false;
			}
			else if (!reported_missing)
			{
				ereport(LOG,
						(errmsg("cobalt launcher is waiting for database \"%s\" to exist",
								cobalt_database_name),
						 errhint("Create it, or set cobalt.database_name and restart the server.")));
				reported_missing = true;
			}
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LAUNCHER_CHECK_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	proc_exit(1);
}

/*-------------------------------------------------------------------------
 *
 * schedule.c
 *		The worker's poll schedule: the jobs in 'polling', kept in memory
 *		and ordered by the time of their next poll, so that a poll that
 *		finds nothing writes nothing.
 *
 * Each entry is in a pairing heap (min on next_poll_at) while it waits for
 * its next poll, and out of it while its poll is in flight; it is on the
 * list of all entries from its creation to its release.  The entries and
 * their strings live in one memory context, reset with the schedule.
 *
 * A job can stop polling without the worker recording it: the table was
 * truncated, the row deleted, a webhook settled it.  Every
 * RECONCILE_EVERY_MS cobalt_schedule_reconcile asks the table which of
 * the scheduled jobs are still 'polling' and marks the others gone; a gone
 * entry is released instead of being polled again.
 *
 * Used by the worker only (one process, no locking).
 *
 * src/schedule.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/ilist.h"
#include "lib/pairingheap.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "cobalt.h"

#define RECONCILE_EVERY_MS	10000

static MemoryContext schedule_cxt;	/* the entries and the heap */
static pairingheap *heap;			/* entries waiting for their next poll */
static dlist_head all_entries = DLIST_STATIC_INIT(all_entries);
static int	nentries = 0;
static TimestampTz reconciled_at = 0;

static int
entry_compare(const pairingheap_node *a, const pairingheap_node *b, void *arg)
{
	const CobaltPollEntry *pa = pairingheap_const_container(CobaltPollEntry, node, a);
	const CobaltPollEntry *pb = pairingheap_const_container(CobaltPollEntry, node, b);

	/* min-heap on next_poll_at */
	if (pa->next_poll_at < pb->next_poll_at)
		return 1;
	if (pa->next_poll_at > pb->next_poll_at)
		return -1;
	return 0;
}

/* Create the (empty) schedule, its memory a child of "parent". */
void
cobalt_schedule_init(MemoryContext parent)
{
	schedule_cxt = AllocSetContextCreate(parent, "cobalt poll schedule",
										 ALLOCSET_DEFAULT_SIZES);
	cobalt_schedule_reset();
}

/*
 * Forget every entry.  Entries referenced elsewhere (a poll in flight)
 * must have been dropped first.
 */
void
cobalt_schedule_reset(void)
{
	MemoryContext old;

	MemoryContextReset(schedule_cxt);
	old = MemoryContextSwitchTo(schedule_cxt);
	heap = pairingheap_allocate(entry_compare, NULL);
	MemoryContextSwitchTo(old);
	dlist_init(&all_entries);
	nentries = 0;
}

/* A new entry for a job now polling; not scheduled yet. */
CobaltPollEntry *
cobalt_schedule_add(int64 job_id, const char *account, const char *remote_job_id,
					TimestampTz timeout_at)
{
	CobaltPollEntry *entry = MemoryContextAllocZero(schedule_cxt, sizeof(CobaltPollEntry));

	entry->job_id = job_id;
	entry->account = MemoryContextStrdup(schedule_cxt, account);
	entry->remote_job_id = MemoryContextStrdup(schedule_cxt, remote_job_id);
	entry->timeout_at = timeout_at;
	dlist_push_tail(&all_entries, &entry->all);
	nentries++;
	return entry;
}

/* Release an entry that is not in the heap. */
void
cobalt_schedule_forget(CobaltPollEntry *entry)
{
	dlist_delete(&entry->all);
	pfree(entry->account);
	pfree(entry->remote_job_id);
	pfree(entry);
	nentries--;
}

/*
 * Schedule an entry's next poll "delay_ms" from now; an entry whose job
 * is gone is released instead.
 */
void
cobalt_schedule_poll(CobaltPollEntry *entry, int64 delay_ms)
{
	if (entry->gone)
	{
		cobalt_schedule_forget(entry);
		return;
	}
	entry->next_poll_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_ms);
	pairingheap_add(heap, &entry->node);
}

/*
 * Take the first entry whose poll is due at "now" out of the heap (it is
 * the caller's until it schedules or forgets it); NULL when none is due.
 * Gone entries met on the way are released.
 */
CobaltPollEntry *
cobalt_schedule_next_due(TimestampTz now)
{
	while (!pairingheap_is_empty(heap))
	{
		CobaltPollEntry *entry = pairingheap_container(CobaltPollEntry, node,
													   pairingheap_first(heap));

		if (entry->next_poll_at > now && !entry->gone)
			return NULL;
		pairingheap_remove_first(heap);
		if (!entry->gone)
			return entry;
		cobalt_schedule_forget(entry);
	}
	return NULL;
}

/* Milliseconds until the next poll is due (-1: none scheduled). */
long
cobalt_schedule_next_in_ms(void)
{
	CobaltPollEntry *entry;

	if (pairingheap_is_empty(heap))
		return -1;
	entry = pairingheap_container(CobaltPollEntry, node, pairingheap_first(heap));
	return Max(0, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), entry->next_poll_at));
}

/*
 * After the poll interval was shortened: no job waits longer than the new
 * interval for its next poll.  Rebuilds the heap (a rare event).
 */
void
cobalt_schedule_bring_forward(int interval_ms)
{
	TimestampTz latest = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), interval_ms);
	List	   *entries = NIL;
	ListCell   *lc;

	while (!pairingheap_is_empty(heap))
		entries = lappend(entries, pairingheap_container(CobaltPollEntry, node,
														 pairingheap_remove_first(heap)));
	foreach(lc, entries)
	{
		CobaltPollEntry *entry = lfirst(lc);

		if (entry->next_poll_at > latest)
			entry->next_poll_at = latest;
		pairingheap_add(heap, &entry->node);
	}
	list_free(entries);
}

/* How many jobs are scheduled (in the heap or polled right now). */
int
cobalt_schedule_count(void)
{
	return nentries;
}

/*
 * Every RECONCILE_EVERY_MS: mark gone the entries whose job is no longer
 * 'polling' in the table.  Must run inside a transaction, SPI connected.
 * Returns how many were marked.
 */
int
cobalt_schedule_reconcile(void)
{
	int64	   *ids;
	CobaltPollEntry **entries;
	bool	   *gone;
	dlist_iter	iter;
	int			n = 0;
	int			marked = 0;

	if (nentries == 0 ||
		!TimestampDifferenceExceeds(reconciled_at, GetCurrentTimestamp(), RECONCILE_EVERY_MS))
		return 0;
	reconciled_at = GetCurrentTimestamp();

	ids = palloc(sizeof(int64) * nentries);
	entries = palloc(sizeof(CobaltPollEntry *) * nentries);
	gone = palloc0(sizeof(bool) * nentries);
	dlist_foreach(iter, &all_entries)
	{
		CobaltPollEntry *entry = dlist_container(CobaltPollEntry, all, iter.cur);

		if (entry->gone)
			continue;
		entries[n] = entry;
		ids[n++] = entry->job_id;
	}
	cobalt_store_not_polling(ids, n, gone);
	for (int i = 0; i < n; i++)
	{
		if (gone[i])
		{
			entries[i]->gone = true;
			marked++;
		}
	}
	return marked;
}

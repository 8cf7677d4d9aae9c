/*-------------------------------------------------------------------------
 *
 * submit_cache.c
 *		What cobalt_submit needs from cobalt's configuration tables
 *		(operations, client credentials present, accounts, grants), cached
 *		in each backend.
 *
 * Reading them with a statement on every submit cost about as much as
 * the insert itself.  The cache is rebuilt (by store.c) when it is
 * invalid; it is made invalid by a relcache invalidation of any of the
 * four tables.  PostgreSQL sends those for DDL only, so a statement
 * trigger on each table sends one for every change of its rows
 * (cobalt_config_changed).  Invalidations are transactional: other
 * backends see them when the change commits, this backend at its next
 * command, so a submit always sees what its own transaction changed.
 *
 * The cache holds account names, never tokens.
 *
 * src/submit_cache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/acl.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "cobalt.h"

static MemoryContext cache_cxt = NULL;
static CobaltConfigSnapshot snapshot;
static bool cache_valid = false;
static uint64 invalidations = 0;	/* seen by the callback, ever */
static Oid	watched[4];				/* the four tables, as last read */

PG_FUNCTION_INFO_V1(cobalt_config_changed);

/* A relcache invalidation: drop the cache if it is about our tables. */
static void
relcache_changed(Datum arg, Oid relid)
{
	for (int i = 0; i < lengthof(watched); i++)
	{
		if (relid == InvalidOid || relid == watched[i])
		{
			cache_valid = false;
			invalidations++;
			return;
		}
	}
}

/* Called from _PG_init in every backend that loads cobalt. */
void
cobalt_submit_cache_init(void)
{
	CacheRegisterRelcacheCallback(relcache_changed, (Datum) 0);
}

static int
compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * Read the tables again.  An invalidation that arrives while they are
 * read leaves the cache invalid (the next submit reads them again), but
 * what was read serves this submit.
 */
static void
rebuild(void)
{
	static const char *const tables[] = {"operations", "client", "accounts", "account_grants"};
	Oid			nsp = get_namespace_oid(COBALT_SCHEMA, true);
	uint64		before;

	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(TopMemoryContext, "cobalt submit cache",
										  ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(cache_cxt);
	cache_valid = false;
	for (int i = 0; i < lengthof(watched); i++)
		watched[i] = OidIsValid(nsp) ? get_relname_relid(tables[i], nsp) : InvalidOid;

	before = invalidations;
	cobalt_store_load_config(&snapshot, cache_cxt);
	qsort(snapshot.accounts, snapshot.naccounts, sizeof(char *), compare_names);
	cache_valid = (invalidations == before);
}

/* May "caller" use "account" (which exists)? */
static bool
granted(const char *account, Oid caller)
{
	for (int i = 0; i < snapshot.ngrants; i++)
		if (strcmp(snapshot.grant_accounts[i], account) == 0 &&
			has_privs_of_role(caller, snapshot.grant_roles[i]))
			return true;
	return false;
}

/*
 * What cobalt_submit needs to know before it inserts a job: the
 * operation, whether client credentials are set, and the account (the
 * given one, or the only one when none is given) among those "caller" may
 * use: all of them when caller_is_owner, else those granted to a role
 * whose privileges it has.  Runs as the extension's owner.  The strings
 * handed back stay valid until the next call.
 */
void
cobalt_submit_context(const char *operation, const char *account,
					  Oid caller, bool caller_is_owner, CobaltSubmitContext *ctx)
{
	memset(ctx, 0, sizeof(*ctx));
	if (!cache_valid)
		rebuild();

	for (int i = 0; i < snapshot.nops; i++)
	{
		if (strcmp(snapshot.ops[i].operation, operation) == 0)
		{
			ctx->op = snapshot.ops[i];
			ctx->operation_found = true;
			break;
		}
	}
	ctx->client_set = snapshot.client_set;

	if (account != NULL)
	{
		bool		exists = bsearch(&account, snapshot.accounts, snapshot.naccounts,
									 sizeof(char *), compare_names) != NULL;

		if (exists && (caller_is_owner || granted(account, caller)))
		{
			ctx->naccounts = 1;
			ctx->account = pstrdup(account);
		}
		return;
	}

	if (caller_is_owner)
	{
		ctx->naccounts = Min(snapshot.naccounts, 2);
		if (snapshot.naccounts == 1)
			ctx->account = pstrdup(snapshot.accounts[0]);
		return;
	}
	/* the distinct accounts granted to the caller, up to two */
	for (int i = 0; i < snapshot.ngrants && ctx->naccounts < 2; i++)
	{
		const char *name = snapshot.grant_accounts[i];

		if ((ctx->account != NULL && strcmp(ctx->account, name) == 0) ||
			!has_privs_of_role(caller, snapshot.grant_roles[i]))
			continue;
		ctx->naccounts++;
		if (ctx->account == NULL)
			ctx->account = pstrdup(name);
	}
	if (ctx->naccounts != 1)
		ctx->account = NULL;
}

/*
 * cobalt._config_changed(): statement trigger on cobalt's configuration
 * tables; makes every backend's submit cache invalid once the change
 * commits (this backend's at once), and has the worker reload the
 * credentials then.
 */
Datum
cobalt_config_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cobalt._config_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	/* and the worker reloads tokens and credentials at once */
	cobalt_wake_worker_at_commit(true);
	return PointerGetDatum(NULL);
}

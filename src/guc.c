/*-------------------------------------------------------------------------
 *
 * guc.c
 *		cobalt's settings, all defined in one place.
 *
 * Settings that point the worker somewhere or decide whom it trusts
 * (database, API URL, CA file) can only be set by a superuser:
 * PGC_POSTMASTER / PGC_SIGHUP settings are read from the server's
 * configuration only, and GUC_SUPERUSER_ONLY hides their values from
 * other roles.  The payload limit is PGC_SUSET.  The worker re-reads the
 * reloadable ones on SIGHUP.  The "cobalt." prefix is reserved, so a
 * misspelt cobalt setting is reported instead of silently ignored.
 *
 * src/guc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"
#include "utils/memutils.h"

#include "cobalt.h"

char	   *cobalt_database_name = NULL;
char	   *cobalt_api_url = NULL;
int			cobalt_poll_interval_ms = 1000;
int			cobalt_request_timeout_ms = 30000;
int			cobalt_max_concurrent_requests = 64;
int			cobalt_late_check_interval_ms = 60000;
int			cobalt_late_check_window_s = 86400;
int			cobalt_retention_s = 30 * 86400;
int			cobalt_max_payload_size = 32 * 1024 * 1024;
char	   *cobalt_ca_file = NULL;

/* cobalt.api_url must be an absolute http or https URL. */
static bool
check_api_url(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;
	size_t		len;

	if (url == NULL)
		return true;
	if (pg_strncasecmp(url, "https://", 8) != 0 &&
		pg_strncasecmp(url, "http://", 7) != 0)
	{
		GUC_check_errdetail("cobalt.api_url must start with https:// or http://.");
		return false;
	}
	if (strpbrk(url, " \t\r\n?#") != NULL)
	{
		GUC_check_errdetail("cobalt.api_url must not contain white space, a query or a fragment.");
		return false;
	}
	/* a trailing slash would double the one every path starts with */
	len = strlen(url);
	if (len > 0 && url[len - 1] == '/')
	{
		GUC_check_errdetail("cobalt.api_url must not end with a slash.");
		return false;
	}
	return true;
}

/*
 * Define every cobalt.* setting.  Called from _PG_init, in the postmaster
 * when preloaded and in any backend that loads the library.
 */
void
cobalt_define_settings(void)
{
	DefineCustomStringVariable("cobalt.database_name",
							   "Database whose jobs the cobalt worker serves.",
							   NULL,
							   &cobalt_database_name,
							   "postgres",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("cobalt.api_url",
							   "Base URL of the Cobalt API.",
							   "Only http and https URLs are accepted.",
							   &cobalt_api_url,
							   "https://api.usecobalt.com/v1",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   check_api_url, NULL, NULL);

	DefineCustomIntVariable("cobalt.poll_interval",
							"Time between two polls of the same job.",
							NULL,
							&cobalt_poll_interval_ms,
							1000, 200, 60000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cobalt.request_timeout",
							"Longest time one HTTP request to Cobalt may take.",
							NULL,
							&cobalt_request_timeout_ms,
							30000, 1000, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cobalt.max_concurrent_requests",
							"Most HTTP requests the worker has in flight at once.",
							NULL,
							&cobalt_max_concurrent_requests,
							64, 1, 1024,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cobalt.late_check_interval",
							"Time between two checks of a timed-out job.",
							"A timeout is not a failure: the job is still checked this often for cobalt.late_check_window.",
							&cobalt_late_check_interval_ms,
							60000, 1000, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cobalt.late_check_window",
							"How long after its timeout a job is still checked.",
							"0 turns late checks off.",
							&cobalt_late_check_window_s,
							86400, 0, 365 * 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cobalt.retention",
							"How long finished jobs (succeeded, failed, cancelled) are kept.",
							"0 keeps them forever. unknown and timed_out jobs are never deleted automatically.",
							&cobalt_retention_s,
							30 * 86400, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cobalt.max_payload_size",
							"Largest payload cobalt_submit accepts, documents included.",
							"Measured as the payload's jsonb size.",
							&cobalt_max_payload_size,
							32 * 1024 * 1024, 1024, MaxAllocSize,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomStringVariable("cobalt.ca_file",
							   "File of CA certificates that Cobalt's TLS certificate is verified against.",
							   "Empty: the system's CA certificates. Verification itself is always on.",
							   &cobalt_ca_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("cobalt");
}

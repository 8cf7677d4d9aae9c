/*-------------------------------------------------------------------------
 *
 * access.c
 *		Who may do what: the calling role's rights on cobalt's accounts and
 *		jobs, acting as the extension's owner, and reading secrets from
 *		files.
 *
 * The rule: a role may use an account when it has the privileges of a
 * role listed for that account in cobalt.account_grants, or of the owner
 * of cobalt's tables (superusers have the privileges of every role).
 * cobalt.jobs' row-security policy states the same rule for reading, so
 * the functions that act on one job first read it as the caller: a job
 * the caller cannot see does not exist for it.  cobalt_submit applies the
 * rule to the account it is given (store.c).  Only then do they act as
 * the owner, who alone may write cobalt's tables.
 *
 * Acting as the owner uses SetUserIdAndSecContext with
 * SECURITY_LOCAL_USERID_CHANGE, and the search path is pinned to
 * pg_catalog; the caller undoes both, and an error undoes them at
 * (sub)transaction abort.
 *
 * src/access.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "cobalt.h"

/* A secret is one line of at most 500 characters; allow some slack. */
#define SECRET_FILE_MAX_BYTES	4096

/*
 * cobalt.jobs' OID and owner; ERROR (with a hint) if the extension does
 * not exist.  A few syscache lookups: cheap enough for every submit.
 */
static Oid
jobs_relation(Oid *owner)
{
	Oid			nsp = get_namespace_oid(COBALT_SCHEMA, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("jobs", nsp) : InvalidOid;
	HeapTuple	tuple;

	if (!OidIsValid(relid) ||
		!HeapTupleIsValid(tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid))))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table cobalt.jobs does not exist"),
				 errhint("Run CREATE EXTENSION cobalt.")));
	*owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return relid;
}

/* The owner of cobalt's tables (the extension's owner). */
Oid
cobalt_extension_owner(void)
{
	Oid			owner;

	(void) jobs_relation(&owner);
	return owner;
}

/*
 * ERROR unless "roleid" may read cobalt.jobs (the functions that act on
 * jobs read them as the caller, through row security).
 */
void
cobalt_require_job_reader(Oid roleid)
{
	Oid			owner;
	Oid			relid = jobs_relation(&owner);

	if (pg_class_aclcheck(relid, roleid, ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for cobalt jobs"),
				 errdetail("Role \"%s\" may not read cobalt.jobs.",
						   GetUserNameFromId(roleid, false)),
				 errhint("The extension's owner gives a role an account's jobs with cobalt_grant_account(account, role).")));
}

/*
 * Pin the search path to pg_catalog alone (no pg_temp) until
 * cobalt_unpin_search_path: the statements run meanwhile cannot be
 * captured by objects on the caller's search path.
 */
void
cobalt_pin_search_path(void)
{
	OverrideSearchPath pinned;

	memset(&pinned, 0, sizeof(pinned));
	pinned.schemas = NIL;
	pinned.addCatalog = true;
	pinned.addTemp = false;
	PushOverrideSearchPath(&pinned);
}

void
cobalt_unpin_search_path(void)
{
	PopOverrideSearchPath();
}

/*
 * Act as "owner" with the search path pinned, saving the current user in
 * *saved; cobalt_act_as_caller(saved) undoes both.
 */
void
cobalt_act_as_owner(CobaltSavedUser *saved, Oid owner)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(owner, saved->sec_context | SECURITY_LOCAL_USERID_CHANGE);
	cobalt_pin_search_path();
}

void
cobalt_act_as_caller(const CobaltSavedUser *saved)
{
	cobalt_unpin_search_path();
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}

/*
 * Call cobalt.<name>(args) as the extension's owner and return its
 * result (*isnull says whether it is NULL).  The internal functions are
 * owner-only; callers check the caller's rights first.
 */
Datum
cobalt_call_as_owner(const char *name, int nargs, Oid *argtypes,
					 Datum *args, bool *argnulls, bool *isnull)
{
	LOCAL_FCINFO(fcinfo, COBALT_INTERNAL_MAX_ARGS);
	FmgrInfo	flinfo;
	Oid			fn;
	CobaltSavedUser saved;
	Datum		result;

	Assert(nargs <= COBALT_INTERNAL_MAX_ARGS);
	fn = LookupFuncName(list_make2(makeString(COBALT_SCHEMA), makeString(pstrdup(name))),
						nargs, argtypes, false);
	fmgr_info(fn, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, nargs, InvalidOid, NULL, NULL);
	for (int i = 0; i < nargs; i++)
	{
		fcinfo->args[i].value = args[i];
		fcinfo->args[i].isnull = argnulls[i];
	}
	cobalt_act_as_owner(&saved, cobalt_extension_owner());
	result = FunctionCallInvoke(fcinfo);
	cobalt_act_as_caller(&saved);
	*isnull = fcinfo->isnull;
	return result;
}

/*
 * The secret held in a file the server can read: its content without one
 * trailing line break.  The caller must have the privileges of
 * pg_read_server_files (as pg_read_file demands for any path); a relative
 * path is taken from the data directory.  No error ever quotes the
 * content.
 */
char *
cobalt_read_secret_file(const char *path)
{
	char		buf[SECRET_FILE_MAX_BYTES + 1];
	struct stat st;
	int			fd;
	ssize_t		len;
	char	   *secret;

	if (!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read a cobalt secret from a file"),
				 errdetail("Only roles with the privileges of the \"pg_read_server_files\" role may name a file for the server to read."),
				 errhint("Ask a superuser to run it, or to grant pg_read_server_files.")));
	if (path[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cobalt secret file name must not be empty"),
				 errhint("Name a file the server can read; a relative name is taken from the data directory.")));

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open cobalt secret file \"%s\": %m", path)));
	if (fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat cobalt secret file \"%s\": %m", path)));
	if (!S_ISREG(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("cobalt secret file \"%s\" is not a regular file", path)));
	len = read(fd, buf, sizeof(buf));
	if (len < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read cobalt secret file \"%s\": %m", path)));
	CloseTransientFile(fd);
	if (len > SECRET_FILE_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cobalt secret file \"%s\" is larger than %d bytes", path,
						SECRET_FILE_MAX_BYTES),
				 errdetail("A secret is a single line of at most 500 characters."),
				 errhint("Put only the secret in the file.")));

	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	if (memchr(buf, '\0', len) != NULL ||
		!pg_verifymbstr(buf, (int) len, true))
	{
		explicit_bzero(buf, sizeof(buf));
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("cobalt secret file \"%s\" is not valid text", path),
				 errdetail("It holds a NUL byte or a byte sequence invalid in the database encoding."),
				 errhint("Put only the secret in the file, as plain text.")));
	}
	secret = pnstrdup(buf, len);
	explicit_bzero(buf, sizeof(buf));
	return secret;
}

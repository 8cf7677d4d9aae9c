/*-------------------------------------------------------------------------
 *
 * request.c
 *		Turning a job (operation + payload) into the parts of an HTTP
 *		request: the path, and a JSON body or multipart form fields.
 *
 * The same checks run twice: at submit, where a bad payload is an ERROR
 * and nothing is inserted, and in the worker, where a job that no longer
 * fits its operation (an administrator changed cobalt.operations, or a
 * row was written by hand) fails with a clear error instead of stopping
 * the worker.
 *
 * Rules: the payload goes out unchanged (jsonb's own text, so numbers keep
 * every digit), except that each {name} placeholder of the path takes that
 * field's value, URL-escaped, and the field leaves the body.  A multipart
 * operation sends every other field as a form field (strings as they are,
 * other values as their JSON text) and its file field, base64 in the
 * payload, as a file part named after that field, with "filename" and an
 * optional "content_type".
 *
 * src/request.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"

#include "cobalt.h"
#include "cobalt_pure.h"

/* A problem with a payload: what went wrong, and what to do about it. */
typedef struct PayloadProblem
{
	char	   *message;
	char	   *detail;
	char	   *hint;
} PayloadProblem;

/* The placeholder names of a path template, in order, as a List of char *. */
static List *
path_placeholders(const char *path)
{
	List	   *names = NIL;
	const char *p = path;

	while ((p = strchr(p, '{')) != NULL)
	{
		const char *end = strchr(p, '}');

		if (end == NULL)
			break;
		names = lappend(names, pnstrdup(p + 1, end - p - 1));
		p = end + 1;
	}
	return names;
}

/*
 * Decode base64 text, ignoring the line breaks and spaces that
 * encode(..., 'base64') and most encoders insert.  Returns the decoded
 * length, or -1 when the text is not valid (or decodes to nothing).
 */
static int
decode_base64(const char *text, int len, char **out)
{
	char	   *compact = palloc(len + 1);
	int			n = 0;
	int			maxlen;
	int			decoded;

	for (int i = 0; i < len; i++)
		if (text[i] != '\n' && text[i] != '\r' && text[i] != ' ' && text[i] != '\t')
			compact[n++] = text[i];
	maxlen = pg_b64_dec_len(n);
	*out = palloc(maxlen + 1);
	decoded = (n > 0) ? pg_b64_decode(compact, n, *out, maxlen) : -1;
	pfree(compact);
	return decoded > 0 ? decoded : -1;
}

/* A top-level field of the payload, or NULL. */
static JsonbValue *
payload_field(Jsonb *payload, const char *name)
{
	return getKeyJsonValueFromContainer(&payload->root, name, strlen(name), NULL);
}

/* A scalar's text: strings as they are, other values as JSON text. */
static char *
value_text(JsonbValue *v, size_t *len)
{
	char	   *s;

	switch (v->type)
	{
		case jbvString:
			*len = v->val.string.len;
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			s = DatumGetCString(DirectFunctionCall1(numeric_out,
													NumericGetDatum(v->val.numeric)));
			break;
		case jbvBool:
			s = pstrdup(v->val.boolean ? "true" : "false");
			break;
		case jbvNull:
			s = pstrdup("null");
			break;
		case jbvBinary:
			s = JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
			break;
		default:
			s = pstrdup("");
			break;
	}
	*len = strlen(s);
	return s;
}

/*
 * Check a payload against its operation.  Returns true when it fits;
 * otherwise fills *problem.
 */
static bool
check_payload(const CobaltOperation *op, Jsonb *payload, PayloadProblem *problem)
{
	ListCell   *lc;

	memset(problem, 0, sizeof(*problem));
	if (!JB_ROOT_IS_OBJECT(payload) || JB_ROOT_IS_SCALAR(payload))
	{
		problem->message = pstrdup("cobalt payload must be a JSON object");
		problem->hint = pstrdup("Pass the operation's fields as a JSON object, for example '{\"mrn\": \"1234\"}'.");
		return false;
	}

	foreach(lc, path_placeholders(op->path))
	{
		char	   *name = lfirst(lc);
		JsonbValue *v = payload_field(payload, name);

		if (v == NULL || (v->type != jbvString && v->type != jbvNumeric) ||
			(v->type == jbvString && v->val.string.len == 0))
		{
			problem->message = psprintf("cobalt payload for operation \"%s\" needs field \"%s\"",
										op->operation, name);
			problem->detail = psprintf("The operation's path \"%s\" takes that field's value, which must be a non-empty string or a number.",
									   op->path);
			problem->hint = psprintf("Add \"%s\" to the payload.", name);
			return false;
		}
	}

	if (op->file_field != NULL)
	{
		JsonbValue *doc = payload_field(payload, op->file_field);
		JsonbValue *filename = payload_field(payload, "filename");
		JsonbValue *ctype = payload_field(payload, "content_type");
		char	   *bytes;

		if (doc == NULL || doc->type != jbvString || doc->val.string.len == 0)
		{
			problem->message = psprintf("cobalt payload for operation \"%s\" needs field \"%s\" holding the file in base64",
										op->operation, op->file_field);
			problem->hint = psprintf("Encode the file with encode(bytes, 'base64') and pass it as \"%s\".",
									 op->file_field);
			return false;
		}
		if (decode_base64(doc->val.string.val, doc->val.string.len, &bytes) < 0)
		{
			problem->message = psprintf("cobalt payload field \"%s\" is not valid base64",
										op->file_field);
			problem->detail = pstrdup("The file must be standard base64 (A-Z, a-z, 0-9, +, /, with = padding; line breaks are ignored) and not empty.");
			problem->hint = psprintf("Encode the file with encode(bytes, 'base64') and pass it as \"%s\".",
									 op->file_field);
			return false;
		}
		if (filename == NULL || filename->type != jbvString ||
			filename->val.string.len == 0)
		{
			problem->message = psprintf("cobalt payload for operation \"%s\" needs a \"filename\"",
										op->operation);
			problem->hint = pstrdup("Add \"filename\": \"name.pdf\" to the payload.");
			return false;
		}
		if (ctype != NULL && (ctype->type != jbvString || ctype->val.string.len == 0))
		{
			problem->message = pstrdup("cobalt payload field \"content_type\" must be a non-empty string");
			problem->hint = pstrdup("Give a MIME type such as \"application/pdf\", or leave the field out.");
			return false;
		}
	}
	return true;
}

/*
 * Check a payload's size and nesting at submit (before anything is looked
 * up or inserted): ERROR when it is larger than cobalt.max_payload_size or
 * nested deeper than COBALT_PAYLOAD_MAX_DEPTH.
 */
void
cobalt_check_payload_limits(Jsonb *payload)
{
	Size		size = VARSIZE(payload);
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			depth = 0;

	if (size > (Size) cobalt_max_payload_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cobalt payload is too large"),
				 errdetail("It takes %zu bytes; cobalt.max_payload_size is %d bytes.",
						   size, cobalt_max_payload_size),
				 errhint("Send a smaller payload or document, or ask a superuser to raise cobalt.max_payload_size.")));
	it = JsonbIteratorInit(&payload->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_ARRAY || tok == WJB_BEGIN_OBJECT)
		{
			if (++depth > COBALT_PAYLOAD_MAX_DEPTH)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("cobalt payload is nested too deeply"),
						 errdetail("Objects and arrays may be nested at most %d levels deep.",
								   COBALT_PAYLOAD_MAX_DEPTH),
						 errhint("Flatten the payload: Cobalt's operations take a few levels at most.")));
		}
		else if (tok == WJB_END_ARRAY || tok == WJB_END_OBJECT)
			depth--;
	}
}

/*
 * Check a payload at submit: ERROR (nothing inserted yet) when it does not
 * fit the operation.
 */
void
cobalt_validate_payload(const CobaltOperation *op, Jsonb *payload)
{
	PayloadProblem problem;

	if (check_payload(op, payload, &problem))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg_internal("%s", problem.message),
			 problem.detail ? errdetail_internal("%s", problem.detail) : 0,
			 problem.hint ? errhint("%s", problem.hint) : 0));
}

/* Fill in the path's placeholders from the payload. */
static char *
fill_path(const char *path, Jsonb *payload)
{
	StringInfoData buf;
	const char *p = path;

	initStringInfo(&buf);
	while (*p)
	{
		const char *end;

		if (*p == '{' && (end = strchr(p, '}')) != NULL)
		{
			char	   *name = pnstrdup(p + 1, end - p - 1);
			JsonbValue *v = payload_field(payload, name);
			size_t		len;
			char	   *text = value_text(v, &len);
			char	   *escaped = cobalt_url_escape(text, len);

			if (escaped == NULL)
				elog(ERROR, "out of memory");
			appendStringInfoString(&buf, escaped);
			free(escaped);
			p = end + 1;
		}
		else
			appendStringInfoChar(&buf, *p++);
	}
	return buf.data;
}

static bool
is_placeholder(List *names, const char *key)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp(lfirst(lc), key) == 0)
			return true;
	return false;
}

/* The multipart form fields of a payload. */
static void
build_form(const CobaltOperation *op, Jsonb *payload, List *names,
		   CobaltRequestSpec *spec)
{
	JsonbIterator *it = JsonbIteratorInit(&payload->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	int			cap = 8;

	spec->form = palloc0(sizeof(CobaltFormField) * cap);
	spec->nform = 0;
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		CobaltFormField *f;

		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE || key == NULL || is_placeholder(names, key) ||
			strcmp(key, "filename") == 0 || strcmp(key, "content_type") == 0)
			continue;
		if (spec->nform == cap)
		{
			cap *= 2;
			spec->form = repalloc(spec->form, sizeof(CobaltFormField) * cap);
		}
		f = &spec->form[spec->nform++];
		memset(f, 0, sizeof(*f));
		f->name = key;
		if (strcmp(key, op->file_field) == 0)
		{
			JsonbValue *fn = payload_field(payload, "filename");
			JsonbValue *ct = payload_field(payload, "content_type");

			f->value_len = decode_base64(v.val.string.val, v.val.string.len, &f->value);
			f->filename = pnstrdup(fn->val.string.val, fn->val.string.len);
			f->content_type = ct ? pnstrdup(ct->val.string.val, ct->val.string.len) :
				pstrdup("application/octet-stream");
		}
		else
			f->value = value_text(&v, &f->value_len);
		key = NULL;
	}
}

/*
 * Build a job's request in the current memory context.  Returns NULL on
 * success, or the reason the job cannot be sent.
 */
char *
cobalt_build_request(const CobaltOperation *op, Jsonb *payload,
					 CobaltRequestSpec *spec)
{
	PayloadProblem problem;
	List	   *names;
	ListCell   *lc;

	memset(spec, 0, sizeof(*spec));
	if (!check_payload(op, payload, &problem))
		return problem.detail ? psprintf("%s: %s", problem.message, problem.detail) :
			problem.message;

	names = path_placeholders(op->path);
	spec->path = fill_path(op->path, payload);
	if (op->file_field != NULL)
	{
		build_form(op, payload, names, spec);
		return NULL;
	}

	foreach(lc, names)
		payload = DatumGetJsonbP(DirectFunctionCall2(jsonb_delete,
													 JsonbPGetDatum(payload),
													 CStringGetTextDatum(lfirst(lc))));
	spec->body = JsonbToCString(NULL, &payload->root, VARSIZE(payload));
	spec->body_len = strlen(spec->body);
	return NULL;
}

/*-------------------------------------------------------------------------
 *
 * cobalt_json.c
 *		Reading Cobalt's answers with json-c.
 *
 * Everything that comes back from the network is hostile until proven
 * otherwise: the tokener runs in strict mode with UTF-8 validation and a
 * depth limit, a body must be one JSON value with nothing after it, and
 * any text we hand back for storage as jsonb is re-serialised by json-c
 * and refused if it would carry a NUL character (which jsonb rejects).
 *
 * This file includes no PostgreSQL header: json-c's json_object clashes
 * with utils/builtins.h, and the parsers must run under a fuzzer.
 *
 * src/cobalt_json.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cobalt_pure.h"

#define SERIALIZE_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* Longest number text accepted (a double has 17 significant digits). */
#define MAX_NUMBER_TEXT 400

/*
 * Validate a strict UTF-8 sequence at p (at most "left" bytes): no overlong
 * forms, no surrogates, nothing above U+10FFFF.  Returns its length, or 0.
 */
static size_t
utf8_sequence_length(const unsigned char *p, size_t left)
{
	unsigned int c = p[0];
	size_t		n;
	unsigned int cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2, cp = c & 0x1F;
	else if (c >= 0xE0 && c <= 0xEF)
		n = 3, cp = c & 0x0F;
	else if (c >= 0xF0 && c <= 0xF4)
		n = 4, cp = c & 0x07;
	else
		return 0;
	if (left < n)
		return 0;
	for (size_t i = 1; i < n; i++)
	{
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
		cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

static int
hex_value(const unsigned char *p)
{
	int			v = 0;

	for (int i = 0; i < 4; i++)
	{
		int			c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/*
 * Does the number text at p (len bytes, already checked to be one) fit a
 * double without overflow or underflow?  json-c reads it as one; a value
 * it would turn into infinity or zero is not the number Cobalt sent.
 */
static bool
double_in_range(const unsigned char *p, size_t len)
{
	char		buf[MAX_NUMBER_TEXT + 1];
	double		d;

	if (len > MAX_NUMBER_TEXT)
		return false;
	memcpy(buf, p, len);
	buf[len] = '\0';
	errno = 0;
	d = strtod(buf, NULL);
	return errno != ERANGE && isfinite(d);
}

/*
 * A number token at p, per RFC 8259, whose integer form (if it has no
 * fraction or exponent) fits in 64 bits (json-c saturates larger ones).
 * Returns its length, or 0.
 */
static size_t
number_length(const unsigned char *p, size_t left)
{
	size_t		i = 0;
	size_t		digits;
	bool		integer = true;

	if (i < left && p[i] == '-')
		i++;
	if (i < left && p[i] == '0')
		i++;
	else if (i < left && p[i] >= '1' && p[i] <= '9')
		while (i < left && p[i] >= '0' && p[i] <= '9')
			i++;
	else
		return 0;
	digits = i - (p[0] == '-');
	if (i < left && p[i] == '.')
	{
		integer = false;
		if (++i >= left || p[i] < '0' || p[i] > '9')
			return 0;
		while (i < left && p[i] >= '0' && p[i] <= '9')
			i++;
	}
	if (i < left && (p[i] == 'e' || p[i] == 'E'))
	{
		integer = false;
		if (++i < left && (p[i] == '+' || p[i] == '-'))
			i++;
		if (i >= left || p[i] < '0' || p[i] > '9')
			return 0;
		while (i < left && p[i] >= '0' && p[i] <= '9')
			i++;
	}
	if (integer && digits > 18)
		return 0;
	if (!integer && !double_in_range(p, i))
		return 0;
	return i;
}

/*
 * Check what json-c's strict mode lets through but PostgreSQL's jsonb (and
 * our promise of exact values) does not: invalid or non-shortest UTF-8,
 * \u0000 and unpaired surrogate escapes, NaN / Infinity / "1.", integers
 * beyond 64 bits and numbers beyond a double's range.  Structure is left
 * to the tokener; *nkeys counts the object keys (strings followed by a
 * colon), so that keys json-c merged can be noticed.
 */
static bool
text_is_safe(const unsigned char *p, size_t len, size_t *nkeys)
{
	size_t		i = 0;

	*nkeys = 0;

	while (i < len)
	{
		unsigned char c = p[i];

		if (c == '"')
		{
			for (i++;; )
			{
				size_t		n;

				if (i >= len)
					return false;
				c = p[i];
				if (c == '"')
				{
					size_t		j = ++i;

					while (j < len && (p[j] == ' ' || p[j] == '\t' || p[j] == '\n' || p[j] == '\r'))
						j++;
					if (j < len && p[j] == ':')
						(*nkeys)++;
					break;
				}
				if (c < 0x20)
					return false;	/* JSON (and jsonb) want these escaped */
				if (c == '\\')
				{
					int			v;

					if (i + 1 >= len)
						return false;
					if (p[i + 1] != 'u')
					{
						i += 2;
						continue;
					}
					if (i + 6 > len || (v = hex_value(p + i + 2)) < 0 || v == 0 ||
						(v >= 0xDC00 && v <= 0xDFFF))
						return false;
					if (v >= 0xD800 && v <= 0xDBFF)
					{
						int			low;

						if (i + 12 > len || p[i + 6] != '\\' || p[i + 7] != 'u' ||
							(low = hex_value(p + i + 8)) < 0xDC00 || low > 0xDFFF)
							return false;
						i += 6;
					}
					i += 6;
					continue;
				}
				if ((n = utf8_sequence_length(p + i, len - i)) == 0)
					return false;
				i += n;
			}
		}
		else if (c == '-' || (c >= '0' && c <= '9'))
		{
			size_t		n = number_length(p + i, len - i);

			if (n == 0)
				return false;
			i += n;
		}
		else if (c == 'N' || c == 'I' || c == 'n' || c == 'i')
		{
			/* only "null" may start with a letter other than t/f */
			if (len - i < 4 || memcmp(p + i, "null", 4) != 0)
				return false;
			i += 4;
		}
		else
			i++;
	}
	return true;
}

/* How many members the objects in a parsed value hold, all together. */
static size_t
count_members(struct json_object *obj)
{
	size_t		n = 0;

	if (json_object_is_type(obj, json_type_object))
	{
		json_object_object_foreach(obj, key, value)
		{
			(void) key;
			n += 1 + count_members(value);
		}
	}
	else if (json_object_is_type(obj, json_type_array))
	{
		size_t		len = json_object_array_length(obj);

		for (size_t i = 0; i < len; i++)
			n += count_members(json_object_array_get_idx(obj, i));
	}
	return n;
}

/*
 * Parse a whole body into one JSON value; NULL when it is not exactly one
 * valid, strict, UTF-8 JSON value, or when an object repeats a key (json-c
 * would keep one of them: which job_id did Cobalt mean?).  The caller
 * releases it with json_object_put().
 */
static struct json_object *
parse_body(const char *body, size_t len)
{
	struct json_tokener *tok;
	struct json_object *obj;
	size_t		used;
	size_t		nkeys;

	if (body == NULL || len == 0 || len > COBALT_MAX_RESPONSE_SIZE ||
		len > (size_t) INT32_MAX)
		return NULL;
	if (memchr(body, '\0', len) != NULL ||
		!text_is_safe((const unsigned char *) body, len, &nkeys))
		return NULL;

	tok = json_tokener_new_ex(COBALT_JSON_MAX_DEPTH);
	if (tok == NULL)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, body, (int) len);
	if (obj == NULL || json_tokener_get_error(tok) != json_tokener_success)
	{
		/* An incomplete value is an error too. */
		if (obj != NULL)
			json_object_put(obj);
		json_tokener_free(tok);
		return NULL;
	}
	used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);

	/* Only white space may follow the value. */
	for (; used < len; used++)
	{
		char		c = body[used];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
		{
			json_object_put(obj);
			return NULL;
		}
	}
	if (count_members(obj) != nkeys)
	{
		json_object_put(obj);
		return NULL;
	}
	return obj;
}

/*
 * Serialise a value for storage as jsonb.  text_is_safe() has already
 * refused everything jsonb would (NUL escapes, bad numbers, bad UTF-8).
 */
static char *
serialize_for_jsonb(struct json_object *obj)
{
	const char *text = json_object_to_json_string_ext(obj, SERIALIZE_FLAGS);

	return text ? strdup(text) : NULL;
}

/* A string value as a C string; NULL when it holds a NUL character. */
static char *
dup_string_value(struct json_object *obj)
{
	const char *s = json_object_get_string(obj);
	int			len = json_object_get_string_len(obj);

	if (s == NULL || (int) strlen(s) != len)
		return NULL;
	return strdup(s);
}

/*
 * A job_id: a string, or a number taken as its JSON text.  Sets *invalid
 * when the field is present but of another type (or holds NUL).
 */
static char *
job_id_text(struct json_object *value, bool *invalid)
{
	char	   *id = NULL;

	switch (json_object_get_type(value))
	{
		case json_type_string:
			id = dup_string_value(value);
			break;
		case json_type_int:
		case json_type_double:
			id = strdup(json_object_to_json_string_ext(value, SERIALIZE_FLAGS));
			break;
		default:
			break;
	}
	if (id == NULL || id[0] == '\0')
	{
		free(id);
		*invalid = true;
		return NULL;
	}
	return id;
}

/*
 * Read the answer to a job-creating request.  Returns false when the body
 * is not a readable JSON object; the answer is then empty.  A job_id is
 * looked for at the top level first, then under "data".
 */
bool
cobalt_json_parse_send(const char *body, size_t len, CobaltSendAnswer *answer)
{
	struct json_object *root;
	struct json_object *value;
	struct json_object *data;

	memset(answer, 0, sizeof(*answer));
	answer->success = -1;

	root = parse_body(body, len);
	if (root == NULL)
		return false;
	if (!json_object_is_type(root, json_type_object) ||
		(answer->body_json = serialize_for_jsonb(root)) == NULL)
	{
		json_object_put(root);
		return false;
	}

	if (json_object_object_get_ex(root, "success", &value) &&
		json_object_is_type(value, json_type_boolean))
		answer->success = json_object_get_boolean(value) ? 1 : 0;

	if (json_object_object_get_ex(root, "message", &value) &&
		json_object_is_type(value, json_type_string))
		answer->message = dup_string_value(value);

	if (json_object_object_get_ex(root, "job_id", &value) &&
		!json_object_is_type(value, json_type_null))
		answer->job_id = job_id_text(value, &answer->job_id_invalid);
	else if (json_object_object_get_ex(root, "data", &data) &&
			 json_object_is_type(data, json_type_object) &&
			 json_object_object_get_ex(data, "job_id", &value) &&
			 !json_object_is_type(value, json_type_null))
		answer->job_id = job_id_text(value, &answer->job_id_invalid);

	json_object_put(root);
	return true;
}

void
cobalt_send_answer_free(CobaltSendAnswer *answer)
{
	free(answer->job_id);
	free(answer->message);
	free(answer->body_json);
	memset(answer, 0, sizeof(*answer));
}

/* Append "text" to a growing malloc'd string, with a separator. */
static char *
append_text(char *buf, const char *sep, const char *text)
{
	size_t		old = buf ? strlen(buf) : 0;
	size_t		add = strlen(text) + (buf ? strlen(sep) : 0);
	char	   *out = realloc(buf, old + add + 1);

	if (out == NULL)
		return buf;
	if (old > 0)
		strcat(out, sep);
	else
		out[0] = '\0';
	strcat(out, text);
	return out;
}

/*
 * A failure event's reason: data.failure_reason, then each of data.reasons
 * as "code: description".  NULL when the event says nothing.
 */
static char *
failure_text(struct json_object *data)
{
	struct json_object *value;
	char	   *text = NULL;

	if (data == NULL || !json_object_is_type(data, json_type_object))
		return NULL;
	if (json_object_object_get_ex(data, "failure_reason", &value) &&
		json_object_is_type(value, json_type_string))
	{
		char	   *s = dup_string_value(value);

		if (s != NULL && s[0] != '\0')
			text = append_text(text, "; ", s);
		free(s);
	}
	if (json_object_object_get_ex(data, "reasons", &value) &&
		json_object_is_type(value, json_type_array))
	{
		size_t		n = json_object_array_length(value);

		for (size_t i = 0; i < n && i < 50; i++)
		{
			struct json_object *reason = json_object_array_get_idx(value, i);
			struct json_object *code = NULL;
			struct json_object *desc = NULL;
			char	   *c;
			char	   *d;
			char	   *one = NULL;

			if (!json_object_is_type(reason, json_type_object))
				continue;
			json_object_object_get_ex(reason, "code", &code);
			json_object_object_get_ex(reason, "description", &desc);
			if (code && json_object_is_type(code, json_type_int))
				c = strdup(json_object_get_string(code));
			else
				c = (code && json_object_is_type(code, json_type_string)) ?
					dup_string_value(code) : NULL;
			d = (desc && json_object_is_type(desc, json_type_string)) ?
				dup_string_value(desc) : NULL;
			if (c && c[0] && d && d[0])
			{
				one = append_text(NULL, "", c);
				one = append_text(one, ": ", d);
			}
			else if (d && d[0])
				one = append_text(NULL, "", d);
			else if (c && c[0])
				one = append_text(NULL, "", c);
			if (one)
				text = append_text(text, "; ", one);
			free(one);
			free(c);
			free(d);
		}
	}
	return text;
}

/*
 * Read the answer to GET /webhook-events?job_id=...  Returns false when
 * the body is unreadable or not of the documented shape (an object whose
 * "webhook_events" is an array of objects with a string "event_type").
 * The earliest event (by "created_at", ties and gaps by position from the
 * end, since Cobalt lists newest first) decides the outcome.
 */
bool
cobalt_json_parse_poll(const char *body, size_t len, CobaltPollAnswer *answer)
{
	struct json_object *root;
	struct json_object *events;
	struct json_object *earliest = NULL;
	const char *earliest_at = NULL;
	struct json_object *value;
	struct json_object *data = NULL;
	size_t		n;

	memset(answer, 0, sizeof(*answer));
	root = parse_body(body, len);
	if (root == NULL)
		return false;
	if (!json_object_is_type(root, json_type_object) ||
		!json_object_object_get_ex(root, "webhook_events", &events) ||
		!json_object_is_type(events, json_type_array))
		goto unreadable;

	n = json_object_array_length(events);
	for (size_t i = n; i-- > 0;)
	{
		struct json_object *event = json_object_array_get_idx(events, i);
		const char *at = NULL;

		if (!json_object_is_type(event, json_type_object) ||
			!json_object_object_get_ex(event, "event_type", &value) ||
			!json_object_is_type(value, json_type_string))
			goto unreadable;
		if (json_object_object_get_ex(event, "created_at", &value) &&
			json_object_is_type(value, json_type_string))
			at = json_object_get_string(value);
		if (earliest == NULL ||
			(at != NULL && earliest_at != NULL && strcmp(at, earliest_at) < 0))
		{
			earliest = event;
			earliest_at = at;
		}
	}
	if (earliest == NULL)
	{
		json_object_put(root);
		return true;			/* not finished yet */
	}

	json_object_object_get_ex(earliest, "event_type", &value);
	answer->event_type = dup_string_value(value);
	if (answer->event_type == NULL || answer->event_type[0] == '\0')
		goto unreadable;
	if (json_object_object_get_ex(earliest, "event_id", &value) &&
		json_object_is_type(value, json_type_string))
		answer->event_id = dup_string_value(value);
	json_object_object_get_ex(earliest, "data", &data);
	answer->data_json = data ? serialize_for_jsonb(data) : strdup("null");
	if (answer->data_json == NULL)
		goto unreadable;
	answer->failure = failure_text(data);
	answer->has_event = true;

	/* every event, oldest listed last by Cobalt, kept oldest first */
	answer->events = calloc(n, sizeof(CobaltEvent));
	if (answer->events == NULL)
		goto unreadable;
	for (size_t i = n; i-- > 0;)
	{
		struct json_object *event = json_object_array_get_idx(events, i);
		CobaltEvent *e = &answer->events[answer->nevents++];
		struct json_object *d = NULL;

		json_object_object_get_ex(event, "event_type", &value);
		e->event_type = dup_string_value(value);
		if (json_object_object_get_ex(event, "event_id", &value) &&
			json_object_is_type(value, json_type_string))
			e->event_id = dup_string_value(value);
		json_object_object_get_ex(event, "data", &d);
		e->data_json = d ? serialize_for_jsonb(d) : strdup("null");
		if (e->event_type == NULL || e->data_json == NULL)
			goto unreadable;
	}
	json_object_put(root);
	return true;

unreadable:
	json_object_put(root);
	cobalt_poll_answer_free(answer);
	return false;
}

void
cobalt_events_free(CobaltEvent *events, int nevents)
{
	for (int i = 0; i < nevents; i++)
	{
		free(events[i].event_id);
		free(events[i].event_type);
		free(events[i].data_json);
	}
	free(events);
}

void
cobalt_poll_answer_free(CobaltPollAnswer *answer)
{
	cobalt_events_free(answer->events, answer->nevents);
	free(answer->event_id);
	free(answer->event_type);
	free(answer->data_json);
	free(answer->failure);
	memset(answer, 0, sizeof(*answer));
}

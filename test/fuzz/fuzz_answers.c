/*-------------------------------------------------------------------------
 *
 * fuzz_answers.c
 *		libFuzzer target for cobalt's readers of Cobalt's answers
 *		(src/cobalt_json.c, src/outcome.c).
 *
 * One input drives every entry point: cobalt_json_parse_send(),
 * cobalt_json_parse_poll(), cobalt_classify_send(), cobalt_classify_poll(),
 * cobalt_parse_retry_after(), cobalt_event_type_is_failure(),
 * cobalt_backoff_ms() and cobalt_url_escape().  Whatever they hand back is checked against cheap
 * invariants (abort() on violation, which libFuzzer reports as a crash) and
 * released, so that a leak is a finding too.
 *
 * Input layout (the seed corpus in corpus/ follows it; see make_corpus.py):
 *
 *	byte 0	 bits 0-4  index into status_table[] (HTTP status)
 *			 bit 5	   response_too_large
 *			 bit 6	   transport failure (curl_code = 28, a timeout)
 *			 bit 7	   maybe_delivered
 *	byte 1	 bits 0-5  L, the length of the Retry-After value (0..63)
 *			 bits 6-7  index into now_table[] (the clock)
 *	bytes 2 .. 2+L-1   the Retry-After header value (copied NUL-terminated,
 *					   so it ends at its first NUL byte, as in http.c)
 *	the rest		   the response body (NULL when empty, as in http.c)
 *
 * Inputs shorter than two bytes are ignored.
 *
 * test/fuzz/fuzz_answers.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cobalt_pure.h"

#define RETRY_AFTER_MIN_MS	1000L
#define RETRY_AFTER_MAX_MS	600000L

static const long status_table[32] = {
	200, 201, 202, 204, 299, 429, 400, 401,
	403, 404, 409, 422, 500, 502, 503, 504,
	0, 100, 199, 300, 301, 302, 304, 405,
	408, 410, 413, 418, 499, 599, -1, 1000,
};

static const time_t now_table[4] = {
	784111747,					/* Sun, 06 Nov 1994 08:49:07 GMT (as test_pure.c) */
	0,
	1700000000,					/* 2023-11-14 */
	253402300799,				/* 9999-12-31 23:59:59 */
};

/* ----------
 * Invariant checks
 * ----------
 */

static const char *current_check = "";

static void violation(const char *what, const char *detail) __attribute__((noreturn));

static void
violation(const char *what, const char *detail)
{
	fprintf(stderr, "INVARIANT VIOLATED [%s]: %s\n", current_check, what);
	if (detail != NULL)
	{
		size_t		n = strlen(detail);

		/* the value, escaped; a long one as its first and last 160 bytes */
		fprintf(stderr, "  value (%zu bytes): \"", n);
		for (size_t i = 0; i < n; i++)
		{
			unsigned char c = (unsigned char) detail[i];

			if (n > 320 && i == 160)
			{
				fprintf(stderr, "\" ... \"");
				i = n - 160;
				c = (unsigned char) detail[i];
			}
			if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
				fputc(c, stderr);
			else
				fprintf(stderr, "\\x%02x", c);
		}
		fprintf(stderr, "\"\n");
	}
	abort();
}

#define CHECK(cond, detail) \
	do { if (!(cond)) violation(#cond, (detail)); } while (0)

/*
 * Strict UTF-8 as PostgreSQL accepts it: no overlong forms, no UTF-16
 * surrogates, nothing above U+10FFFF.  (Written here independently of
 * cobalt_json.c's own validator on purpose.)
 */
static bool
utf8_valid(const unsigned char *s, size_t len)
{
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c = s[i];
		size_t		need;
		uint32_t	cp,
					min;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0)
			need = 1, cp = c & 0x1F, min = 0x80;
		else if ((c & 0xF0) == 0xE0)
			need = 2, cp = c & 0x0F, min = 0x800;
		else if ((c & 0xF8) == 0xF0)
			need = 3, cp = c & 0x07, min = 0x10000;
		else
			return false;
		if (len - i - 1 < need)
			return false;
		for (size_t k = 1; k <= need; k++)
		{
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += need + 1;
	}
	return true;
}

/* Plain text (an id, an event type, an error message): valid UTF-8. */
static void
check_text(const char *s, const char *what)
{
	current_check = what;
	if (s != NULL)
		CHECK(utf8_valid((const unsigned char *) s, strlen(s)), s);
}

/* Is there a \u0000 escape in JSON text?  Escaped backslashes don't count. */
static bool
json_has_nul_escape(const char *s)
{
	bool		in_string = false;

	for (const char *p = s; *p; p++)
	{
		if (!in_string)
		{
			if (*p == '"')
				in_string = true;
			continue;
		}
		if (*p == '"')
			in_string = false;
		else if (*p == '\\')
		{
			if (p[1] == 'u' && strncmp(p + 2, "0000", 4) == 0)
				return true;
			if (p[1] != '\0')
				p++;			/* skip the escaped character */
		}
	}
	return false;
}

/* JSON text destined for jsonb: valid UTF-8, no \u0000 escape. */
static void
check_json(const char *s, const char *what)
{
	current_check = what;
	if (s == NULL)
		return;
	CHECK(s[0] != '\0', s);
	CHECK(utf8_valid((const unsigned char *) s, strlen(s)), s);
	CHECK(!json_has_nul_escape(s), s);
}

static void
check_retry_after(long ms, const char *what)
{
	current_check = what;
	CHECK(ms == -1 || (ms >= RETRY_AFTER_MIN_MS && ms <= RETRY_AFTER_MAX_MS), NULL);
}

static void
check_events(const CobaltEvent *events, int nevents, const char *what)
{
	current_check = what;
	CHECK(nevents >= 0, NULL);
	CHECK((nevents == 0) == (events == NULL), NULL);
	for (int i = 0; i < nevents; i++)
	{
		current_check = what;
		CHECK(events[i].event_type != NULL, NULL);
		CHECK(events[i].data_json != NULL, NULL);
		check_text(events[i].event_type, "event.event_type");
		check_text(events[i].event_id, "event.event_id");
		check_json(events[i].data_json, "event.data_json");
	}
}

/*
 * body_json is promised "safe for jsonb": reading it again must succeed
 * and give the same text back (json-c's output passes the same checks the
 * original answer had to pass).
 */
static void
check_send_roundtrip(const char *body_json)
{
	CobaltSendAnswer again;
	bool		ok = cobalt_json_parse_send(body_json, strlen(body_json), &again);

	current_check = "send: body_json read back";
	if (!ok)
		violation("re-serialised body is refused by cobalt_json_parse_send", body_json);
	if (again.body_json == NULL || strcmp(again.body_json, body_json) != 0)
		violation("re-serialised body does not reproduce itself", body_json);
	cobalt_send_answer_free(&again);
}

/* The same for an event's data_json, read back inside a minimal poll answer. */
static void
check_data_roundtrip(const char *data_json)
{
	static const char head[] = "{\"webhook_events\":[{\"event_type\":\"x\",\"data\":";
	static const char tail[] = "}]}";
	size_t		n = strlen(data_json);
	char	   *wrapped = malloc(sizeof(head) + n + sizeof(tail));
	CobaltPollAnswer again;
	bool		ok;

	if (wrapped == NULL)
		return;
	memcpy(wrapped, head, sizeof(head) - 1);
	memcpy(wrapped + sizeof(head) - 1, data_json, n);
	memcpy(wrapped + sizeof(head) - 1 + n, tail, sizeof(tail));
	ok = cobalt_json_parse_poll(wrapped, strlen(wrapped), &again);
	free(wrapped);
	current_check = "poll: data_json read back";
	if (!ok || !again.has_event)
		violation("re-serialised data is refused by cobalt_json_parse_poll", data_json);
	if (again.data_json == NULL || strcmp(again.data_json, data_json) != 0)
		violation("re-serialised data does not reproduce itself", data_json);
	cobalt_poll_answer_free(&again);
}

/* ----------
 * One run per entry point
 * ----------
 */

static void
fuzz_parse_send(const char *body, size_t len)
{
	CobaltSendAnswer a;
	bool		ok = cobalt_json_parse_send(body, len, &a);

	current_check = "parse_send";
	CHECK(a.success >= -1 && a.success <= 1, NULL);
	if (!ok)
	{
		CHECK(a.job_id == NULL && a.message == NULL && a.body_json == NULL, NULL);
		CHECK(!a.job_id_invalid, NULL);
	}
	else
	{
		CHECK(a.body_json != NULL && a.body_json[0] == '{', a.body_json);
		CHECK(!(a.job_id_invalid && a.job_id != NULL), a.job_id);
		CHECK(a.job_id == NULL || a.job_id[0] != '\0', NULL);
		check_json(a.body_json, "parse_send: body_json");
		check_text(a.job_id, "parse_send: job_id");
		check_text(a.message, "parse_send: message");
		check_send_roundtrip(a.body_json);
	}
	cobalt_send_answer_free(&a);
}

static void
fuzz_parse_poll(const char *body, size_t len)
{
	CobaltPollAnswer a;
	bool		ok = cobalt_json_parse_poll(body, len, &a);

	current_check = "parse_poll";
	if (!ok || !a.has_event)
	{
		CHECK(!a.has_event && a.event_type == NULL && a.event_id == NULL, NULL);
		CHECK(a.data_json == NULL && a.failure == NULL, NULL);
		CHECK(a.events == NULL && a.nevents == 0, NULL);
	}
	else
	{
		CHECK(a.event_type != NULL && a.event_type[0] != '\0', NULL);
		CHECK(a.data_json != NULL, NULL);
		CHECK(a.nevents >= 1, NULL);
		check_text(a.event_type, "parse_poll: event_type");
		check_text(a.event_id, "parse_poll: event_id");
		check_text(a.failure, "parse_poll: failure");
		check_json(a.data_json, "parse_poll: data_json");
		check_events(a.events, a.nevents, "parse_poll: events");
		check_data_roundtrip(a.data_json);
	}
	cobalt_poll_answer_free(&a);
}

static void
fuzz_classify_send(const CobaltHttpRequest *req, time_t now)
{
	CobaltSendOutcome o;
	bool		transport = req->curl_code != 0 && !req->response_too_large;

	cobalt_classify_send(req, now, &o);
	current_check = "classify_send";
	CHECK(o.verdict == COBALT_SEND_ACCEPTED || o.verdict == COBALT_SEND_COMPLETED ||
		  o.verdict == COBALT_SEND_REJECTED || o.verdict == COBALT_SEND_RETRY ||
		  o.verdict == COBALT_SEND_UNKNOWN, NULL);
	check_retry_after(o.retry_after_ms, "classify_send: retry_after_ms");
	current_check = "classify_send";
	if (o.verdict != COBALT_SEND_RETRY)
		CHECK(o.retry_after_ms == -1, NULL);
	if (o.verdict == COBALT_SEND_ACCEPTED)
		CHECK(o.remote_job_id != NULL && o.remote_job_id[0] != '\0', NULL);
	else
		CHECK(o.remote_job_id == NULL, o.remote_job_id);
	if (o.verdict == COBALT_SEND_REJECTED || o.verdict == COBALT_SEND_RETRY ||
		o.verdict == COBALT_SEND_UNKNOWN)
		CHECK(o.error != NULL, NULL);

	/*
	 * The one promise: RETRY only when nothing can have reached Cobalt, or
	 * on 429; a transfer that may have been delivered is always UNKNOWN.
	 */
	if (o.verdict == COBALT_SEND_RETRY)
		CHECK((transport && !req->maybe_delivered) ||
			  (!transport && req->status == 429), NULL);
	if (transport && req->maybe_delivered)
		CHECK(o.verdict == COBALT_SEND_UNKNOWN, NULL);
	/* success can only be claimed on a 2xx answer that was read */
	if (o.verdict == COBALT_SEND_ACCEPTED || o.verdict == COBALT_SEND_COMPLETED)
		CHECK(!transport && !req->response_too_large &&
			  req->status >= 200 && req->status < 300 && o.result_json != NULL, NULL);

	check_text(o.remote_job_id, "classify_send: remote_job_id");
	check_text(o.error, "classify_send: error");
	check_json(o.result_json, "classify_send: result_json");
	cobalt_send_outcome_free(&o);
}

static void
fuzz_classify_poll(const CobaltHttpRequest *req, time_t now)
{
	CobaltPollOutcome o;
	bool		transport = req->curl_code != 0 && !req->response_too_large;

	cobalt_classify_poll(req, now, &o);
	current_check = "classify_poll";
	CHECK(o.verdict == COBALT_POLL_PENDING || o.verdict == COBALT_POLL_SUCCEEDED ||
		  o.verdict == COBALT_POLL_FAILED || o.verdict == COBALT_POLL_ERROR, NULL);
	check_retry_after(o.retry_after_ms, "classify_poll: retry_after_ms");
	current_check = "classify_poll";
	if (o.verdict != COBALT_POLL_ERROR)
	{
		CHECK(o.retry_after_ms == -1, NULL);
		CHECK(!transport && !req->response_too_large &&
			  req->status >= 200 && req->status < 300, NULL);
	}
	else
		CHECK(o.error != NULL, NULL);
	if (o.verdict == COBALT_POLL_SUCCEEDED || o.verdict == COBALT_POLL_FAILED)
	{
		CHECK(o.event_type != NULL && o.event_type[0] != '\0', NULL);
		CHECK(o.result_json != NULL, NULL);
		CHECK(o.nevents >= 1, NULL);
		CHECK(cobalt_event_type_is_failure(o.event_type) ==
			  (o.verdict == COBALT_POLL_FAILED), o.event_type);
	}
	else
		CHECK(o.event_type == NULL && o.result_json == NULL &&
			  o.events == NULL && o.nevents == 0, NULL);

	check_text(o.event_type, "classify_poll: event_type");
	check_text(o.error, "classify_poll: error");
	check_json(o.result_json, "classify_poll: result_json");
	check_events(o.events, o.nevents, "classify_poll: events");
	cobalt_poll_outcome_free(&o);
}

static void
fuzz_retry_after(const char *value, time_t now, const char *what)
{
	check_retry_after(cobalt_parse_retry_after(value, now), what);
}

static void
fuzz_url_escape(const char *s, size_t len)
{
	char	   *out = cobalt_url_escape(s, len);
	size_t		n;
	size_t		j = 0;

	current_check = "url_escape";
	CHECK(out != NULL, NULL);
	n = strlen(out);
	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) out[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~')
		{
			CHECK(j < len && (unsigned char) s[j] == c, out);
			j++;
		}
		else if (c == '%')
		{
			static const char hex[] = "0123456789ABCDEF";
			const char *hi,
					   *lo;

			CHECK(i + 2 < n, out);
			hi = strchr(hex, out[i + 1]);
			lo = strchr(hex, out[i + 2]);
			CHECK(out[i + 1] != '\0' && hi != NULL, out);	/* strchr finds '\0' */
			CHECK(out[i + 2] != '\0' && lo != NULL, out);
			CHECK(j < len &&
				  (unsigned char) s[j] == (unsigned) (((hi - hex) << 4) | (lo - hex)), out);
			i += 2;
			j++;
		}
		else
			violation("url_escape output has a character that is neither unreserved nor %XX", out);
	}
	/* decoding the output gives the input back, whole */
	CHECK(j == len, out);
	free(out);
}

/* Backoff for an attempt number and a jitter taken from the input. */
static void
fuzz_backoff(int attempt, double jitter01)
{
	long		d = 1000;
	long		ms = cobalt_backoff_ms(attempt, jitter01);

	for (int i = 1; i < attempt && d < 60000; i++)
		d *= 2;
	if (d > 60000)
		d = 60000;
	current_check = "backoff_ms";
	CHECK(ms >= d / 2 && ms < d, NULL);
}

/* A NUL-terminated copy of at most "max" leading bytes of s. */
static char *
prefix_copy(const char *s, size_t len, size_t max)
{
	size_t		n = len < max ? len : max;
	char	   *p = malloc(n + 1);

	if (p == NULL)
		abort();
	if (n > 0)
		memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	CobaltHttpRequest req;
	size_t		ra_len;
	size_t		body_len;
	const char *body;
	time_t		now;
	char	   *copy;

	if (size < 2)
		return 0;

	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.url = "https://cobalt.invalid/fuzz";
	req.status = status_table[data[0] & 0x1F];
	req.response_too_large = (data[0] & 0x20) != 0;
	if (data[0] & 0x40)
	{
		req.curl_code = 28;		/* CURLE_OPERATION_TIMEDOUT */
		snprintf(req.error, sizeof(req.error), "Operation timed out");
	}
	req.maybe_delivered = (data[0] & 0x80) != 0;
	now = now_table[data[1] >> 6];

	ra_len = data[1] & 0x3F;
	if (ra_len > size - 2)
		ra_len = size - 2;
	memcpy(req.retry_after, data + 2, ra_len);	/* ra_len <= 63 */
	req.retry_after[ra_len] = '\0';

	body = (const char *) data + 2 + ra_len;
	body_len = size - 2 - ra_len;
	if (body_len > 0)
	{
		/* exactly as http.c leaves it: malloc'd, NUL-terminated */
		req.response = malloc(body_len + 1);
		if (req.response == NULL)
			abort();
		memcpy(req.response, body, body_len);
		req.response[body_len] = '\0';
		req.response_len = body_len;
	}

	/* the parsers on the body alone (exact-size buffer: no terminator) */
	fuzz_parse_send(body, body_len);
	fuzz_parse_poll(body, body_len);

	/* the classifiers on the whole exchange */
	fuzz_classify_send(&req, now);
	fuzz_classify_poll(&req, now);

	/* Retry-After: the header field, and the body's first bytes */
	fuzz_retry_after(req.retry_after, now, "parse_retry_after: header");
	copy = prefix_copy(body, body_len, 64);
	fuzz_retry_after(copy, now, "parse_retry_after: body prefix");
	current_check = "event_type_is_failure";
	(void) cobalt_event_type_is_failure(copy);
	free(copy);

	/* backoff: attempt and jitter from the body's first two bytes */
	fuzz_backoff(body_len > 0 ? (int) (int8_t) body[0] : 1,
				 body_len > 1 ? (unsigned char) body[1] / 256.0 : 0.0);

	/* URL escaping of the whole body, NUL bytes included */
	fuzz_url_escape(body, body_len);

	free(req.response);
	return 0;
}

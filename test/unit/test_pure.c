/*-------------------------------------------------------------------------
 *
 * test_pure.c
 *		Unit tests for cobalt's plain-C layer: the classification of HTTP
 *		exchanges (outcome.c) and the reading of Cobalt's answers
 *		(cobalt_json.c).  No PostgreSQL, no network, no test framework.
 *
 * Requests are built by hand as CobaltHttpRequest structs holding what
 * http.c would have filled in after a transfer, then handed to
 * cobalt_classify_send() / cobalt_classify_poll().
 *
 * The last line printed is "N passed, N failed"; the exit status is 1 when
 * any check failed.
 *
 * test/unit/test_pure.c
 *
 *-------------------------------------------------------------------------
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cobalt_pure.h"

/* ----------
 * A tiny check harness
 * ----------
 */

static int	n_passed;
static int	n_failed;
static const char *current_case = "";

static void
record(bool ok, const char *file, int line, const char *what,
	   const char *expected, const char *actual)
{
	if (ok)
	{
		n_passed++;
		return;
	}
	n_failed++;
	printf("FAIL %s:%d [%s] %s: expected %s, got %s\n",
		   file, line, current_case, what, expected, actual);
}

static void
check_true(bool cond, const char *file, int line, const char *expr)
{
	record(cond, file, line, expr, "true", "false");
}

static void
check_long(long actual, long expected, const char *file, int line,
		   const char *expr)
{
	char		e[32],
				a[32];

	snprintf(e, sizeof(e), "%ld", expected);
	snprintf(a, sizeof(a), "%ld", actual);
	record(actual == expected, file, line, expr, e, a);
}

static void
check_range(long actual, long lo, long hi, const char *file, int line,
			const char *expr)
{
	char		e[64],
				a[32];

	snprintf(e, sizeof(e), "a value in [%ld, %ld)", lo, hi);
	snprintf(a, sizeof(a), "%ld", actual);
	record(actual >= lo && actual < hi, file, line, expr, e, a);
}

/* Quote a string (or NULL) for a failure message; returns a malloc'd text. */
static char *
quoted(const char *s)
{
	size_t		len;
	char	   *out;

	if (s == NULL)
		return strdup("NULL");
	len = strlen(s);
	if (len > 300)
		len = 300;
	out = malloc(len + 8);
	snprintf(out, len + 8, "\"%.*s\"%s", (int) len, s,
			 strlen(s) > 300 ? "..." : "");
	return out;
}

static void
check_str(const char *actual, const char *expected, const char *file,
		  int line, const char *expr)
{
	bool		ok;
	char	   *e = quoted(expected);
	char	   *a = quoted(actual);

	if (expected == NULL || actual == NULL)
		ok = (expected == actual);
	else
		ok = strcmp(actual, expected) == 0;
	record(ok, file, line, expr, e, a);
	free(e);
	free(a);
}

static void
check_contains(const char *actual, const char *needle, const char *file,
			   int line, const char *expr)
{
	char	   *e = malloc(strlen(needle) + 32);
	char	   *a = quoted(actual);

	sprintf(e, "a text containing \"%s\"", needle);
	record(actual != NULL && strstr(actual, needle) != NULL,
		   file, line, expr, e, a);
	free(e);
	free(a);
}

#define CHECK(cond)					check_true((cond), __FILE__, __LINE__, #cond)
#define CHECK_LONG(actual, expected) \
	check_long((long) (actual), (long) (expected), __FILE__, __LINE__, #actual)
#define CHECK_RANGE(actual, lo, hi) \
	check_range((long) (actual), (lo), (hi), __FILE__, __LINE__, #actual)
#define CHECK_STR(actual, expected) \
	check_str((actual), (expected), __FILE__, __LINE__, #actual)
#define CHECK_CONTAINS(actual, needle) \
	check_contains((actual), (needle), __FILE__, __LINE__, #actual)
#define CHECK_NONEMPTY(actual) \
	check_true((actual) != NULL && (actual)[0] != '\0', __FILE__, __LINE__, \
			   #actual " is a non-empty string")

#define CASE(name)					(current_case = (name))

/* A case name with printf-style details, for checks run in a loop. */
static char case_buf[256];

static void case_fmt(const char *fmt,...) __attribute__((format(printf, 1, 2)));

static void
case_fmt(const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	vsnprintf(case_buf, sizeof(case_buf), fmt, args);
	va_end(args);
	current_case = case_buf;
}

/* ----------
 * Building requests
 * ----------
 */

/*
 * A request that got an HTTP answer.  "body" may be NULL (no body); its
 * length is taken with strlen().  The body is copied into a malloc'd,
 * NUL-terminated buffer exactly as http.c's write callback leaves it, so
 * that ASan notices any read past response_len.
 */
static void
make_answer(CobaltHttpRequest *req, long status, const char *body)
{
	memset(req, 0, sizeof(*req));
	req->status = status;
	if (body != NULL)
	{
		req->response_len = strlen(body);
		req->response = malloc(req->response_len + 1);
		memcpy(req->response, body, req->response_len + 1);
	}
}

/* The same with an explicit length (for bodies holding NUL bytes). */
static void
make_answer_len(CobaltHttpRequest *req, long status, const char *body,
				size_t len)
{
	memset(req, 0, sizeof(*req));
	req->status = status;
	req->response_len = len;
	req->response = malloc(len + 1);
	memcpy(req->response, body, len);
	req->response[len] = '\0';
}

/* A transfer that failed before any HTTP answer arrived. */
static void
make_transport_error(CobaltHttpRequest *req, int curl_code,
					 bool maybe_delivered, const char *error)
{
	memset(req, 0, sizeof(*req));
	req->curl_code = curl_code;
	req->maybe_delivered = maybe_delivered;
	snprintf(req->error, sizeof(req->error), "%s", error);
}

static void
release(CobaltHttpRequest *req)
{
	free(req->response);
	req->response = NULL;
}

/* Fixed clock: Sun, 06 Nov 1994 08:49:07 GMT (RFC 9110's example minus 30 s). */
static const time_t NOW = 784111747;

static void
classify_send_body(long status, const char *body, CobaltSendOutcome *out)
{
	CobaltHttpRequest req;

	make_answer(&req, status, body);
	cobalt_classify_send(&req, NOW, out);
	release(&req);
}

static void
classify_poll_body(long status, const char *body, CobaltPollOutcome *out)
{
	CobaltHttpRequest req;

	make_answer(&req, status, body);
	cobalt_classify_poll(&req, NOW, out);
	release(&req);
}

/* JSON nested "depth" levels deep: {"a":[[...]]} */
static char *
nested_json(int depth)
{
	char	   *s = malloc(depth * 2 + 16);
	char	   *p = s;

	p += sprintf(p, "{\"a\":");
	for (int i = 1; i < depth; i++)
		*p++ = '[';
	for (int i = 1; i < depth; i++)
		*p++ = ']';
	strcpy(p, "}");
	return s;
}

/* ----------
 * cobalt_classify_send
 * ----------
 */

static void
expect_send_unknown_body(long status, const char *body, const char *name)
{
	CobaltSendOutcome o;

	CASE(name);
	classify_send_body(status, body, &o);
	CHECK_LONG(o.verdict, COBALT_SEND_UNKNOWN);
	CHECK_STR(o.remote_job_id, NULL);
	CHECK_NONEMPTY(o.error);
	CHECK_LONG(o.retry_after_ms, -1);
	cobalt_send_outcome_free(&o);
}

static void
test_send_accepted(void)
{
	CobaltSendOutcome o;

	CASE("send: 200 with a string job_id");
	classify_send_body(200, "{\"success\":true,\"job_id\":\"job_abc123\"}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_ACCEPTED);
	CHECK_STR(o.remote_job_id, "job_abc123");
	CHECK_STR(o.result_json, "{\"success\":true,\"job_id\":\"job_abc123\"}");
	CHECK_STR(o.error, NULL);
	CHECK_LONG(o.retry_after_ms, -1);
	cobalt_send_outcome_free(&o);

	CASE("send: 201 and 202 with a job_id");
	classify_send_body(201, "{\"job_id\":\"j201\"}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_ACCEPTED);
	CHECK_STR(o.remote_job_id, "j201");
	cobalt_send_outcome_free(&o);
	classify_send_body(202, "{\"job_id\":\"j202\"}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_ACCEPTED);
	CHECK_STR(o.remote_job_id, "j202");
	cobalt_send_outcome_free(&o);

	CASE("send: big and small doubles within range are kept as sent");
	classify_send_body(200, "{\"job_id\":\"jd\",\"a\":1.5e308,\"b\":-2.5E-300,\"c\":0.0,\"d\":0e-999}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_ACCEPTED);
	CHECK_STR(o.remote_job_id, "jd");
	CHECK_STR(o.result_json, "{\"job_id\":\"jd\",\"a\":1.5e308,\"b\":-2.5E-300,\"c\":0.0,\"d\":0e-999}");
	cobalt_send_outcome_free(&o);

	CASE("send: the same value under different keys is no duplicate");
	classify_send_body(200, "{\"job_id\":\"j\",\"a\":{\"job_id\":\"j\"},\"b\":[{\"job_id\":1},{\"job_id\":2}]}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_ACCEPTED);
	CHECK_STR(o.remote_job_id, "j");
	cobalt_send_outcome_free(&o);

	CASE("send: 200 with a numeric job_id");
	classify_send_body(200, "{\"job_id\":12345}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_ACCEPTED);
	CHECK_STR(o.remote_job_id, "12345");
	CHECK_STR(o.error, NULL);
	cobalt_send_outcome_free(&o);

	CASE("send: 200 with a job_id under data");
	classify_send_body(200, "{\"success\":true,\"data\":{\"job_id\":\"nested-1\"}}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_ACCEPTED);
	CHECK_STR(o.remote_job_id, "nested-1");
	CHECK_NONEMPTY(o.result_json);
	cobalt_send_outcome_free(&o);

	CASE("send: a numeric job_id under data");
	classify_send_body(200, "{\"data\":{\"job_id\":777}}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_ACCEPTED);
	CHECK_STR(o.remote_job_id, "777");
	cobalt_send_outcome_free(&o);

	CASE("send: top-level job_id wins over data.job_id");
	classify_send_body(200, "{\"data\":{\"job_id\":\"inner\"},\"job_id\":\"outer\"}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_ACCEPTED);
	CHECK_STR(o.remote_job_id, "outer");
	cobalt_send_outcome_free(&o);

	CASE("send: top-level job_id null falls back to data.job_id");
	classify_send_body(200, "{\"job_id\":null,\"data\":{\"job_id\":\"inner\"}}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_ACCEPTED);
	CHECK_STR(o.remote_job_id, "inner");
	cobalt_send_outcome_free(&o);

	CASE("send: white space around the body is fine");
	classify_send_body(200, " \r\n\t{\"job_id\":\"ws\"}\n\r\t ", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_ACCEPTED);
	CHECK_STR(o.remote_job_id, "ws");
	cobalt_send_outcome_free(&o);

	CASE("send: escapes in job_id are decoded");
	classify_send_body(200, "{\"job_id\":\"a\\/b\\u00e9\"}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_ACCEPTED);
	CHECK_STR(o.remote_job_id, "a/b\xc3\xa9");
	cobalt_send_outcome_free(&o);
}

static void
test_send_completed(void)
{
	CobaltSendOutcome o;

	CASE("send: 200 without job_id is COMPLETED");
	classify_send_body(200, "{\"success\":true,\"data\":{\"id\":\"pt_1\",\"name\":\"Ann\"}}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_COMPLETED);
	CHECK_STR(o.remote_job_id, NULL);
	CHECK_STR(o.result_json, "{\"success\":true,\"data\":{\"id\":\"pt_1\",\"name\":\"Ann\"}}");
	CHECK_STR(o.error, NULL);
	CHECK_LONG(o.retry_after_ms, -1);
	cobalt_send_outcome_free(&o);

	CASE("send: 200 with an empty object is COMPLETED");
	classify_send_body(200, "{}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_COMPLETED);
	CHECK_STR(o.result_json, "{}");
	cobalt_send_outcome_free(&o);

	CASE("send: 200 with job_id null and no data is COMPLETED");
	classify_send_body(200, "{\"job_id\":null}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_COMPLETED);
	CHECK_STR(o.remote_job_id, NULL);
	cobalt_send_outcome_free(&o);

	CASE("send: result_json is re-serialised compactly, slashes unescaped");
	classify_send_body(200, "{ \"a\" : [ 1 , 2 ] , \"u\" : \"x\\/y\" }", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_COMPLETED);
	CHECK_STR(o.result_json, "{\"a\":[1,2],\"u\":\"x/y\"}");
	cobalt_send_outcome_free(&o);
}

static void
test_send_rejected(void)
{
	static const long rejections[] = {400, 401, 403, 404, 409, 422};
	CobaltSendOutcome o;

	CASE("send: 200 with success false and a message");
	classify_send_body(200, "{\"success\":false,\"message\":\"Patient not found\"}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_REJECTED);
	CHECK_STR(o.error, "Patient not found");
	CHECK_STR(o.remote_job_id, NULL);
	CHECK_STR(o.result_json, "{\"success\":false,\"message\":\"Patient not found\"}");
	CHECK_LONG(o.retry_after_ms, -1);
	cobalt_send_outcome_free(&o);

	CASE("send: 200 with success false and no message");
	classify_send_body(200, "{\"success\":false}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_REJECTED);
	CHECK_STR(o.error, "Cobalt answered \"success\": false");
	cobalt_send_outcome_free(&o);

	CASE("send: success false wins over a job_id");
	classify_send_body(200, "{\"success\":false,\"job_id\":\"j1\",\"message\":\"no\"}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_REJECTED);
	CHECK_STR(o.remote_job_id, NULL);
	CHECK_STR(o.error, "no");
	cobalt_send_outcome_free(&o);

	CASE("send: success as a string is not a boolean");
	classify_send_body(200, "{\"success\":\"false\",\"job_id\":\"j1\"}", &o);
	CHECK_LONG(o.verdict, COBALT_SEND_ACCEPTED);
	CHECK_STR(o.remote_job_id, "j1");
	cobalt_send_outcome_free(&o);

	for (size_t i = 0; i < sizeof(rejections) / sizeof(rejections[0]); i++)
	{
		char		expected[64];
		CobaltHttpRequest req;

		case_fmt("send: definitive %ld with a message", rejections[i]);
		classify_send_body(rejections[i],
						   "{\"success\":false,\"message\":\"bad request: dob\"}", &o);
		CHECK_LONG(o.verdict, COBALT_SEND_REJECTED);
		CHECK_STR(o.error, "bad request: dob");
		CHECK_STR(o.remote_job_id, NULL);
		CHECK_STR(o.result_json, "{\"success\":false,\"message\":\"bad request: dob\"}");
		CHECK_LONG(o.retry_after_ms, -1);
		cobalt_send_outcome_free(&o);

		snprintf(expected, sizeof(expected), "HTTP status %ld", rejections[i]);

		case_fmt("send: definitive %ld without a body", rejections[i]);
		make_answer(&req, rejections[i], NULL);
		cobalt_classify_send(&req, NOW, &o);
		CHECK_LONG(o.verdict, COBALT_SEND_REJECTED);
		CHECK_STR(o.error, expected);
		CHECK_STR(o.result_json, NULL);
		cobalt_send_outcome_free(&o);

		case_fmt("send: definitive %ld with a body that is not JSON", rejections[i]);
		classify_send_body(rejections[i], "<html>Forbidden</html>", &o);
		CHECK_LONG(o.verdict, COBALT_SEND_REJECTED);
		CHECK_STR(o.error, expected);
		CHECK_STR(o.result_json, NULL);
		cobalt_send_outcome_free(&o);

		case_fmt("send: definitive %ld with JSON but no message", rejections[i]);
		classify_send_body(rejections[i], "{\"error\":\"x\"}", &o);
		CHECK_LONG(o.verdict, COBALT_SEND_REJECTED);
		CHECK_STR(o.error, expected);
		CHECK_STR(o.result_json, "{\"error\":\"x\"}");
		cobalt_send_outcome_free(&o);

		case_fmt("send: definitive %ld with an empty message", rejections[i]);
		classify_send_body(rejections[i], "{\"message\":\"\"}", &o);
		CHECK_LONG(o.verdict, COBALT_SEND_REJECTED);
		CHECK_STR(o.error, expected);
		cobalt_send_outcome_free(&o);
	}
}

static void
test_send_unknown_status(void)
{
	static const long statuses[] = {500, 502, 503, 504, 405, 408, 410, 418};
	CobaltSendOutcome o;

	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
	{
		char		expected[64];
		CobaltHttpRequest req;

		snprintf(expected, sizeof(expected), "HTTP status %ld", statuses[i]);

		case_fmt("send: %ld without a body is UNKNOWN", statuses[i]);
		make_answer(&req, statuses[i], NULL);
		cobalt_classify_send(&req, NOW, &o);
		CHECK_LONG(o.verdict, COBALT_SEND_UNKNOWN);
		CHECK_STR(o.error, expected);
		CHECK_STR(o.remote_job_id, NULL);
		CHECK_STR(o.result_json, NULL);
		CHECK_LONG(o.retry_after_ms, -1);
		cobalt_send_outcome_free(&o);

		case_fmt("send: %ld with a job_id is still UNKNOWN", statuses[i]);
		classify_send_body(statuses[i], "{\"job_id\":\"j9\",\"message\":\"oops\"}", &o);
		CHECK_LONG(o.verdict, COBALT_SEND_UNKNOWN);
		CHECK_STR(o.remote_job_id, NULL);
		CHECK_STR(o.error, "oops");
		cobalt_send_outcome_free(&o);
	}
}

/*
 * A redirect is never followed: for a send it may still have been acted
 * on (UNKNOWN), for a poll it is a failed poll; the text says where it
 * pointed.
 */
static void
test_redirects(void)
{
	static const long statuses[] = {301, 302, 303, 307, 308};
	CobaltSendOutcome o;
	CobaltPollOutcome p;
	CobaltHttpRequest req;

	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
	{
		char		expected[128];

		case_fmt("send: %ld redirect is UNKNOWN, not followed", statuses[i]);
		make_answer(&req, statuses[i], "{\"job_id\":\"j9\",\"message\":\"moved\"}");
		strcpy(req.redirect_url, "file:///etc/passwd");
		cobalt_classify_send(&req, NOW, &o);
		snprintf(expected, sizeof(expected),
				 "HTTP status %ld, a redirect to file:///etc/passwd (never followed)", statuses[i]);
		CHECK_LONG(o.verdict, COBALT_SEND_UNKNOWN);
		CHECK_STR(o.remote_job_id, NULL);
		CHECK_STR(o.error, expected);
		cobalt_send_outcome_free(&o);
		release(&req);

		case_fmt("send: %ld redirect without a Location", statuses[i]);
		make_answer(&req, statuses[i], NULL);
		cobalt_classify_send(&req, NOW, &o);
		snprintf(expected, sizeof(expected), "HTTP status %ld, a redirect (never followed)",
				 statuses[i]);
		CHECK_LONG(o.verdict, COBALT_SEND_UNKNOWN);
		CHECK_STR(o.error, expected);
		cobalt_send_outcome_free(&o);
		release(&req);

		case_fmt("poll: %ld redirect is a failed poll", statuses[i]);
		make_answer(&req, statuses[i], "{\"success\":true,\"webhook_events\":[]}");
		strcpy(req.redirect_url, "http://127.0.0.1:1/steal");
		cobalt_classify_poll(&req, NOW, &p);
		snprintf(expected, sizeof(expected),
				 "poll answered with HTTP status %ld, a redirect to http://127.0.0.1:1/steal (never followed)",
				 statuses[i]);
		CHECK_LONG(p.verdict, COBALT_POLL_ERROR);
		CHECK_STR(p.error, expected);
		cobalt_poll_outcome_free(&p);
		release(&req);
	}
}

static void
test_send_unreadable_2xx(void)
{
	CobaltSendOutcome o;
	CobaltHttpRequest req;
	char	   *deep;

	expect_send_unknown_body(200, "{\"job_id\":", "send: 2xx truncated body");
	/* which job_id did Cobalt mean?  Repeated keys, anywhere, are unreadable */
	expect_send_unknown_body(200, "{\"job_id\":\"a\",\"job_id\":\"b\"}", "send: duplicate job_id");
	expect_send_unknown_body(200, "{\"job_id\":\"a\",\"success\":true,\"success\":false}",
							 "send: duplicate success");
	expect_send_unknown_body(200, "{\"job_id\":\"a\",\"data\":{\"x\":1,\"x\":2}}",
							 "send: duplicate key nested in data");
	expect_send_unknown_body(200, "{\"job_id\":\"a\",\"l\":[{\"k\":1},{\"k\":2,\"k\":3}]}",
							 "send: duplicate key in an array's object");
	expect_send_unknown_body(200, "{\"job_id\":\"a\",\"\\u006aob_id\":\"b\"}",
							 "send: duplicate key spelt with an escape");
	/* numbers beyond a double's range, or absurdly long */
	expect_send_unknown_body(200, "{\"job_id\":\"a\",\"n\":1e400}", "send: 1e400");
	expect_send_unknown_body(200, "{\"job_id\":\"a\",\"n\":-1E+400}", "send: -1e400");
	expect_send_unknown_body(200, "{\"job_id\":\"a\",\"n\":1e-400}", "send: 1e-400 (underflow)");
	expect_send_unknown_body(200, "{\"job_id\":1e400}", "send: job_id 1e400");
	expect_send_unknown_body(200, "not json", "send: 2xx text body");
	expect_send_unknown_body(200, "[]", "send: 2xx body []");
	expect_send_unknown_body(200, "[{\"job_id\":\"x\"}]", "send: 2xx body array of objects");
	expect_send_unknown_body(200, "\"job\"", "send: 2xx body a string");
	expect_send_unknown_body(200, "42", "send: 2xx body a number");
	expect_send_unknown_body(200, "null", "send: 2xx body null");
	expect_send_unknown_body(200, "{\"job_id\":\"x\"} trailing", "send: 2xx trailing garbage");
	expect_send_unknown_body(200, "{\"job_id\":\"x\"}{}", "send: 2xx two values");
	expect_send_unknown_body(200, "{\"job_id\":\"x\"}\f", "send: 2xx trailing form feed");
	expect_send_unknown_body(200, "{\"job_id\":\"x\",}", "send: 2xx trailing comma (strict)");
	expect_send_unknown_body(200, "{'job_id':'x'}", "send: 2xx single quotes (strict)");
	expect_send_unknown_body(200, "{\"job_id\":\"x\" /* c */}", "send: 2xx comment (strict)");
	expect_send_unknown_body(200, "{\"n\":01}", "send: 2xx leading zero (strict)");
	expect_send_unknown_body(200, "{\"t\":TRUE}", "send: 2xx TRUE (strict)");
	expect_send_unknown_body(200, "{\"job_id\":\"caf\xc3\"}", "send: 2xx truncated UTF-8");
	expect_send_unknown_body(200, "{\"job_id\":\"\xff\xfe\"}", "send: 2xx invalid UTF-8 bytes");
	expect_send_unknown_body(200, "{\"job_id\":\"a\\u0000b\"}", "send: 2xx \\u0000 in job_id");
	expect_send_unknown_body(200, "{\"job_id\":\"ok\",\"note\":\"a\\u0000b\"}",
							 "send: 2xx \\u0000 elsewhere in the body");

	/*
	 * json-c keeps object keys as C strings, so a key holding \u0000 is
	 * cut at the NUL; whatever the verdict, result_json must not carry it.
	 */
	CASE("send: 2xx \\u0000 in a key");
	classify_send_body(200, "{\"a\\u0000b\":1}", &o);
	CHECK(o.result_json == NULL || strstr(o.result_json, "\\u0000") == NULL);
	CHECK(o.verdict != COBALT_SEND_ACCEPTED);
	cobalt_send_outcome_free(&o);
	expect_send_unknown_body(204, NULL, "send: 2xx without a body");
	expect_send_unknown_body(200, "", "send: 2xx empty body");
	expect_send_unknown_body(200, "   ", "send: 2xx blank body");

	CASE("send: 2xx with a NUL byte inside the body");
	make_answer_len(&req, 200, "{\"job_id\":\"a\0b\"}", 17);
	cobalt_classify_send(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_SEND_UNKNOWN);
	CHECK_STR(o.remote_job_id, NULL);
	CHECK_STR(o.result_json, NULL);
	cobalt_send_outcome_free(&o);
	release(&req);

	CASE("send: 2xx with a NUL byte after the body");
	make_answer_len(&req, 200, "{\"job_id\":\"ab\"}\0", 16);
	cobalt_classify_send(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_SEND_UNKNOWN);
	cobalt_send_outcome_free(&o);
	release(&req);

	CASE("send: nesting of exactly 64 levels is accepted");
	deep = nested_json(COBALT_JSON_MAX_DEPTH);
	classify_send_body(200, deep, &o);
	CHECK_LONG(o.verdict, COBALT_SEND_COMPLETED);
	CHECK_STR(o.result_json, deep);
	cobalt_send_outcome_free(&o);
	free(deep);

	deep = nested_json(COBALT_JSON_MAX_DEPTH + 1);
	expect_send_unknown_body(200, deep, "send: nesting deeper than 64");
	free(deep);
	deep = nested_json(5000);
	expect_send_unknown_body(200, deep, "send: nesting 5000 deep");
	free(deep);

	CASE("send: 2xx unreadable error text");
	classify_send_body(200, "oops", &o);
	CHECK_STR(o.error, "HTTP status 200 with an unreadable body");
	cobalt_send_outcome_free(&o);
}

static void
test_send_bad_job_id(void)
{
	expect_send_unknown_body(200, "{\"job_id\":{\"id\":\"x\"}}", "send: job_id an object");
	expect_send_unknown_body(200, "{\"job_id\":[\"x\"]}", "send: job_id an array");
	expect_send_unknown_body(200, "{\"job_id\":true}", "send: job_id true");
	expect_send_unknown_body(200, "{\"job_id\":false}", "send: job_id false");
	expect_send_unknown_body(200, "{\"job_id\":\"\"}", "send: job_id empty string");
	expect_send_unknown_body(200, "{\"data\":{\"job_id\":\"\"}}", "send: data.job_id empty string");
	expect_send_unknown_body(200, "{\"data\":{\"job_id\":[]}}", "send: data.job_id an array");
	expect_send_unknown_body(200, "{\"job_id\":{},\"data\":{\"job_id\":\"ok\"}}",
							 "send: bad top-level job_id is not rescued by data.job_id");

	{
		CobaltSendOutcome o;

		CASE("send: bad job_id error text");
		classify_send_body(200, "{\"job_id\":true}", &o);
		CHECK_STR(o.error, "Cobalt's answer has a job_id that is neither a string nor a number");
		CHECK_STR(o.result_json, "{\"job_id\":true}");
		cobalt_send_outcome_free(&o);
	}
}

static void
test_send_429_and_transport(void)
{
	CobaltSendOutcome o;
	CobaltHttpRequest req;

	CASE("send: 429 with Retry-After 5");
	make_answer(&req, 429, "{\"message\":\"slow down\"}");
	strcpy(req.retry_after, "5");
	cobalt_classify_send(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_SEND_RETRY);
	CHECK_LONG(o.retry_after_ms, 5000);
	CHECK_STR(o.remote_job_id, NULL);
	CHECK_STR(o.error, "HTTP status 429: Cobalt asked us to slow down");
	cobalt_send_outcome_free(&o);
	release(&req);

	CASE("send: 429 without Retry-After");
	make_answer(&req, 429, NULL);
	cobalt_classify_send(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_SEND_RETRY);
	CHECK_LONG(o.retry_after_ms, -1);
	CHECK_NONEMPTY(o.error);
	cobalt_send_outcome_free(&o);
	release(&req);

	CASE("send: 429 with an unreadable Retry-After");
	make_answer(&req, 429, NULL);
	strcpy(req.retry_after, "soon");
	cobalt_classify_send(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_SEND_RETRY);
	CHECK_LONG(o.retry_after_ms, -1);
	cobalt_send_outcome_free(&o);
	release(&req);

	CASE("send: 429 with a job_id in the body is still RETRY");
	make_answer(&req, 429, "{\"job_id\":\"j\"}");
	strcpy(req.retry_after, "120");
	cobalt_classify_send(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_SEND_RETRY);
	CHECK_LONG(o.retry_after_ms, 120000);
	CHECK_STR(o.remote_job_id, NULL);
	cobalt_send_outcome_free(&o);
	release(&req);

	CASE("send: connection refused (not delivered) is RETRY");
	make_transport_error(&req, 7, false, "Failed to connect to api: Connection refused");
	cobalt_classify_send(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_SEND_RETRY);
	CHECK_LONG(o.retry_after_ms, -1);
	CHECK_STR(o.error, "could not connect: Failed to connect to api: Connection refused");
	CHECK_STR(o.remote_job_id, NULL);
	CHECK_STR(o.result_json, NULL);
	cobalt_send_outcome_free(&o);

	CASE("send: timeout after sending (maybe delivered) is UNKNOWN");
	make_transport_error(&req, 28, true, "Operation timed out");
	cobalt_classify_send(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_SEND_UNKNOWN);
	CHECK_LONG(o.retry_after_ms, -1);
	CHECK_CONTAINS(o.error, "Operation timed out");
	CHECK_CONTAINS(o.error, "may have reached Cobalt");
	CHECK_STR(o.remote_job_id, NULL);
	cobalt_send_outcome_free(&o);

	CASE("send: a transport error wins over a stale status and body");
	make_transport_error(&req, 56, true, "Recv failure");
	req.status = 200;
	req.response_len = strlen("{\"job_id\":\"x\"}");
	req.response = strdup("{\"job_id\":\"x\"}");
	cobalt_classify_send(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_SEND_UNKNOWN);
	CHECK_STR(o.remote_job_id, NULL);
	cobalt_send_outcome_free(&o);
	release(&req);

	CASE("send: a transport error with a 429 status is still a transport error");
	make_transport_error(&req, 7, false, "refused");
	req.status = 429;
	strcpy(req.retry_after, "5");
	cobalt_classify_send(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_SEND_RETRY);
	CHECK_LONG(o.retry_after_ms, -1);
	cobalt_send_outcome_free(&o);

	CASE("send: response too large with status 200 is UNKNOWN");
	make_answer(&req, 200, "{\"job_id\":\"looks-fine\"}");
	req.curl_code = 23;			/* CURLE_WRITE_ERROR from the write callback */
	req.response_too_large = true;
	req.maybe_delivered = true;
	strcpy(req.error, "Failure writing output to destination");
	cobalt_classify_send(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_SEND_UNKNOWN);
	CHECK_STR(o.remote_job_id, NULL);
	CHECK_STR(o.result_json, NULL);
	CHECK_NONEMPTY(o.error);
	CHECK_LONG(o.retry_after_ms, -1);
	cobalt_send_outcome_free(&o);
	release(&req);

	CASE("send: response too large with status 503 is UNKNOWN");
	make_answer(&req, 503, "{\"message\":\"x\"}");
	req.curl_code = 23;
	req.response_too_large = true;
	req.maybe_delivered = true;
	cobalt_classify_send(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_SEND_UNKNOWN);
	CHECK_STR(o.error, "HTTP status 503 with a body over the size limit");
	CHECK_STR(o.result_json, NULL);
	cobalt_send_outcome_free(&o);
	release(&req);
}

/* ----------
 * cobalt_classify_poll
 * ----------
 */

static void
expect_poll_error_body(long status, const char *body, const char *name)
{
	CobaltPollOutcome o;

	CASE(name);
	classify_poll_body(status, body, &o);
	CHECK_LONG(o.verdict, COBALT_POLL_ERROR);
	CHECK_STR(o.event_type, NULL);
	CHECK_STR(o.result_json, NULL);
	CHECK_NONEMPTY(o.error);
	CHECK_LONG(o.retry_after_ms, -1);
	cobalt_poll_outcome_free(&o);
}

static void
test_poll_outcomes(void)
{
	CobaltPollOutcome o;

	CASE("poll: no events yet");
	classify_poll_body(200, "{\"success\":true,\"webhook_events\":[]}", &o);
	CHECK_LONG(o.verdict, COBALT_POLL_PENDING);
	CHECK_STR(o.event_type, NULL);
	CHECK_STR(o.result_json, NULL);
	CHECK_STR(o.error, NULL);
	CHECK_LONG(o.retry_after_ms, -1);
	cobalt_poll_outcome_free(&o);

	CASE("poll: appointment.created");
	classify_poll_body(200,
					   "{\"success\":true,\"webhook_events\":[{\"event_id\":\"evt_1\","
					   "\"event_type\":\"appointment.created\",\"created_at\":\"2024-05-01T10:00:00Z\","
					   "\"data\":{\"appointment_id\":\"apt_42\",\"status\":\"booked\"}}]}", &o);
	CHECK_LONG(o.verdict, COBALT_POLL_SUCCEEDED);
	CHECK_STR(o.event_type, "appointment.created");
	CHECK_STR(o.result_json, "{\"appointment_id\":\"apt_42\",\"status\":\"booked\"}");
	CHECK_STR(o.error, NULL);
	CHECK_LONG(o.retry_after_ms, -1);
	cobalt_poll_outcome_free(&o);

	CASE("poll: note.uploaded");
	classify_poll_body(200,
					   "{\"webhook_events\":[{\"event_type\":\"note.uploaded\","
					   "\"data\":{\"note_id\":7}}]}", &o);
	CHECK_LONG(o.verdict, COBALT_POLL_SUCCEEDED);
	CHECK_STR(o.event_type, "note.uploaded");
	CHECK_STR(o.result_json, "{\"note_id\":7}");
	CHECK_STR(o.error, NULL);
	cobalt_poll_outcome_free(&o);

	CASE("poll: appointment.failed with failure_reason and reasons");
	classify_poll_body(200,
					   "{\"webhook_events\":[{\"event_type\":\"appointment.failed\","
					   "\"data\":{\"failure_reason\":\"Slot no longer available\","
					   "\"reasons\":[{\"code\":\"SLOT_TAKEN\",\"description\":\"Another patient booked it\"}]}}]}",
					   &o);
	CHECK_LONG(o.verdict, COBALT_POLL_FAILED);
	CHECK_STR(o.event_type, "appointment.failed");
	CHECK_CONTAINS(o.error, "Slot no longer available");
	CHECK_CONTAINS(o.error, "SLOT_TAKEN");
	CHECK_CONTAINS(o.error, "Another patient booked it");
	CHECK_STR(o.error, "Slot no longer available; SLOT_TAKEN: Another patient booked it");
	CHECK_STR(o.result_json,
			  "{\"failure_reason\":\"Slot no longer available\","
			  "\"reasons\":[{\"code\":\"SLOT_TAKEN\",\"description\":\"Another patient booked it\"}]}");
	cobalt_poll_outcome_free(&o);

	CASE("poll: failure with several reasons, partial ones and junk entries");
	classify_poll_body(200,
					   "{\"webhook_events\":[{\"event_type\":\"appointment.failed\","
					   "\"data\":{\"reasons\":[{\"code\":\"A\",\"description\":\"first\"},"
					   "{\"description\":\"only description\"},{\"code\":\"ONLY_CODE\"},"
					   "\"junk\",{},{\"code\":\"\",\"description\":\"\"},{\"code\":\"B\",\"description\":\"second\"}]}}]}",
					   &o);
	CHECK_LONG(o.verdict, COBALT_POLL_FAILED);
	CHECK_STR(o.error, "A: first; only description; ONLY_CODE; B: second");
	cobalt_poll_outcome_free(&o);

	CASE("poll: failure without data");
	classify_poll_body(200, "{\"webhook_events\":[{\"event_type\":\"appointment.failed\"}]}", &o);
	CHECK_LONG(o.verdict, COBALT_POLL_FAILED);
	CHECK_STR(o.event_type, "appointment.failed");
	CHECK_STR(o.result_json, "null");
	CHECK_STR(o.error, "event appointment.failed");
	cobalt_poll_outcome_free(&o);

	CASE("poll: document.upload_failed");
	classify_poll_body(200,
					   "{\"webhook_events\":[{\"event_type\":\"document.upload_failed\","
					   "\"data\":{\"failure_reason\":\"virus found\"}}]}", &o);
	CHECK_LONG(o.verdict, COBALT_POLL_FAILED);
	CHECK_STR(o.event_type, "document.upload_failed");
	CHECK_STR(o.error, "virus found");
	CHECK_STR(o.result_json, "{\"failure_reason\":\"virus found\"}");
	cobalt_poll_outcome_free(&o);

	CASE("poll: missing data gives result_json null");
	classify_poll_body(200, "{\"webhook_events\":[{\"event_type\":\"appointment.created\"}]}", &o);
	CHECK_LONG(o.verdict, COBALT_POLL_SUCCEEDED);
	CHECK_STR(o.result_json, "null");
	cobalt_poll_outcome_free(&o);

	CASE("poll: data null gives result_json null");
	classify_poll_body(200,
					   "{\"webhook_events\":[{\"event_type\":\"appointment.created\",\"data\":null}]}", &o);
	CHECK_LONG(o.verdict, COBALT_POLL_SUCCEEDED);
	CHECK_STR(o.result_json, "null");
	cobalt_poll_outcome_free(&o);

	CASE("poll: data that is not an object is kept as is");
	classify_poll_body(200,
					   "{\"webhook_events\":[{\"event_type\":\"appointment.created\",\"data\":[1,\"two\"]}]}", &o);
	CHECK_LONG(o.verdict, COBALT_POLL_SUCCEEDED);
	CHECK_STR(o.result_json, "[1,\"two\"]");
	cobalt_poll_outcome_free(&o);

	CASE("poll: a failed event whose data is a string");
	classify_poll_body(200,
					   "{\"webhook_events\":[{\"event_type\":\"appointment.failed\",\"data\":\"nope\"}]}", &o);
	CHECK_LONG(o.verdict, COBALT_POLL_FAILED);
	CHECK_STR(o.result_json, "\"nope\"");
	CHECK_STR(o.error, "event appointment.failed");
	cobalt_poll_outcome_free(&o);
}

static void
test_poll_ordering(void)
{
	CobaltPollOutcome o;

	/* Cobalt lists newest first: the last element is the earliest. */
	CASE("poll: newest first, the earliest (failed) decides");
	classify_poll_body(200,
					   "{\"webhook_events\":["
					   "{\"event_type\":\"appointment.created\",\"created_at\":\"2024-05-01T10:05:00Z\",\"data\":{\"n\":3}},"
					   "{\"event_type\":\"note.uploaded\",\"created_at\":\"2024-05-01T10:03:00Z\",\"data\":{\"n\":2}},"
					   "{\"event_type\":\"appointment.failed\",\"created_at\":\"2024-05-01T10:00:00Z\",\"data\":{\"failure_reason\":\"first\"}}"
					   "]}", &o);
	CHECK_LONG(o.verdict, COBALT_POLL_FAILED);
	CHECK_STR(o.event_type, "appointment.failed");
	CHECK_STR(o.error, "first");
	cobalt_poll_outcome_free(&o);

	CASE("poll: newest first, the earliest (created) decides");
	classify_poll_body(200,
					   "{\"webhook_events\":["
					   "{\"event_type\":\"appointment.failed\",\"created_at\":\"2024-05-01T10:05:00Z\"},"
					   "{\"event_type\":\"appointment.created\",\"created_at\":\"2024-05-01T10:00:00Z\",\"data\":{\"n\":1}}"
					   "]}", &o);
	CHECK_LONG(o.verdict, COBALT_POLL_SUCCEEDED);
	CHECK_STR(o.event_type, "appointment.created");
	CHECK_STR(o.result_json, "{\"n\":1}");
	CHECK_STR(o.error, NULL);
	cobalt_poll_outcome_free(&o);

	CASE("poll: created_at decides even when the list is oldest first");
	classify_poll_body(200,
					   "{\"webhook_events\":["
					   "{\"event_type\":\"appointment.created\",\"created_at\":\"2024-05-01T09:00:00Z\",\"data\":{\"n\":1}},"
					   "{\"event_type\":\"note.uploaded\",\"created_at\":\"2024-05-01T09:30:00Z\"},"
					   "{\"event_type\":\"appointment.failed\",\"created_at\":\"2024-05-01T10:00:00Z\"}"
					   "]}", &o);
	CHECK_LONG(o.verdict, COBALT_POLL_SUCCEEDED);
	CHECK_STR(o.event_type, "appointment.created");
	CHECK_STR(o.result_json, "{\"n\":1}");
	cobalt_poll_outcome_free(&o);

	CASE("poll: the earliest in the middle of the list");
	classify_poll_body(200,
					   "{\"webhook_events\":["
					   "{\"event_type\":\"appointment.created\",\"created_at\":\"2024-05-01T10:00:00Z\"},"
					   "{\"event_type\":\"document.upload_failed\",\"created_at\":\"2024-05-01T08:00:00Z\"},"
					   "{\"event_type\":\"note.uploaded\",\"created_at\":\"2024-05-01T09:00:00Z\"}"
					   "]}", &o);
	CHECK_LONG(o.verdict, COBALT_POLL_FAILED);
	CHECK_STR(o.event_type, "document.upload_failed");
	cobalt_poll_outcome_free(&o);

	CASE("poll: equal created_at, the last listed (oldest) decides");
	classify_poll_body(200,
					   "{\"webhook_events\":["
					   "{\"event_type\":\"appointment.failed\",\"created_at\":\"2024-05-01T10:00:00Z\"},"
					   "{\"event_type\":\"appointment.created\",\"created_at\":\"2024-05-01T10:00:00Z\"}"
					   "]}", &o);
	CHECK_LONG(o.verdict, COBALT_POLL_SUCCEEDED);
	CHECK_STR(o.event_type, "appointment.created");
	cobalt_poll_outcome_free(&o);

	CASE("poll: without created_at, the last listed (oldest) decides");
	classify_poll_body(200,
					   "{\"webhook_events\":["
					   "{\"event_type\":\"appointment.created\"},"
					   "{\"event_type\":\"appointment.failed\"}"
					   "]}", &o);
	CHECK_LONG(o.verdict, COBALT_POLL_FAILED);
	CHECK_STR(o.event_type, "appointment.failed");
	cobalt_poll_outcome_free(&o);
}

static void
test_poll_errors(void)
{
	CobaltPollOutcome o;
	CobaltHttpRequest req;
	char	   *deep;
	char	   *body;

	expect_poll_error_body(200, "{\"webhook_events\":{}}", "poll: webhook_events an object");
	expect_poll_error_body(200, "{\"webhook_events\":[],\"webhook_events\":[{\"event_type\":\"a.failed\"}]}",
						   "poll: webhook_events twice");
	expect_poll_error_body(200, "{\"webhook_events\":[{\"event_type\":\"a.created\",\"event_type\":\"a.failed\"}]}",
						   "poll: event_type twice");
	expect_poll_error_body(200, "{\"webhook_events\":[{\"event_type\":\"a.created\",\"data\":{\"n\":1e999}}]}",
						   "poll: a number beyond a double in data");
	expect_poll_error_body(200, "{\"webhook_events\":\"none\"}", "poll: webhook_events a string");
	expect_poll_error_body(200, "{\"webhook_events\":null}", "poll: webhook_events null");
	expect_poll_error_body(200, "{\"success\":true}", "poll: webhook_events missing");
	expect_poll_error_body(200, "{\"data\":{\"webhook_events\":[]}}", "poll: webhook_events only nested");
	expect_poll_error_body(200, "[]", "poll: body an array");
	expect_poll_error_body(200, "{\"webhook_events\":[{\"data\":{}}]}", "poll: event without event_type");
	expect_poll_error_body(200, "{\"webhook_events\":[{\"event_type\":5}]}", "poll: numeric event_type");
	expect_poll_error_body(200, "{\"webhook_events\":[{\"event_type\":null}]}", "poll: null event_type");
	expect_poll_error_body(200, "{\"webhook_events\":[{\"event_type\":\"\"}]}", "poll: empty event_type");
	expect_poll_error_body(200, "{\"webhook_events\":[{\"event_type\":\"a\\u0000.created\"}]}",
						   "poll: \\u0000 in event_type");
	expect_poll_error_body(200, "{\"webhook_events\":[\"appointment.created\"]}", "poll: event a string");
	expect_poll_error_body(200,
						   "{\"webhook_events\":[{\"event_type\":\"appointment.created\"},{\"nope\":1}]}",
						   "poll: one bad event among good ones");
	expect_poll_error_body(200,
						   "{\"webhook_events\":[{\"nope\":1},{\"event_type\":\"appointment.created\"}]}",
						   "poll: a bad newer event among good ones");
	expect_poll_error_body(200, "{\"webhook_events\":[", "poll: truncated body");
	expect_poll_error_body(200, "<html></html>", "poll: not JSON");
	expect_poll_error_body(200, "{\"webhook_events\":[]} x", "poll: trailing garbage");
	expect_poll_error_body(200, "{\"webhook_events\":[{\"event_type\":\"x\xff\"}]}", "poll: invalid UTF-8");
	expect_poll_error_body(200, "", "poll: empty body");
	expect_poll_error_body(200, NULL, "poll: no body");
	expect_poll_error_body(500, "{\"webhook_events\":[]}", "poll: 500");
	expect_poll_error_body(404, "{\"webhook_events\":[]}", "poll: 404");
	expect_poll_error_body(301, NULL, "poll: 301");

	/* result_json must never carry \u0000, which jsonb refuses. */
	expect_poll_error_body(200,
						   "{\"webhook_events\":[{\"event_type\":\"appointment.created\","
						   "\"data\":{\"note\":\"a\\u0000b\"}}]}",
						   "poll: \\u0000 in data");
	CASE("poll: \\u0000 in a key of data");
	classify_poll_body(200,
					   "{\"webhook_events\":[{\"event_type\":\"appointment.created\","
					   "\"data\":{\"x\\u0000y\":1}}]}", &o);
	CHECK(o.result_json == NULL || strstr(o.result_json, "\\u0000") == NULL);
	cobalt_poll_outcome_free(&o);
	expect_poll_error_body(200,
						   "{\"webhook_events\":[{\"event_type\":\"appointment.failed\","
						   "\"data\":{\"failure_reason\":\"a\\u0000b\"}}]}",
						   "poll: \\u0000 in failure_reason");

	CASE("poll: error text for an unreadable answer");
	classify_poll_body(200, "{}", &o);
	CHECK_STR(o.error, "poll answer is not a readable list of webhook events");
	cobalt_poll_outcome_free(&o);

	CASE("poll: error text for an HTTP error");
	classify_poll_body(503, NULL, &o);
	CHECK_STR(o.error, "poll answered with HTTP status 503");
	cobalt_poll_outcome_free(&o);

	deep = nested_json(COBALT_JSON_MAX_DEPTH + 1);
	body = malloc(strlen(deep) + 128);
	sprintf(body, "{\"webhook_events\":[{\"event_type\":\"appointment.created\",\"data\":%s}]}", deep);
	expect_poll_error_body(200, body, "poll: nesting deeper than 64");
	free(body);
	free(deep);

	CASE("poll: NUL byte in the body");
	make_answer_len(&req, 200, "{\"webhook_events\":[]}\0", 22);
	cobalt_classify_poll(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_POLL_ERROR);
	cobalt_poll_outcome_free(&o);
	release(&req);

	CASE("poll: 429 with Retry-After");
	make_answer(&req, 429, NULL);
	strcpy(req.retry_after, "7");
	cobalt_classify_poll(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_POLL_ERROR);
	CHECK_LONG(o.retry_after_ms, 7000);
	CHECK_STR(o.error, "poll answered with HTTP status 429");
	CHECK_STR(o.event_type, NULL);
	CHECK_STR(o.result_json, NULL);
	cobalt_poll_outcome_free(&o);
	release(&req);

	CASE("poll: 429 without Retry-After");
	make_answer(&req, 429, "{\"webhook_events\":[{\"event_type\":\"appointment.created\"}]}");
	cobalt_classify_poll(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_POLL_ERROR);
	CHECK_LONG(o.retry_after_ms, -1);
	CHECK_STR(o.event_type, NULL);
	cobalt_poll_outcome_free(&o);
	release(&req);

	CASE("poll: transport error");
	make_transport_error(&req, 28, true, "Operation timed out");
	cobalt_classify_poll(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_POLL_ERROR);
	CHECK_STR(o.error, "poll failed: Operation timed out");
	CHECK_LONG(o.retry_after_ms, -1);
	cobalt_poll_outcome_free(&o);

	CASE("poll: transport error, not delivered");
	make_transport_error(&req, 6, false, "Could not resolve host");
	cobalt_classify_poll(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_POLL_ERROR);
	CHECK_CONTAINS(o.error, "Could not resolve host");
	cobalt_poll_outcome_free(&o);

	CASE("poll: response too large");
	make_answer(&req, 200, "{\"webhook_events\":[{\"event_type\":\"appointment.created\"}]}");
	req.curl_code = 23;
	req.response_too_large = true;
	req.maybe_delivered = true;
	cobalt_classify_poll(&req, NOW, &o);
	CHECK_LONG(o.verdict, COBALT_POLL_ERROR);
	CHECK_STR(o.event_type, NULL);
	CHECK_NONEMPTY(o.error);
	cobalt_poll_outcome_free(&o);
	release(&req);
}

/* ----------
 * Retry-After, backoff, event types, URL escaping
 * ----------
 */

static void
test_retry_after(void)
{
	CASE("retry-after: delta-seconds");
	CHECK_LONG(cobalt_parse_retry_after("0", NOW), 1000);
	CHECK_LONG(cobalt_parse_retry_after("1", NOW), 1000);
	CHECK_LONG(cobalt_parse_retry_after("2", NOW), 2000);
	CHECK_LONG(cobalt_parse_retry_after("120", NOW), 120000);
	CHECK_LONG(cobalt_parse_retry_after("600", NOW), 600000);
	CHECK_LONG(cobalt_parse_retry_after("601", NOW), 600000);
	CHECK_LONG(cobalt_parse_retry_after("99999999999", NOW), 600000);
	CHECK_LONG(cobalt_parse_retry_after("999999999999999999999999999999999999999999", NOW), 600000);
	CHECK_LONG(cobalt_parse_retry_after("007", NOW), 7000);
	CHECK_LONG(cobalt_parse_retry_after(" \t5", NOW), 5000);
	CHECK_LONG(cobalt_parse_retry_after("5 ", NOW), 5000);
	CHECK_LONG(cobalt_parse_retry_after("5\r", NOW), 5000);

	CASE("retry-after: unreadable");
	CHECK_LONG(cobalt_parse_retry_after("", NOW), -1);
	CHECK_LONG(cobalt_parse_retry_after("   ", NOW), -1);
	CHECK_LONG(cobalt_parse_retry_after(NULL, NOW), -1);
	CHECK_LONG(cobalt_parse_retry_after("abc", NOW), -1);
	CHECK_LONG(cobalt_parse_retry_after("-5", NOW), -1);
	CHECK_LONG(cobalt_parse_retry_after("+5", NOW), -1);
	CHECK_LONG(cobalt_parse_retry_after("1.5", NOW), -1);
	CHECK_LONG(cobalt_parse_retry_after("5s", NOW), -1);
	CHECK_LONG(cobalt_parse_retry_after("0x10", NOW), -1);

	CASE("retry-after: malformed HTTP dates");
	CHECK_LONG(cobalt_parse_retry_after("Sun, 06 Foo 1994 08:49:37 GMT", NOW), -1);
	CHECK_LONG(cobalt_parse_retry_after("Sun, 06 Nov 1994 25:49:37 GMT", NOW), -1);
	CHECK_LONG(cobalt_parse_retry_after("Sun, 06 Nov 1994 08:61:37 GMT", NOW), -1);
	CHECK_LONG(cobalt_parse_retry_after("Sun, 32 Nov 1994 08:49:37 GMT", NOW), -1);
	CHECK_LONG(cobalt_parse_retry_after("Sun, 06 Nov 1994 08:49:37 PST", NOW), -1);
	CHECK_LONG(cobalt_parse_retry_after("Sun, 06 Nov 1994 08:49", NOW), -1);
	CHECK_LONG(cobalt_parse_retry_after("Sun, 06 Nov 1969 08:49:37 GMT", NOW), -1);
	CHECK_LONG(cobalt_parse_retry_after("1994-11-06T08:49:37Z", NOW), -1);

	/*
	 * IMF-fixdate, the form RFC 9110 requires senders to use.  parse_http_date()
	 * scans "%3s %d", so the comma after the weekday stops sscanf() and every
	 * real HTTP date is read as unreadable (-1).
	 */
	CASE("retry-after: IMF-fixdate 30 s ahead");
	CHECK_LONG(cobalt_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", NOW), 30000);
	CASE("retry-after: IMF-fixdate equal to now");
	CHECK_LONG(cobalt_parse_retry_after("Sun, 06 Nov 1994 08:49:07 GMT", NOW), 1000);
	CASE("retry-after: IMF-fixdate in the past");
	CHECK_LONG(cobalt_parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", NOW), 1000);
	CASE("retry-after: IMF-fixdate far in the future");
	CHECK_LONG(cobalt_parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", NOW), 600000);
	CASE("retry-after: IMF-fixdate 5 min ahead");
	CHECK_LONG(cobalt_parse_retry_after("Sun, 06 Nov 1994 08:54:07 GMT", NOW), 300000);

	CASE("send: 429 with an IMF-fixdate Retry-After");
	{
		CobaltHttpRequest req;
		CobaltSendOutcome o;

		make_answer(&req, 429, NULL);
		strcpy(req.retry_after, "Sun, 06 Nov 1994 08:50:07 GMT");
		cobalt_classify_send(&req, NOW, &o);
		CHECK_LONG(o.verdict, COBALT_SEND_RETRY);
		CHECK_LONG(o.retry_after_ms, 60000);
		cobalt_send_outcome_free(&o);
		release(&req);
	}
}

static void
test_backoff(void)
{
	CASE("backoff: attempt 1");
	CHECK_LONG(cobalt_backoff_ms(1, 0.0), 500);
	CHECK_RANGE(cobalt_backoff_ms(1, 0.999), 990, 1000);
	CHECK_RANGE(cobalt_backoff_ms(1, 0.5), 500, 1000);

	CASE("backoff: attempt 2");
	CHECK_LONG(cobalt_backoff_ms(2, 0.0), 1000);
	CHECK_RANGE(cobalt_backoff_ms(2, 0.999), 1000, 2000);

	CASE("backoff: attempt 3");
	CHECK_LONG(cobalt_backoff_ms(3, 0.0), 2000);
	CHECK_RANGE(cobalt_backoff_ms(3, 0.5), 2000, 4000);
	CHECK_RANGE(cobalt_backoff_ms(3, 0.999), 2000, 4000);

	CASE("backoff: capped at one minute");
	CHECK_LONG(cobalt_backoff_ms(7, 0.0), 30000);
	CHECK_RANGE(cobalt_backoff_ms(7, 0.999), 30000, 60000);
	CHECK_LONG(cobalt_backoff_ms(30, 0.0), 30000);
	CHECK_RANGE(cobalt_backoff_ms(30, 0.999999), 30000, 60000);
	CHECK_LONG(cobalt_backoff_ms(1000, 0.0), 30000);
	CHECK_LONG(cobalt_backoff_ms(INT_MAX, 0.0), 30000);
	CHECK_RANGE(cobalt_backoff_ms(INT_MAX, 0.999), 30000, 60000);

	CASE("backoff: attempt 0 or negative is attempt 1");
	CHECK_LONG(cobalt_backoff_ms(0, 0.0), 500);
	CHECK_LONG(cobalt_backoff_ms(-3, 0.0), 500);
	CHECK_LONG(cobalt_backoff_ms(INT_MIN, 0.0), 500);
	CHECK_RANGE(cobalt_backoff_ms(0, 0.999), 990, 1000);

	CASE("backoff: jitter out of range is clamped");
	CHECK_LONG(cobalt_backoff_ms(1, -0.5), 500);
	CHECK_RANGE(cobalt_backoff_ms(1, 1.0), 500, 1000);
	CHECK_RANGE(cobalt_backoff_ms(1, 7.0), 500, 1000);

	CASE("backoff: never decreases with the attempt number");
	for (int a = 1; a < 40; a++)
	{
		case_fmt("backoff: attempt %d to %d never decreases", a, a + 1);
		CHECK(cobalt_backoff_ms(a + 1, 0.0) >= cobalt_backoff_ms(a, 0.0));
	}
}

static void
test_event_types(void)
{
	CASE("event types: failures");
	CHECK(cobalt_event_type_is_failure("appointment.failed"));
	CHECK(cobalt_event_type_is_failure("document.upload_failed"));
	CHECK(cobalt_event_type_is_failure("patient.insurance.failed"));

	CASE("event types: not failures");
	CHECK(!cobalt_event_type_is_failure("appointment.created"));
	CHECK(!cobalt_event_type_is_failure("note.uploaded"));
	CHECK(!cobalt_event_type_is_failure("failed.created"));
	CHECK(!cobalt_event_type_is_failure("appointment.failed.retried"));
	CHECK(!cobalt_event_type_is_failure("faile"));
	CHECK(!cobalt_event_type_is_failure(""));
	CHECK(!cobalt_event_type_is_failure(NULL));
}

static void
check_escape(const char *in, size_t len, const char *expected, int line)
{
	char	   *out = cobalt_url_escape(in, len);

	check_str(out, expected, __FILE__, line, "cobalt_url_escape(...)");
	free(out);
}

static void
test_url_escape(void)
{
	CASE("url escape: unreserved characters stay");
	check_escape("abc-._~", 7, "abc-._~", __LINE__);
	check_escape("AZaz09", 6, "AZaz09", __LINE__);
	check_escape("", 0, "", __LINE__);

	CASE("url escape: reserved characters");
	check_escape("a b/c?d=e&f", 11, "a%20b%2Fc%3Fd%3De%26f", __LINE__);
	check_escape("%+#@:!*'()", 10, "%25%2B%23%40%3A%21%2A%27%28%29", __LINE__);

	CASE("url escape: UTF-8 and control bytes as uppercase %XX");
	check_escape("\xc3\xa9", 2, "%C3%A9", __LINE__);
	check_escape("caf\xc3\xa9", 5, "caf%C3%A9", __LINE__);
	check_escape("\xe2\x82\xac\xff\x80", 5, "%E2%82%AC%FF%80", __LINE__);
	check_escape("\n\r\t\x7f", 4, "%0A%0D%09%7F", __LINE__);

	CASE("url escape: the length is honoured");
	check_escape("a\0b", 3, "a%00b", __LINE__);
	check_escape("abcdef", 3, "abc", __LINE__);
}

/* ----------
 * Hostile answers json-c alone would let through (bugs found and fixed
 * while writing these tests)
 * ----------
 */

static void
test_hostile_answers(void)
{
	CobaltSendOutcome so;
	CobaltPollOutcome po;

	/*
	 * serialize_for_jsonb() refuses any text containing the six characters
	 * \u0000, but an escaped backslash followed by "u0000" (the JSON string
	 * "C:\\u0000", i.e. C:\u0000 in plain text) is not a NUL and jsonb
	 * accepts it.  Such an answer is treated as unreadable.
	 */
	CASE("send: a literal backslash-u0000 text in the body");
	classify_send_body(200, "{\"job_id\":\"j1\",\"path\":\"C:\\\\u0000\"}", &so);
	CHECK_LONG(so.verdict, COBALT_SEND_ACCEPTED);
	CHECK_STR(so.remote_job_id, "j1");
	CHECK_STR(so.result_json, "{\"job_id\":\"j1\",\"path\":\"C:\\\\u0000\"}");
	cobalt_send_outcome_free(&so);

	CASE("poll: a literal backslash-u0000 text in data");
	classify_poll_body(200,
					   "{\"webhook_events\":[{\"event_type\":\"note.uploaded\","
					   "\"data\":{\"text\":\"see \\\\u0000\"}}]}", &po);
	CHECK_LONG(po.verdict, COBALT_POLL_SUCCEEDED);
	CHECK_STR(po.result_json, "{\"text\":\"see \\\\u0000\"}");
	cobalt_poll_outcome_free(&po);

	/*
	 * json-c 0.16 accepts NaN, Infinity, -Infinity and "1." even in strict
	 * mode and re-serialises them verbatim, so result_json / remote_job_id
	 * carry text that is not JSON (jsonb refuses it), contrary to
	 * body_json's "safe for jsonb" promise.
	 */
	CASE("send: job_id NaN");
	classify_send_body(200, "{\"job_id\":NaN}", &so);
	CHECK_LONG(so.verdict, COBALT_SEND_UNKNOWN);
	CHECK_STR(so.remote_job_id, NULL);
	cobalt_send_outcome_free(&so);

	CASE("send: job_id Infinity");
	classify_send_body(200, "{\"job_id\":Infinity}", &so);
	CHECK_LONG(so.verdict, COBALT_SEND_UNKNOWN);
	CHECK_STR(so.remote_job_id, NULL);
	cobalt_send_outcome_free(&so);

	CASE("send: -Infinity in the body");
	classify_send_body(200, "{\"a\":-Infinity}", &so);
	CHECK_LONG(so.verdict, COBALT_SEND_UNKNOWN);
	CHECK_STR(so.result_json, NULL);
	cobalt_send_outcome_free(&so);

	CASE("send: 1. in the body");
	classify_send_body(200, "{\"a\":1.}", &so);
	CHECK_LONG(so.verdict, COBALT_SEND_UNKNOWN);
	CHECK_STR(so.result_json, NULL);
	cobalt_send_outcome_free(&so);

	CASE("poll: NaN in data");
	classify_poll_body(200,
					   "{\"webhook_events\":[{\"event_type\":\"appointment.created\","
					   "\"data\":{\"x\":NaN}}]}", &po);
	CHECK_LONG(po.verdict, COBALT_POLL_ERROR);
	CHECK_STR(po.result_json, NULL);
	cobalt_poll_outcome_free(&po);

	/*
	 * JSON_TOKENER_VALIDATE_UTF8 only checks the shape of multi-byte
	 * sequences: overlong forms, UTF-16 surrogates written in UTF-8, code
	 * points over U+10FFFF and lead bytes F5..F7 all pass, and come back in
	 * remote_job_id / result_json / event_type / error.  PostgreSQL's UTF-8
	 * verifier refuses every one of them, and text made with
	 * CStringGetTextDatum() is not verified on the way in.
	 */
	{
		static const char *const bad[] = {
			"{\"job_id\":\"\xc0\xaf\"}",	/* overlong '/' */
			"{\"job_id\":\"\xe0\x80\xaf\"}",	/* overlong, 3 bytes */
			"{\"job_id\":\"\xed\xa0\x80\"}",	/* surrogate U+D800 */
			"{\"job_id\":\"\xf4\x90\x80\x80\"}",	/* U+110000 */
			"{\"job_id\":\"\xf5\x80\x80\x80\"}",	/* lead byte F5 */
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		{
			case_fmt("send: job_id with invalid UTF-8 the tokener lets through (#%zu)", i + 1);
			classify_send_body(200, bad[i], &so);
			CHECK_LONG(so.verdict, COBALT_SEND_UNKNOWN);
			cobalt_send_outcome_free(&so);
		}
	}
	CASE("poll: event_type with an overlong UTF-8 sequence");
	classify_poll_body(200, "{\"webhook_events\":[{\"event_type\":\"x\xc0\xae.created\"}]}", &po);
	CHECK_LONG(po.verdict, COBALT_POLL_ERROR);
	cobalt_poll_outcome_free(&po);

	/*
	 * An integer job_id beyond the range of uint64 is clamped by json-c to
	 * 18446744073709551615 and that wrong id is accepted: the job would
	 * then poll someone else's (or no) job.  It should be kept as its JSON
	 * text, or refused (UNKNOWN).
	 */
	CASE("send: job_id 123456789012345678901234");
	classify_send_body(200, "{\"job_id\":123456789012345678901234}", &so);
	CHECK(so.verdict == COBALT_SEND_UNKNOWN ||
		  (so.remote_job_id != NULL &&
		   strcmp(so.remote_job_id, "123456789012345678901234") == 0));
	cobalt_send_outcome_free(&so);

	CASE("send: job_id -123456789012345678901234");
	classify_send_body(200, "{\"job_id\":-123456789012345678901234}", &so);
	CHECK(so.verdict == COBALT_SEND_UNKNOWN ||
		  (so.remote_job_id != NULL &&
		   strcmp(so.remote_job_id, "-123456789012345678901234") == 0));
	cobalt_send_outcome_free(&so);
}

int
main(void)
{
	test_send_accepted();
	test_send_completed();
	test_send_rejected();
	test_send_unknown_status();
	test_redirects();
	test_send_unreadable_2xx();
	test_send_bad_job_id();
	test_send_429_and_transport();
	test_poll_outcomes();
	test_poll_ordering();
	test_poll_errors();
	test_retry_after();
	test_backoff();
	test_event_types();
	test_url_escape();
	test_hostile_answers();

	printf("%d passed, %d failed\n", n_passed, n_failed);
	return n_failed > 0 ? 1 : 0;
}

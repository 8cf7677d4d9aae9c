/*-------------------------------------------------------------------------
 *
 * outcome.c
 *		What an HTTP exchange with Cobalt means for a job: the rules that
 *		keep the vendor's promise ("a timeout is not a failure", "never
 *		repeat an operation unless it is confirmed failed"), plus
 *		Retry-After, backoff and URL escaping.
 *
 * The one invariant: a job-creating request is classified RETRY only when
 * nothing can have reached Cobalt (the connection was never made) or when
 * Cobalt refused it unprocessed (429).  Anything that may have reached
 * Cobalt without a definitive answer is UNKNOWN and is never sent again
 * automatically.
 *
 * Plain C: no PostgreSQL headers.
 *
 * src/outcome.c
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cobalt_pure.h"

#define RETRY_AFTER_MIN_MS	1000L
#define RETRY_AFTER_MAX_MS	(10L * 60 * 1000)
#define BACKOFF_BASE_MS		1000L
#define BACKOFF_MAX_MS		(60L * 1000)

static char *
dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static char *format_text(const char *fmt,...) __attribute__((format(printf, 1, 2)));

/*
 * A malloc'd formatted string, never truncated (a cut could split a UTF-8
 * character, and the text is stored as-is).
 */
static char *
format_text(const char *fmt,...)
{
	va_list		args;
	int			len;
	char	   *out;

	va_start(args, fmt);
	len = vsnprintf(NULL, 0, fmt, args);
	va_end(args);
	if (len < 0 || (out = malloc((size_t) len + 1)) == NULL)
		return NULL;
	va_start(args, fmt);
	vsnprintf(out, (size_t) len + 1, fmt, args);
	va_end(args);
	return out;
}

/* "HTTP status 302, a redirect to ... (never followed)" */
static char *
redirect_text(const CobaltHttpRequest *req)
{
	if (req->redirect_url[0] == '\0')
		return format_text("HTTP status %ld, a redirect (never followed)", req->status);
	return format_text("HTTP status %ld, a redirect to %s (never followed)",
					   req->status, req->redirect_url);
}

/* Is this HTTP status a definitive rejection of a job-creating request? */
static bool
status_is_rejection(long status)
{
	switch (status)
	{
		case 400:
		case 401:
		case 403:
		case 404:
		case 409:
		case 422:
			return true;
		default:
			return false;
	}
}

/*
 * The text for a failed HTTP answer: for a redirect, where it pointed;
 * else the body's "message" when there is one, else the status.
 */
static char *
http_error_text(const CobaltHttpRequest *req, const CobaltSendAnswer *answer)
{
	if (req->status >= 300 && req->status < 400)
		return redirect_text(req);
	if (answer->message != NULL && answer->message[0] != '\0')
		return strdup(answer->message);
	return format_text("HTTP status %ld", req->status);
}

/*
 * Classify the answer (or the absence of one) to a job-creating request.
 * "now" is used to read a Retry-After given as an HTTP date.
 */
void
cobalt_classify_send(const CobaltHttpRequest *req, time_t now,
					 CobaltSendOutcome *outcome)
{
	CobaltSendAnswer answer;
	bool		readable;

	memset(outcome, 0, sizeof(*outcome));
	outcome->retry_after_ms = -1;

	if (req->curl_code != 0 && !req->response_too_large)
	{
		if (req->maybe_delivered)
		{
			outcome->verdict = COBALT_SEND_UNKNOWN;
			outcome->error = format_text("request may have reached Cobalt, but no answer arrived: %s",
										 req->error);
		}
		else
		{
			outcome->verdict = COBALT_SEND_RETRY;
			outcome->error = format_text("could not connect: %s", req->error);
		}
		return;
	}

	if (req->status == 429)
	{
		outcome->verdict = COBALT_SEND_RETRY;
		outcome->retry_after_ms = cobalt_parse_retry_after(req->retry_after, now);
		outcome->error = strdup("HTTP status 429: Cobalt asked us to slow down");
		return;
	}

	readable = !req->response_too_large &&
		cobalt_json_parse_send(req->response, req->response_len, &answer);
	if (!readable)
		memset(&answer, 0, sizeof(answer));

	if (req->status >= 200 && req->status < 300)
	{
		if (!readable)
		{
			outcome->verdict = COBALT_SEND_UNKNOWN;
			outcome->error = format_text("HTTP status %ld with an unreadable body",
										 req->status);
		}
		else if (answer.success == 0)
		{
			outcome->verdict = COBALT_SEND_REJECTED;
			outcome->error = answer.message ? strdup(answer.message) :
				strdup("Cobalt answered \"success\": false");
		}
		else if (answer.job_id_invalid)
		{
			outcome->verdict = COBALT_SEND_UNKNOWN;
			outcome->error = strdup("Cobalt's answer has a job_id that is neither a string nor a number");
		}
		else if (answer.job_id != NULL)
		{
			outcome->verdict = COBALT_SEND_ACCEPTED;
			outcome->remote_job_id = dup_or_null(answer.job_id);
		}
		else
			outcome->verdict = COBALT_SEND_COMPLETED;
	}
	else if (status_is_rejection(req->status))
	{
		outcome->verdict = COBALT_SEND_REJECTED;
		outcome->error = http_error_text(req, &answer);
	}
	else
	{
		/* 5xx, 3xx, other 4xx, or an oversized body: may have been acted on */
		outcome->verdict = COBALT_SEND_UNKNOWN;
		if (req->response_too_large)
			outcome->error = format_text("HTTP status %ld with a body over the size limit",
										 req->status);
		else
			outcome->error = http_error_text(req, &answer);
	}
	if (readable)
		outcome->result_json = dup_or_null(answer.body_json);
	cobalt_send_answer_free(&answer);
}

void
cobalt_send_outcome_free(CobaltSendOutcome *outcome)
{
	free(outcome->remote_job_id);
	free(outcome->result_json);
	free(outcome->error);
	memset(outcome, 0, sizeof(*outcome));
}

/*
 * Classify the answer to a poll.  Any problem with the poll itself is
 * COBALT_POLL_ERROR, which never changes the job's state.
 */
void
cobalt_classify_poll(const CobaltHttpRequest *req, time_t now,
					 CobaltPollOutcome *outcome)
{
	CobaltPollAnswer answer;

	memset(outcome, 0, sizeof(*outcome));
	outcome->retry_after_ms = -1;
	outcome->verdict = COBALT_POLL_ERROR;

	if (req->curl_code != 0 && !req->response_too_large)
	{
		outcome->error = format_text("poll failed: %s", req->error);
		return;
	}
	if (req->status == 429)
	{
		outcome->retry_after_ms = cobalt_parse_retry_after(req->retry_after, now);
		outcome->error = strdup("poll answered with HTTP status 429");
		return;
	}
	if (req->status >= 300 && req->status < 400)
	{
		char	   *redirect = redirect_text(req);

		outcome->error = format_text("poll answered with %s", redirect ? redirect : "a redirect");
		free(redirect);
		return;
	}
	if (req->status < 200 || req->status >= 300)
	{
		outcome->error = format_text("poll answered with HTTP status %ld",
									 req->status);
		return;
	}
	if (req->response_too_large ||
		!cobalt_json_parse_poll(req->response, req->response_len, &answer))
	{
		outcome->error = strdup("poll answer is not a readable list of webhook events");
		return;
	}
	if (!answer.has_event)
		outcome->verdict = COBALT_POLL_PENDING;
	else
	{
		outcome->event_type = dup_or_null(answer.event_type);
		outcome->result_json = dup_or_null(answer.data_json);
		if (cobalt_event_type_is_failure(answer.event_type))
		{
			outcome->verdict = COBALT_POLL_FAILED;
			outcome->error = answer.failure ? strdup(answer.failure) :
				format_text("event %s", answer.event_type);
		}
		else
			outcome->verdict = COBALT_POLL_SUCCEEDED;
		/* hand the events over */
		outcome->events = answer.events;
		outcome->nevents = answer.nevents;
		answer.events = NULL;
		answer.nevents = 0;
	}
	cobalt_poll_answer_free(&answer);
}

void
cobalt_poll_outcome_free(CobaltPollOutcome *outcome)
{
	free(outcome->event_type);
	free(outcome->result_json);
	free(outcome->error);
	cobalt_events_free(outcome->events, outcome->nevents);
	memset(outcome, 0, sizeof(*outcome));
}

/* An event type ending in "failed" (appointment.failed, document.upload_failed). */
bool
cobalt_event_type_is_failure(const char *event_type)
{
	size_t		len;

	if (event_type == NULL)
		return false;
	len = strlen(event_type);
	return len >= 6 && strcmp(event_type + len - 6, "failed") == 0;
}

/* Parse an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"); -1 if it is not one. */
static time_t
parse_http_date(const char *s)
{
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	char		wday[4],
				mon[4],
				zone[4];
	int			day,
				year,
				hh,
				mm,
				ss;
	struct tm	tm;

	if (sscanf(s, "%3[A-Za-z], %d %3s %d %d:%d:%d %3s", wday, &day, mon, &year,
			   &hh, &mm, &ss, zone) != 8 || strcmp(zone, "GMT") != 0)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_mon = -1;
	for (int i = 0; i < 12; i++)
		if (strcmp(mon, months[i]) == 0)
			tm.tm_mon = i;
	if (tm.tm_mon < 0 || day < 1 || day > 31 || year < 1970 || year > 9999 ||
		hh > 23 || mm > 59 || ss > 60 || hh < 0 || mm < 0 || ss < 0)
		return -1;
	tm.tm_mday = day;
	tm.tm_year = year - 1900;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	return timegm(&tm);
}

/*
 * A Retry-After header value (delta-seconds or an HTTP date) as a delay in
 * milliseconds, clamped to 1 s .. 10 min; -1 when absent or unreadable.
 */
long
cobalt_parse_retry_after(const char *value, time_t now)
{
	long long	seconds = -1;
	const char *p;

	if (value == NULL)
		return -1;
	while (*value == ' ' || *value == '\t')
		value++;
	if (*value == '\0')
		return -1;

	for (p = value; isdigit((unsigned char) *p); p++)
		;
	if (p != value && (*p == '\0' || *p == ' ' || *p == '\t' || *p == '\r'))
	{
		seconds = 0;
		for (p = value; isdigit((unsigned char) *p); p++)
		{
			seconds = seconds * 10 + (*p - '0');
			if (seconds > RETRY_AFTER_MAX_MS)
				break;
		}
	}
	else
	{
		time_t		at = parse_http_date(value);

		if (at < 0)
			return -1;
		seconds = (at > now) ? (long long) (at - now) : 0;
	}
	if (seconds * 1000 < RETRY_AFTER_MIN_MS)
		return RETRY_AFTER_MIN_MS;
	if (seconds * 1000 > RETRY_AFTER_MAX_MS)
		return RETRY_AFTER_MAX_MS;
	return (long) (seconds * 1000);
}

/*
 * Exponential backoff with jitter for the n-th attempt (1-based): a delay
 * drawn from [d/2, d) where d = 1 s * 2^(n-1), capped at one minute.
 * jitter01 is a random number in [0, 1).
 */
long
cobalt_backoff_ms(int attempt, double jitter01)
{
	long		d = BACKOFF_BASE_MS;

	if (attempt < 1)
		attempt = 1;
	for (int i = 1; i < attempt && d < BACKOFF_MAX_MS; i++)
		d *= 2;
	if (d > BACKOFF_MAX_MS)
		d = BACKOFF_MAX_MS;
	if (jitter01 < 0)
		jitter01 = 0;
	if (jitter01 >= 1)
		jitter01 = 0.999999;
	return d / 2 + (long) ((d / 2) * jitter01);
}

/* Percent-encode everything but RFC 3986's unreserved characters. */
char *
cobalt_url_escape(const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	char	   *out = malloc(len * 3 + 1);
	char	   *o = out;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
			*o++ = (char) c;
		else
		{
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}

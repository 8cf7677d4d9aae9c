/*-------------------------------------------------------------------------
 *
 * cobalt_pure.h
 *		Declarations of cobalt's plain-C layer: HTTP transport (libcurl),
 *		parsing of Cobalt's answers (json-c), and the classification of
 *		outcomes, Retry-After and backoff.
 *
 * Nothing declared here depends on PostgreSQL headers, and the files that
 * define it include none, so they can be unit-tested and fuzzed on their
 * own.  Memory handed out by these functions comes from malloc() and is
 * released by the matching *_free() / *_cleanup() function.
 *
 * src/cobalt_pure.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef COBALT_PURE_H
#define COBALT_PURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Largest response body we keep; a longer one counts as unreadable. */
#define COBALT_MAX_RESPONSE_SIZE	(8 * 1024 * 1024)

/* Deepest JSON nesting accepted in an answer from Cobalt. */
#define COBALT_JSON_MAX_DEPTH		64

/* ----------
 * http.c: concurrent requests with libcurl's multi interface
 * ----------
 */

/* One form field of a multipart request. */
typedef struct CobaltFormField
{
	char	   *name;
	char	   *value;
	size_t		value_len;
	char	   *filename;		/* non-NULL: a file part */
	char	   *content_type;	/* file part's type, or NULL */
} CobaltFormField;

/*
 * One HTTP request and, once done, its response.  The caller fills the
 * "request" fields and keeps them alive until the done callback has run;
 * the "response" fields are filled by http.c.
 */
typedef struct CobaltHttpRequest
{
	/* request */
	void	   *owner;			/* opaque to http.c */
	const char *method;			/* "GET", "POST", "PATCH", ... */
	const char *url;
	const char *body;			/* JSON body, or NULL */
	size_t		body_len;
	const CobaltFormField *form;	/* multipart when nform > 0 */
	int			nform;
	const char *client_id;
	const char *client_secret;
	const char *access_token;
	long		timeout_ms;

	/* response */
	int			curl_code;		/* CURLcode; 0 is success */
	char		error[256];		/* transport error text, or "" */
	long		status;			/* HTTP status, 0 when none arrived */
	char	   *response;		/* body (NUL-terminated), or NULL */
	size_t		response_len;
	bool		response_too_large;
	bool		maybe_delivered;	/* request may have reached the server */
	char		retry_after[64];	/* Retry-After header value, or "" */
	char		redirect_url[256];	/* a 3xx answer's Location (never
									 * followed), printable ASCII, or "" */

	/* private to http.c */
	size_t		body_sent;		/* bytes of body handed to libcurl */
	void	   *easy;
	void	   *headers;
	void	   *mime;
	struct CobaltHttpRequest *prev_active;
	struct CobaltHttpRequest *next_active;
} CobaltHttpRequest;

typedef struct CobaltHttp CobaltHttp;

typedef void (*CobaltHttpDoneCallback) (CobaltHttpRequest *req, void *arg);

extern CobaltHttp *cobalt_http_create(const char *user_agent, const char *ca_file,
									  char *errbuf, size_t errlen);
extern void cobalt_http_destroy(CobaltHttp *http);
extern void cobalt_http_set_max_connections(CobaltHttp *http, long max);
extern bool cobalt_http_set_ca_file(CobaltHttp *http, const char *ca_file);
extern bool cobalt_http_start(CobaltHttp *http, CobaltHttpRequest *req,
							  char *errbuf, size_t errlen);
extern int	cobalt_http_wait_fd(CobaltHttp *http);
extern long cobalt_http_timeout_ms(CobaltHttp *http);
extern int	cobalt_http_perform(CobaltHttp *http, CobaltHttpDoneCallback done,
								void *arg);
extern int	cobalt_http_in_flight(CobaltHttp *http);
extern void cobalt_http_request_cleanup(CobaltHttpRequest *req);
extern void cobalt_http_abort_all(CobaltHttp *http, CobaltHttpDoneCallback done,
								  void *arg);

/* ----------
 * cobalt_json.c: Cobalt's answers, read with json-c
 * ----------
 */

/* What a job-creating request's answer says. */
typedef struct CobaltSendAnswer
{
	int			success;		/* 1 true, 0 false, -1 absent or not a boolean */
	char	   *job_id;			/* opaque text, or NULL when absent */
	bool		job_id_invalid; /* present, but neither string nor number */
	char	   *message;		/* "message", or NULL */
	char	   *body_json;		/* the body re-serialised, safe for jsonb */
} CobaltSendAnswer;

/* One event as Cobalt lists it. */
typedef struct CobaltEvent
{
	char	   *event_id;		/* or NULL */
	char	   *event_type;
	char	   *data_json;		/* the event's "data", or "null" */
} CobaltEvent;

/* What a poll's answer says: the earliest event, if any, and all of them. */
typedef struct CobaltPollAnswer
{
	bool		has_event;
	char	   *event_id;
	char	   *event_type;
	char	   *data_json;		/* the event's "data", or "null" */
	char	   *failure;		/* failure_reason and reasons, or NULL */
	CobaltEvent *events;		/* every event, oldest first */
	int			nevents;
} CobaltPollAnswer;

extern bool cobalt_json_parse_send(const char *body, size_t len,
								   CobaltSendAnswer *answer);
extern void cobalt_send_answer_free(CobaltSendAnswer *answer);
extern bool cobalt_json_parse_poll(const char *body, size_t len,
								   CobaltPollAnswer *answer);
extern void cobalt_poll_answer_free(CobaltPollAnswer *answer);
extern void cobalt_events_free(CobaltEvent *events, int nevents);

/* ----------
 * outcome.c: what an HTTP exchange means for a job
 * ----------
 */

typedef enum CobaltSendVerdict
{
	COBALT_SEND_ACCEPTED,		/* 2xx with a job_id: poll it */
	COBALT_SEND_COMPLETED,		/* 2xx without a job_id: succeeded */
	COBALT_SEND_REJECTED,		/* definitive rejection: failed */
	COBALT_SEND_RETRY,			/* nothing reached Cobalt, or 429: queue again */
	COBALT_SEND_UNKNOWN			/* may have reached Cobalt: never resend */
} CobaltSendVerdict;

typedef struct CobaltSendOutcome
{
	CobaltSendVerdict verdict;
	char	   *remote_job_id;	/* ACCEPTED */
	char	   *result_json;	/* the body, when it is readable JSON */
	char	   *error;			/* human-readable reason, or NULL */
	long		retry_after_ms; /* RETRY after 429 with Retry-After, else -1 */
} CobaltSendOutcome;

typedef enum CobaltPollVerdict
{
	COBALT_POLL_PENDING,		/* no event yet */
	COBALT_POLL_SUCCEEDED,
	COBALT_POLL_FAILED,
	COBALT_POLL_ERROR			/* the poll itself failed: state unchanged */
} CobaltPollVerdict;

typedef struct CobaltPollOutcome
{
	CobaltPollVerdict verdict;
	char	   *event_type;
	char	   *result_json;
	char	   *error;
	long		retry_after_ms; /* ERROR after 429 with Retry-After, else -1 */
	CobaltEvent *events;		/* SUCCEEDED/FAILED: every event seen */
	int			nevents;
} CobaltPollOutcome;

extern void cobalt_classify_send(const CobaltHttpRequest *req, time_t now,
								 CobaltSendOutcome *outcome);
extern void cobalt_send_outcome_free(CobaltSendOutcome *outcome);
extern void cobalt_classify_poll(const CobaltHttpRequest *req, time_t now,
								 CobaltPollOutcome *outcome);
extern void cobalt_poll_outcome_free(CobaltPollOutcome *outcome);
extern long cobalt_parse_retry_after(const char *value, time_t now);
extern long cobalt_backoff_ms(int attempt, double jitter01);
extern bool cobalt_event_type_is_failure(const char *event_type);
extern char *cobalt_url_escape(const char *s, size_t len);

#endif							/* COBALT_PURE_H */

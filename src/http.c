/*-------------------------------------------------------------------------
 *
 * http.c
 *		Concurrent HTTP requests with libcurl's multi-socket interface.
 *
 * libcurl tells us which sockets it wants watched (socket callback) and
 * when it wants to be called back (timer callback).  We keep the sockets
 * in one epoll set, whose own descriptor the worker waits on together with
 * its latch: that is how SIGTERM, SIGHUP and postmaster death are noticed
 * within a second even with requests in flight.  Connections are cached
 * and reused by the multi handle; easy handles are recycled.
 *
 * Invariants kept here:
 *	- only http and https, TLS peer and host verification always on (no
 *	  option turns it off; cobalt.ca_file only chooses the CAs), no
 *	  redirects followed, no signals (CURLOPT_NOSIGNAL);
 *	- a response body is read up to COBALT_MAX_RESPONSE_SIZE, then the
 *	  transfer is aborted and flagged response_too_large;
 *	- a request is flagged maybe_delivered unless the failure proves that
 *	  no byte of it can have reached the server;
 *	- a job-creating (non-GET) request is never sent twice by libcurl:
 *	  libcurl resends a request that dies on a reused connection, so its
 *	  body cannot be rewound (a multipart one opens a fresh connection).
 *
 * Plain C: no PostgreSQL headers.  Memory comes from malloc().
 *
 * src/http.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cobalt_pure.h"

#define MAX_EPOLL_EVENTS 256
#define MAX_IDLE_HANDLES 256
#define SEND_REUSE_MAX_IDLE_S 5		/* see cobalt_http_start */

struct CobaltHttp
{
	CURLM	   *multi;
	int			epfd;
	int64_t		timer_deadline_ms;	/* monotonic ms, or -1 when none */
	int			in_flight;
	CobaltHttpRequest *active;	/* list of requests in flight */
	char	   *user_agent;
	char	   *ca_file;
	CURL	   *idle[MAX_IDLE_HANDLES]; /* recycled easy handles */
	int			nidle;
};

static int64_t
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libcurl's socket callback: keep the epoll set in step with its wishes. */
static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	CobaltHttp *http = userp;
	struct epoll_event ev;

	(void) easy;
	memset(&ev, 0, sizeof(ev));
	ev.data.fd = fd;

	if (what == CURL_POLL_REMOVE)
	{
		/* the descriptor may already be closed; nothing to do then */
		epoll_ctl(http->epfd, EPOLL_CTL_DEL, fd, NULL);
		curl_multi_assign(http->multi, fd, NULL);
		return 0;
	}
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		ev.events |= EPOLLIN;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		ev.events |= EPOLLOUT;

	if (socketp == NULL)
	{
		if (epoll_ctl(http->epfd, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST)
			epoll_ctl(http->epfd, EPOLL_CTL_MOD, fd, &ev);
		curl_multi_assign(http->multi, fd, http);
	}
	else if (epoll_ctl(http->epfd, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT)
		epoll_ctl(http->epfd, EPOLL_CTL_ADD, fd, &ev);
	return 0;
}

/* libcurl's timer callback: remember when it wants to be called. */
static int
timer_callback(CURLM *multi, long timeout_ms, void *userp)
{
	CobaltHttp *http = userp;

	(void) multi;
	http->timer_deadline_ms = (timeout_ms < 0) ? -1 : monotonic_ms() + timeout_ms;
	return 0;
}

/*
 * Create a transfer engine.  Returns NULL with a message in errbuf when
 * libcurl or epoll cannot be set up.
 */
CobaltHttp *
cobalt_http_create(const char *user_agent, const char *ca_file,
				   char *errbuf, size_t errlen)
{
	CobaltHttp *http = calloc(1, sizeof(CobaltHttp));

	if (http == NULL)
	{
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
	{
		snprintf(errbuf, errlen, "curl_global_init failed");
		free(http);
		return NULL;
	}
	http->epfd = epoll_create1(EPOLL_CLOEXEC);
	http->multi = curl_multi_init();
	if (http->epfd < 0 || http->multi == NULL)
	{
		snprintf(errbuf, errlen, "could not set up libcurl multi handle or epoll: %s",
				 strerror(errno));
		if (http->epfd >= 0)
			close(http->epfd);
		if (http->multi)
			curl_multi_cleanup(http->multi);
		free(http);
		return NULL;
	}
	http->timer_deadline_ms = -1;
	http->user_agent = strdup(user_agent);
	http->ca_file = (ca_file && ca_file[0]) ? strdup(ca_file) : NULL;
	curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION, socket_callback);
	curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, http);
	curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION, timer_callback);
	curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, http);
	return http;
}

/*
 * Verify servers against the CA certificates in "ca_file" from now on
 * (NULL or "": the system's), on every new connection; a poll may still
 * reuse a connection verified before (libcurl closes idle ones within
 * two minutes).  Returns false (nothing changed) when out of memory.
 */
bool
cobalt_http_set_ca_file(CobaltHttp *http, const char *ca_file)
{
	char	   *copy = NULL;

	if (ca_file && ca_file[0])
	{
		if ((copy = strdup(ca_file)) == NULL)
			return false;
	}
	if ((copy == NULL && http->ca_file == NULL) ||
		(copy && http->ca_file && strcmp(copy, http->ca_file) == 0))
	{
		free(copy);
		return true;
	}
	free(http->ca_file);
	http->ca_file = copy;
	return true;
}

/* Bound the connection cache (and so the connections kept open). */
void
cobalt_http_set_max_connections(CobaltHttp *http, long max)
{
	curl_multi_setopt(http->multi, CURLMOPT_MAXCONNECTS, max);
	curl_multi_setopt(http->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max);
}

static size_t
write_callback(char *data, size_t size, size_t nmemb, void *userp)
{
	CobaltHttpRequest *req = userp;
	size_t		n = size * nmemb;
	char	   *grown;

	if (req->response_len + n > COBALT_MAX_RESPONSE_SIZE)
	{
		req->response_too_large = true;
		return 0;				/* aborts the transfer */
	}
	grown = realloc(req->response, req->response_len + n + 1);
	if (grown == NULL)
		return 0;
	req->response = grown;
	memcpy(req->response + req->response_len, data, n);
	req->response_len += n;
	req->response[req->response_len] = '\0';
	return n;
}

static size_t
header_callback(char *data, size_t size, size_t nmemb, void *userp)
{
	CobaltHttpRequest *req = userp;
	size_t		n = size * nmemb;
	static const char name[] = "retry-after:";

	if (n > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0)
	{
		size_t		vlen = n - (sizeof(name) - 1);
		const char *v = data + sizeof(name) - 1;

		while (vlen > 0 && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' ||
							v[vlen - 1] == ' '))
			vlen--;
		if (vlen >= sizeof(req->retry_after))
			vlen = sizeof(req->retry_after) - 1;
		memcpy(req->retry_after, v, vlen);
		req->retry_after[vlen] = '\0';
	}
	return n;
}

/*
 * The read callback of a JSON body: hands out each byte once.  With
 * refuse_rewind as the seek callback, libcurl cannot send the body a
 * second time.
 */
static size_t
send_body_once(char *buffer, size_t size, size_t nitems, void *userp)
{
	CobaltHttpRequest *req = userp;
	size_t		left = req->body_len - req->body_sent;
	size_t		n = size * nitems < left ? size * nitems : left;

	if (n > 0)
		memcpy(buffer, req->body + req->body_sent, n);
	req->body_sent += n;
	return n;
}

static int
refuse_rewind(void *userp, curl_off_t offset, int origin)
{
	(void) userp;
	(void) offset;
	(void) origin;
	return CURL_SEEKFUNC_CANTSEEK;
}

/* Append "name: value" to a header list; false if the value could inject. */
static bool
add_header(struct curl_slist **list, const char *name, const char *value)
{
	char		line[1024];
	struct curl_slist *grown;

	if (value == NULL || strpbrk(value, "\r\n") != NULL ||
		(size_t) snprintf(line, sizeof(line), "%s: %s", name, value) >= sizeof(line))
		return false;
	grown = curl_slist_append(*list, line);
	if (grown == NULL)
		return false;
	*list = grown;
	return true;
}

/*
 * Start a request.  Returns false (with errbuf set, nothing started) when
 * the request cannot be built; the done callback is then never called.
 */
bool
cobalt_http_start(CobaltHttp *http, CobaltHttpRequest *req,
				  char *errbuf, size_t errlen)
{
	CURL	   *easy;
	struct curl_slist *headers = NULL;
	curl_mime  *mime = NULL;
	bool		ok;

	req->curl_code = 0;
	req->error[0] = '\0';
	req->status = 0;
	req->response = NULL;
	req->response_len = 0;
	req->response_too_large = false;
	req->maybe_delivered = false;
	req->retry_after[0] = '\0';
	req->redirect_url[0] = '\0';

	easy = http->nidle > 0 ? http->idle[--http->nidle] : curl_easy_init();
	if (easy == NULL)
	{
		snprintf(errbuf, errlen, "could not create a libcurl handle");
		return false;
	}

	ok = add_header(&headers, "client_id", req->client_id) &&
		add_header(&headers, "client_secret", req->client_secret) &&
		add_header(&headers, "access_token", req->access_token) &&
		add_header(&headers, "Accept", "application/json") &&
		add_header(&headers, "Expect", "");
	if (ok && req->nform == 0)
		ok = add_header(&headers, "Content-Type", "application/json");
	if (!ok)
	{
		snprintf(errbuf, errlen, "a credential is missing or contains a line break");
		curl_slist_free_all(headers);
		curl_easy_cleanup(easy);
		return false;
	}

	curl_easy_setopt(easy, CURLOPT_URL, req->url);

	/*
	 * libcurl silently sends a request again when it fails on a reused
	 * connection before any answer byte arrives, even after the whole
	 * request was written: for a request that creates something, a
	 * possible duplicate.  A JSON body is therefore handed to libcurl by a
	 * read callback that cannot rewind (see send_body_once), so such a
	 * resend fails instead, and the request counts as one that may have
	 * reached Cobalt.  A multipart body can always be rewound, so those
	 * requests never reuse a connection.  Job-creating requests reuse only
	 * connections idle for a few seconds at most, well inside any server's
	 * keep-alive timeout, so that one closed by the server meanwhile is
	 * rarely met.
	 */
	if (req->nform > 0)
		curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
	else if (strcmp(req->method, "GET") != 0)
		curl_easy_setopt(easy, CURLOPT_MAXAGE_CONN, (long) SEND_REUSE_MAX_IDLE_S);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	/* never follow a redirect (and were one followed: https only) */
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "https");
	curl_easy_setopt(easy, CURLOPT_MAXREDIRS, 0L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (http->ca_file)
		curl_easy_setopt(easy, CURLOPT_CAINFO, http->ca_file);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, http->user_agent);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, req->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
					 req->timeout_ms < 10000 ? req->timeout_ms : 10000L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_callback);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_callback);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->error);

	if (req->nform > 0)
	{
		mime = curl_mime_init(easy);
		for (int i = 0; i < req->nform; i++)
		{
			const CobaltFormField *f = &req->form[i];
			curl_mimepart *part = curl_mime_addpart(mime);

			curl_mime_name(part, f->name);
			curl_mime_data(part, f->value, f->value_len);
			if (f->filename)
				curl_mime_filename(part, f->filename);
			if (f->content_type)
				curl_mime_type(part, f->content_type);
		}
		curl_easy_setopt(easy, CURLOPT_MIMEPOST, mime);
		if (strcmp(req->method, "POST") != 0)
			curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
	}
	else if (strcmp(req->method, "GET") == 0)
		curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	else
	{
		req->body_sent = 0;
		curl_easy_setopt(easy, CURLOPT_POST, 1L);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
		curl_easy_setopt(easy, CURLOPT_READFUNCTION, send_body_once);
		curl_easy_setopt(easy, CURLOPT_READDATA, req);
		curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, refuse_rewind);
		curl_easy_setopt(easy, CURLOPT_SEEKDATA, req);
		if (strcmp(req->method, "POST") != 0)
			curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
	}

	req->easy = easy;
	req->headers = headers;
	req->mime = mime;
	if (curl_multi_add_handle(http->multi, easy) != CURLM_OK)
	{
		snprintf(errbuf, errlen, "could not add a transfer to libcurl");
		req->easy = NULL;
		cobalt_http_request_cleanup(req);
		curl_easy_cleanup(easy);
		return false;
	}
	http->in_flight++;
	req->prev_active = NULL;
	req->next_active = http->active;
	if (http->active)
		http->active->prev_active = req;
	http->active = req;
	return true;
}

/* The descriptor to wait on for "some transfer has work". */
int
cobalt_http_wait_fd(CobaltHttp *http)
{
	return http->epfd;
}

/* How long until libcurl wants to be called regardless: -1 = no limit. */
long
cobalt_http_timeout_ms(CobaltHttp *http)
{
	int64_t		left;

	if (http->timer_deadline_ms < 0)
		return -1;
	left = http->timer_deadline_ms - monotonic_ms();
	return left < 0 ? 0 : (long) left;
}

int
cobalt_http_in_flight(CobaltHttp *http)
{
	return http->in_flight;
}

/*
 * Could the request of a failed transfer have reached the server?  Only
 * failures before any byte of the request was sent prove it did not.
 */
static bool
maybe_delivered(CURL *easy, CURLcode code)
{
	long		request_size = 0;

	curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &request_size);
	switch (code)
	{
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_CONNECT:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CIPHER:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_URL_MALFORMAT:
			return false;
		case CURLE_OPERATION_TIMEDOUT:
			return request_size > 0;
		default:
			return true;
	}
}

/*
 * Keep a 3xx answer's Location for the error text, as printable ASCII (a
 * hostile value cannot put control bytes or broken UTF-8 into the job).
 */
static void
copy_redirect_url(CURL *easy, CobaltHttpRequest *req)
{
	char	   *url = NULL;
	size_t		n = 0;

	if (curl_easy_getinfo(easy, CURLINFO_REDIRECT_URL, &url) != CURLE_OK || url == NULL)
		return;
	for (; url[n] != '\0' && n < sizeof(req->redirect_url) - 1; n++)
		req->redirect_url[n] = (url[n] >= 0x20 && url[n] < 0x7f) ? url[n] : '?';
	req->redirect_url[n] = '\0';
}

/* Detach a finished transfer, fill the response fields, hand it back. */
static void
finish_transfer(CobaltHttp *http, CURL *easy, CURLcode code,
				CobaltHttpDoneCallback done, void *arg)
{
	CobaltHttpRequest *req = NULL;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &req);
	curl_multi_remove_handle(http->multi, easy);
	http->in_flight--;
	if (req->prev_active)
		req->prev_active->next_active = req->next_active;
	else
		http->active = req->next_active;
	if (req->next_active)
		req->next_active->prev_active = req->prev_active;
	req->prev_active = req->next_active = NULL;

	req->curl_code = (int) code;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &req->status);
	if (req->status >= 300 && req->status < 400)
		copy_redirect_url(easy, req);
	if (code != CURLE_OK)
	{
		if (req->error[0] == '\0')
			snprintf(req->error, sizeof(req->error), "%s", curl_easy_strerror(code));
		if (code == CURLE_SEND_FAIL_REWIND)
		{
			/* libcurl's own resend on a reused connection, refused */
			char		first[sizeof(req->error)];

			memcpy(first, req->error, sizeof(first));
			snprintf(req->error, sizeof(req->error),
					 "connection lost after the request went out (%.100s); libcurl would have sent it again, which cobalt never allows",
					 first);
		}
		req->maybe_delivered = maybe_delivered(easy, code);
	}
	else
		req->maybe_delivered = true;

	cobalt_http_request_cleanup(req);
	if (http->nidle < MAX_IDLE_HANDLES)
	{
		curl_easy_reset(easy);
		http->idle[http->nidle++] = easy;
	}
	else
		curl_easy_cleanup(easy);
	done(req, arg);
}

static void
drain_messages(CobaltHttp *http, CobaltHttpDoneCallback done, void *arg, int *ndone)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(http->multi, &left)) != NULL)
	{
		if (msg->msg != CURLMSG_DONE)
			continue;
		finish_transfer(http, msg->easy_handle, msg->data.result, done, arg);
		(*ndone)++;
	}
}

/*
 * Do whatever socket work is ready, without blocking, and call "done" for
 * each transfer that finished.  Returns how many finished.
 */
int
cobalt_http_perform(CobaltHttp *http, CobaltHttpDoneCallback done, void *arg)
{
	struct epoll_event events[MAX_EPOLL_EVENTS];
	int			running;
	int			ndone = 0;
	int			n;

	n = epoll_wait(http->epfd, events, MAX_EPOLL_EVENTS, 0);
	for (int i = 0; i < n; i++)
	{
		int			flags = 0;

		if (events[i].events & EPOLLIN)
			flags |= CURL_CSELECT_IN;
		if (events[i].events & EPOLLOUT)
			flags |= CURL_CSELECT_OUT;
		if (events[i].events & (EPOLLERR | EPOLLHUP))
			flags |= CURL_CSELECT_ERR;
		curl_multi_socket_action(http->multi, events[i].data.fd, flags, &running);
	}
	if (http->timer_deadline_ms >= 0 && monotonic_ms() >= http->timer_deadline_ms)
	{
		http->timer_deadline_ms = -1;
		curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	drain_messages(http, done, arg, &ndone);
	return ndone;
}

/* Release what http.c attached to a request (not the response body). */
void
cobalt_http_request_cleanup(CobaltHttpRequest *req)
{
	if (req->headers)
		curl_slist_free_all(req->headers);
	if (req->mime)
		curl_mime_free(req->mime);
	req->headers = NULL;
	req->mime = NULL;
	req->easy = NULL;
}

/*
 * Abort every transfer in flight; each is handed to "done" as failed with
 * CURLE_ABORTED_BY_CALLBACK and maybe_delivered set.
 */
void
cobalt_http_abort_all(CobaltHttp *http, CobaltHttpDoneCallback done, void *arg)
{
	while (http->active != NULL)
	{
		CobaltHttpRequest *req = http->active;

		snprintf(req->error, sizeof(req->error), "request abandoned by the worker");
		finish_transfer(http, req->easy, CURLE_ABORTED_BY_CALLBACK, done, arg);
	}
}

void
cobalt_http_destroy(CobaltHttp *http)
{
	if (http == NULL)
		return;
	while (http->nidle > 0)
		curl_easy_cleanup(http->idle[--http->nidle]);
	curl_multi_cleanup(http->multi);
	close(http->epfd);
	free(http->user_agent);
	free(http->ca_file);
	free(http);
}

#!/usr/bin/env python3
"""A local mock of the Cobalt EHR HTTP API, for the TAP tests and the demo.

Run it with Debian's Python (standard library only):

    /usr/bin/python3 test/mock_cobalt.py --port 0 --port-file PATH \\
        [--host 127.0.0.1] [--log FILE] [--tls-cert FILE --tls-key FILE]

It listens on HOST:PORT (port 0 picks a free port), writes the chosen port
to PATH atomically once listening, and serves until SIGTERM or SIGINT.  The
API lives under /v1, so the base URL is http://127.0.0.1:PORT/v1.

HTTPS: with --tls-cert FILE and --tls-key FILE (PEM; both or neither) the
mock speaks HTTPS only, and the base URL is https://127.0.0.1:PORT/v1.
Everything else (port file, control endpoints, request log) is the same.
The TLS handshake runs in the connection's handler thread, bounded by
TLS_HANDSHAKE_TIMEOUT seconds, so a client that never finishes it (or
speaks plain HTTP, or does not trust the certificate) cannot hold up other
clients; its connection is just closed, with one line on stderr.

What it imitates (see /work/shared/COBALT_API.md for the real API):

* Authentication by the three headers client_id, client_secret and
  access_token on every /v1 request; otherwise 401.
* Job-creating POST/PATCH operations, which answer with a job_id, and
  GET /v1/webhook-events?job_id=X, which lists the job's event once the job
  has "finished".

Tests script each job through a `_mock` object in the request body (a JSON
field, or a multipart form field holding JSON text); see MockSpec below.
Besides the API-like faults, three modes answer with whatever a security
test needs, for the job-creating request (`send`) or for its polls (`poll`):

    "raw"       status, body (text, or base64 bytes: invalid UTF-8, NULs),
                extra headers and Content-Type exactly as scripted
    "huge"      200 with a body of exactly `size` bytes, streamed
                ({"success":true,"pad":"xxx...x"}; at most 64 MiB)
    "redirect"  a 3xx (default 302) with a Location header

Every answer carries a correct Content-Length.  The mock never answers an
API request with a credential it was sent: the events' access token
reference is a counter ("ref_N"), not derived from the token.  (The request
log under /_mock/requests does record the request headers, credentials
included, for the tests to check what was sent.)

Control endpoints (no authentication):

    GET  /_mock/health          -> 200 "ok"
    GET  /_mock/requests[?since=SEQ]
                                -> every /v1 (and other non-control) request
                                   received, in arrival order
    GET  /_mock/jobs            -> jobs by job id
    POST /_mock/reset           -> forget requests, jobs and send counters
                                   (config is kept; numbering continues)
    GET  /_mock/config          -> the global config
    POST /_mock/config          -> merge a JSON object into the config
                                   (a null value restores a key's default;
                                   see CONFIG_DEFAULTS)
    POST /_mock/raise           -> raise an exception in the handler, to
                                   exercise the error path (answers 500)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import re
import secrets
import select
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Iterator, Optional

API_PREFIX = "/v1"
CONTROL_PREFIX = "/_mock"

# Largest request body accepted (the API takes documents up to ~40 MB).
MAX_BODY_BYTES = 64 * 1024 * 1024
# At most this much of a body is kept, as text, in the request log.
LOGGED_BODY_BYTES = 1024 * 1024

ACCEPTED_SUFFIX = "A webhook event will be sent upon completion."
DEFAULT_FAILURE_REASON = "Slot is no longer available"
DEFAULT_REJECT_MESSAGE = "Missing required field: subject"
AUTH_FAILED = {"success": False,
               "message": "Missing or invalid credentials"}
INTERNAL_ERROR = {"success": False, "message": "Internal error"}
TOO_MANY_REQUESTS = {"success": False, "message": "Too many requests"}
FIRST_JOB_ID = 10001
AUTH_HEADERS = ("client_id", "client_secret", "access_token")

# Truncated JSON answered by the "malformed" faults.
MALFORMED_SEND = b'{"success": true, "job_id": '
MALFORMED_POLL = b'{"success": true, "webhook_events": ['

# The "huge" answers: HUGE_PREFIX, "x" padding, HUGE_SUFFIX; a size below
# the two together gets their first `size` bytes.  Streamed in chunks.
HUGE_PREFIX = b'{"success":true,"pad":"'
HUGE_SUFFIX = b'"}'
HUGE_MAX_BYTES = 64 * 1024 * 1024
HUGE_CHUNK_BYTES = 64 * 1024
DEFAULT_RAW_CONTENT_TYPE = "application/json"
# Response headers a "raw" answer may not set: the mock frames the body
# itself, and the Content-Type comes from content_type.
RESERVED_RAW_HEADERS = ("content-length", "transfer-encoding",
                        "content-type")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

# Seconds a client gets to finish the TLS handshake (HTTPS mode).
TLS_HANDSHAKE_TIMEOUT = 5.0

OUTCOMES = ("success", "failure", "never")
SEND_MODES = ("ok", "reject", "success_false", "error", "429", "hang",
              "reset", "malformed", "no_job_id", "raw", "huge", "redirect")
# The global `polls_fail` takes only the faults that need no other keys.
GLOBAL_POLL_FAULTS = ("500", "429", "malformed", "hang", "reset")
POLL_FAULTS = GLOBAL_POLL_FAULTS + ("raw", "huge", "redirect")
JOB_ID_FORMS = ("string", "number", "data")

CONFIG_DEFAULTS: dict[str, Any] = {
    "polls_fail": None,            # one of GLOBAL_POLL_FAULTS: every poll
                                   # fails (raw, huge and redirect need the
                                   # poll_* keys of a job's _mock: refused)
    "send_default": None,          # a _mock object for requests without one
    "expect_client_id": None,      # if set, client_id must equal it
    "expect_client_secret": None,  # if set, client_secret must equal it
    "expect_access_token": None,   # if set (string or list), must match
}


class MockError(ValueError):
    """A `_mock` object or a config value the mock cannot understand."""


class BodyError(Exception):
    """A request body that cannot be read; answered with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------------------
# Operations: which resource and event types a job-creating path stands for
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Operation:
    """What a job-creating request does, as far as the mock cares."""

    resource: str           # names the "<resource>_id" field
    success_event: str
    failure_event: str
    verb: str = "creation"  # for the human-readable answer message
    id_from_path: Optional[str] = None  # resource id taken from the path


# (method, path pattern relative to /v1, resource, success, failure, verb).
# A pattern group, if any, captures the resource id for updates.
KNOWN_OPERATIONS = [
    ("POST", r"appointments", "appointment",
     "appointment.created", "appointment.failed", "creation"),
    ("PATCH", r"appointments/([^/]+)", "appointment",
     "appointment.updated", "appointment.failed", "update"),
    ("POST", r"patients", "patient",
     "patient.created", "patient.failed", "creation"),
    ("POST", r"notes", "note",
     "note.uploaded", "note.failed", "upload"),
    ("POST", r"documents", "document",
     "document.uploaded", "document.upload_failed", "upload"),
    ("POST", r"tasks", "task",
     "task.created", "task.failed", "creation"),
    ("POST", r"messages", "message",
     "message.created", "message.failed", "creation"),
    ("POST", r"patients/[^/]+/insurances", "insurance",
     "patient.insurance.added", "patient.insurance.failed", "creation"),
    ("POST", r"referring-providers", "referring_provider",
     "referring_provider.created", "referring_provider.failed",
     "creation"),
    ("POST", r"telephone-encounters", "telephone_encounter",
     "telephone_encounter.created", "telephone_encounter.failed",
     "creation"),
]
_KNOWN = [(method, re.compile(pattern), resource, ok, failed, verb)
          for method, pattern, resource, ok, failed, verb
          in KNOWN_OPERATIONS]


def singularise(word: str) -> str:
    """Turn a collection name into a resource name ("foo-bars" -> foo_bar).
    """
    word = word.lower().replace("-", "_")
    if word.endswith("ies") and len(word) > 3:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def is_placeholder(segment: str, index: int) -> bool:
    """Whether a path segment is a value (an id, an MRN) and not a name.

    Paths alternate collection/value (/patients/{mrn}/insurances), so odd
    positions are values; anything holding a digit is taken as a value too.
    """
    return index % 2 == 1 or any(ch.isdigit() for ch in segment)


def resolve_operation(method: str, subpath: str) -> Operation:
    """Find the operation for a POST/PATCH to /v1/<subpath>."""
    for known_method, pattern, resource, ok, failed, verb in _KNOWN:
        match = pattern.fullmatch(subpath)
        if known_method == method and match:
            path_id = match.group(1) if pattern.groups else None
            return Operation(resource, ok, failed, verb, path_id)
    # Generic operation (an administrator may have added one): the resource
    # is the last non-placeholder segment, singularised.
    segments = [s for s in subpath.split("/") if s]
    names = [s for i, s in enumerate(segments) if not is_placeholder(s, i)]
    resource = singularise(names[-1]) if names else "resource"
    path_id = None
    if method == "PATCH" and segments and segments[-1] not in names:
        path_id = segments[-1]
    if method == "PATCH":
        return Operation(resource, f"{resource}.updated",
                         f"{resource}.failed", "update", path_id)
    return Operation(resource, f"{resource}.created", f"{resource}.failed",
                     "creation", path_id)


# ---------------------------------------------------------------------------
# Per-job scripting
# ---------------------------------------------------------------------------

def _as_int(raw: dict, name: str, default: Optional[int],
            minimum: int = 0,
            maximum: Optional[int] = None) -> Optional[int]:
    value = raw.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise MockError(f"{name} must be an integer")
    try:
        number = int(value)
    except ValueError:
        raise MockError(f"{name} must be an integer") from None
    if number < minimum:
        raise MockError(f"{name} must be at least {minimum}")
    if maximum is not None and number > maximum:
        raise MockError(f"{name} must be at most {maximum}")
    return number


def _as_float(raw: dict, name: str, default: float) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise MockError(f"{name} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise MockError(f"{name} must be a number") from None
    if not math.isfinite(number) or number < 0:
        raise MockError(f"{name} must be a non-negative number")
    return number


def _as_choice(raw: dict, name: str, default: Optional[str],
               choices: tuple) -> Optional[str]:
    value = raw.get(name, default)
    if value is None:
        return None
    value = str(value)
    if value not in choices:
        raise MockError(f"{name} must be one of {', '.join(choices)}")
    return value


def _as_text(raw: dict, name: str, default: Optional[str]) -> Optional[str]:
    value = raw.get(name, default)
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise MockError(f"{name} must be a string")
    return str(value)


def _check_header_value(name: str, value: str) -> str:
    """Refuse a header value that would break (or inject) headers."""
    if "\r" in value or "\n" in value:
        raise MockError(f"{name} must not contain CR or LF")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise MockError(f"{name} must be Latin-1 text") from None
    return value


def _as_header_value(raw: dict, name: str,
                     default: Optional[str]) -> Optional[str]:
    """A text key sent as a response header value (no CR, no LF)."""
    value = _as_text(raw, name, default)
    return None if value is None else _check_header_value(name, value)


def _as_headers(raw: dict, name: str) -> tuple[tuple[str, str], ...]:
    """A JSON object of extra response headers, name -> string value."""
    value = raw.get(name)
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise MockError(f"{name} must be a JSON object")
    headers = []
    for header, text in value.items():
        if "\r" in header or "\n" in header:
            raise MockError(f"{name}: header names must not contain "
                            f"CR or LF")
        if not HEADER_NAME.fullmatch(header):
            raise MockError(f"{name}: {header!r} is not a header name")
        if header.lower() in RESERVED_RAW_HEADERS:
            raise MockError(f"{name}: {header} is set by the mock "
                            f"(use content_type for Content-Type)")
        if not isinstance(text, str):
            raise MockError(f"{name}: the value of {header} must be a "
                            f"string")
        headers.append((header, _check_header_value(f"{name}: {header}",
                                                    text)))
    return tuple(headers)


def _as_base64(raw: dict, name: str) -> Optional[str]:
    """Base64 text (standard alphabet, padded, no whitespace)."""
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MockError(f"{name} must be a base64 string")
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        raise MockError(f"{name} must be valid base64") from None
    return value


def raw_body(text: Optional[str], b64: Optional[str]) -> bytes:
    """The body of a "raw" answer: text as UTF-8, or base64 decoded."""
    if text is not None:
        return text.encode("utf-8")
    if b64 is not None:
        return base64.b64decode(b64, validate=True)
    return b""


def huge_body(size: int) -> Iterator[bytes]:
    """The `size` bytes of a "huge" answer, in chunks."""
    frame = len(HUGE_PREFIX) + len(HUGE_SUFFIX)
    if size <= frame:
        yield (HUGE_PREFIX + HUGE_SUFFIX)[:size]
        return
    yield HUGE_PREFIX
    block = b"x" * HUGE_CHUNK_BYTES
    pad = size - frame
    while pad > 0:
        chunk = block if pad >= len(block) else block[:pad]
        yield chunk
        pad -= len(chunk)
    yield HUGE_SUFFIX


@dataclass(frozen=True)
class MockSpec:
    """How the mock should treat one job, from the request's `_mock` object.

    Every field is optional; the default is a job that is accepted and
    succeeds at its first poll.
    """

    outcome: str = "success"        # success | failure | never
    after_polls: int = 1            # event visible from the N-th good poll
    after_seconds: float = 0.0      # ... and T seconds after acceptance
    failure_reason: str = DEFAULT_FAILURE_REASON
    event_type: Optional[str] = None  # overrides the event type
    send: str = "ok"                # what the job-creating request gets
    status: Optional[int] = None    # HTTP status (100..999) for reject
                                    # (400) / error (500) / raw (200) /
                                    # redirect (302)
    message: Optional[str] = None   # message for reject / success_false
    retry_after: str = "1"          # Retry-After for send "429"
    body: Optional[str] = None      # raw: body text, sent as UTF-8
    body_b64: Optional[str] = None  # raw: body bytes as base64 (any bytes:
                                    # invalid UTF-8, NULs); not with body;
                                    # neither: an empty body
    headers: tuple[tuple[str, str], ...] = ()
                                    # raw: extra headers, a JSON object of
                                    # name -> string (no CR/LF; not
                                    # Content-Length, Transfer-Encoding,
                                    # Content-Type)
    content_type: Optional[str] = DEFAULT_RAW_CONTENT_TYPE
                                    # raw: Content-Type; null sends none
    size: Optional[int] = None      # huge: body size, 1..64 MiB (required)
    location: Optional[str] = None  # redirect: Location (required)
    send_times: Optional[int] = None  # fault only the first N sends
    key: str = ""                   # identifies repeated sends of a job
    delay: float = 0.0              # seconds before answering the send
    job_id_as: str = "string"       # string | number | data
    poll: Optional[str] = None      # a fault for this job's polls
    poll_times: Optional[int] = None  # fault only the first N polls
    poll_retry_after: str = "1"     # Retry-After for poll "429"
    # The same as status ... location, for poll "raw" / "huge" / "redirect"
    poll_status: Optional[int] = None  # raw (200) / redirect (302)
    poll_body: Optional[str] = None
    poll_body_b64: Optional[str] = None
    poll_headers: tuple[tuple[str, str], ...] = ()
    poll_content_type: Optional[str] = DEFAULT_RAW_CONTENT_TYPE
    poll_size: Optional[int] = None    # huge (required)
    poll_location: Optional[str] = None  # redirect (required)

    @classmethod
    def parse(cls, raw: Any) -> "MockSpec":
        """Validate a `_mock` object; raise MockError if it is unusable."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise MockError("_mock must be a JSON object")
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise MockError(f"unknown _mock keys: {', '.join(unknown)}")
        key = raw.get("key")
        if key is None:
            key = json.dumps(raw, sort_keys=True, separators=(",", ":"))
        spec = cls(
            outcome=_as_choice(raw, "outcome", "success", OUTCOMES),
            after_polls=_as_int(raw, "after_polls", 1),
            after_seconds=_as_float(raw, "after_seconds", 0.0),
            failure_reason=_as_text(raw, "failure_reason",
                                    DEFAULT_FAILURE_REASON),
            event_type=_as_text(raw, "event_type", None),
            send=_as_choice(raw, "send", "ok", SEND_MODES),
            status=_as_int(raw, "status", None, minimum=100, maximum=999),
            message=_as_text(raw, "message", None),
            retry_after=_as_header_value(raw, "retry_after", "1"),
            body=_as_text(raw, "body", None),
            body_b64=_as_base64(raw, "body_b64"),
            headers=_as_headers(raw, "headers"),
            content_type=_as_header_value(raw, "content_type",
                                          DEFAULT_RAW_CONTENT_TYPE),
            size=_as_int(raw, "size", None, minimum=1,
                         maximum=HUGE_MAX_BYTES),
            location=_as_header_value(raw, "location", None),
            send_times=_as_int(raw, "send_times", None),
            key=str(key),
            delay=_as_float(raw, "delay", 0.0),
            job_id_as=_as_choice(raw, "job_id_as", "string", JOB_ID_FORMS),
            poll=_as_choice(raw, "poll", None, POLL_FAULTS),
            poll_times=_as_int(raw, "poll_times", None),
            poll_retry_after=_as_header_value(raw, "poll_retry_after", "1"),
            poll_status=_as_int(raw, "poll_status", None, minimum=100,
                                maximum=999),
            poll_body=_as_text(raw, "poll_body", None),
            poll_body_b64=_as_base64(raw, "poll_body_b64"),
            poll_headers=_as_headers(raw, "poll_headers"),
            poll_content_type=_as_header_value(raw, "poll_content_type",
                                               DEFAULT_RAW_CONTENT_TYPE),
            poll_size=_as_int(raw, "poll_size", None, minimum=1,
                              maximum=HUGE_MAX_BYTES),
            poll_location=_as_header_value(raw, "poll_location", None),
        )
        spec._check_combinations()
        return spec

    def _check_combinations(self) -> None:
        """Refuse keys that exclude each other, or a mode without its key.
        """
        for prefix, mode in (("", self.send), ("poll_", self.poll)):
            if (getattr(self, f"{prefix}body") is not None
                    and getattr(self, f"{prefix}body_b64") is not None):
                raise MockError(f"give at most one of {prefix}body and "
                                f"{prefix}body_b64")
            which = "send" if prefix == "" else "poll"
            if mode == "huge" and getattr(self, f"{prefix}size") is None:
                raise MockError(f"{prefix}size is required for "
                                f"{which} huge")
            if mode == "redirect" and not getattr(self,
                                                  f"{prefix}location"):
                raise MockError(f"{prefix}location is required for "
                                f"{which} redirect")


# ---------------------------------------------------------------------------
# Shared state
# ---------------------------------------------------------------------------

def utc_now_iso() -> str:
    """The current time as ISO 8601 UTC with a Z suffix."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Job:
    """One accepted job and how far it has got."""

    job_id: str
    method: str
    operation_path: str
    operation: Operation
    resource_id: str
    spec: MockSpec
    access_token_reference_id: str
    accepted_at: float = field(default_factory=time.time)
    polls: int = 0          # good polls, which count towards after_polls
    poll_faults: int = 0    # polls answered with this job's `poll` fault
    event: Optional[dict] = None

    def summary(self) -> dict:
        """The job as /_mock/jobs shows it."""
        return {
            "operation_path": self.operation_path,
            "method": self.method,
            "resource_id": self.resource_id,
            "polls": self.polls,
            "poll_faults": self.poll_faults,
            "accepted_at": self.accepted_at,
            "finished": self.event is not None,
            "outcome": self.spec.outcome,
            "event_type": (self.event or {}).get("event_type"),
        }


class MockState:
    """Requests, jobs and configuration, shared by the handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.config: dict[str, Any] = dict(CONFIG_DEFAULTS)
        self.requests: list[dict] = []
        self.jobs: dict[str, Job] = {}
        self.send_counts: dict[str, int] = {}
        self.token_refs: dict[str, str] = {}
        # Counters are never reset, so ids stay unique for the whole run.
        self.next_seq = 1
        self.next_job_id = FIRST_JOB_ID
        self.next_event = 1

    # -- requests ----------------------------------------------------------
    def log_request(self, entry: dict) -> dict:
        """Append a request record and give it a sequence number."""
        with self.lock:
            entry["seq"] = self.next_seq
            self.next_seq += 1
            self.requests.append(entry)
        return entry

    def set_entry(self, entry: Optional[dict], **values: Any) -> None:
        """Update fields (status, job_id) of a request record."""
        if entry is not None:
            with self.lock:
                entry.update(values)

    def requests_since(self, since: int) -> list[dict]:
        with self.lock:
            return [dict(e) for e in self.requests if e["seq"] > since]

    # -- config ------------------------------------------------------------
    def get_config(self) -> dict:
        with self.lock:
            return dict(self.config)

    def merge_config(self, update: dict) -> dict:
        """Validate and merge a config update; null restores a default."""
        unknown = sorted(set(update) - set(CONFIG_DEFAULTS))
        if unknown:
            raise MockError(f"unknown config keys: {', '.join(unknown)}")
        if update.get("polls_fail") is not None:
            if str(update["polls_fail"]) in POLL_FAULTS[
                    len(GLOBAL_POLL_FAULTS):]:
                raise MockError(
                    f"polls_fail cannot be {update['polls_fail']}: use a "
                    f"job's _mock poll and poll_* keys for it")
            _as_choice(update, "polls_fail", None, GLOBAL_POLL_FAULTS)
        if update.get("send_default") is not None:
            MockSpec.parse(update["send_default"])
        with self.lock:
            for name, value in update.items():
                self.config[name] = (CONFIG_DEFAULTS[name] if value is None
                                     else value)
            return dict(self.config)

    # -- jobs --------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.jobs.clear()
            self.send_counts.clear()

    def count_send(self, key: str) -> int:
        """Count one more request carrying this `_mock` key."""
        with self.lock:
            self.send_counts[key] = self.send_counts.get(key, 0) + 1
            return self.send_counts[key]

    def create_job(self, method: str, path: str, operation: Operation,
                   spec: MockSpec, access_token: str) -> Job:
        with self.lock:
            job_id = str(self.next_job_id)
            self.next_job_id += 1
            ref = self.token_refs.setdefault(
                access_token, f"ref_{len(self.token_refs) + 1}")
            job = Job(job_id=job_id, method=method, operation_path=path,
                      operation=operation,
                      resource_id=operation.id_from_path
                      or secrets.token_hex(8),
                      spec=spec, access_token_reference_id=ref)
            self.jobs[job_id] = job
            return job

    def jobs_summary(self) -> dict:
        with self.lock:
            return {job_id: job.summary()
                    for job_id, job in self.jobs.items()}

    def take_poll_fault(self, job_id: Optional[str]
                        ) -> Optional[tuple[str, Optional[MockSpec]]]:
        """The fault (kind, job spec) this poll of the job gets, if any.

        The global `polls_fail` comes first (its spec is None); then the
        job's own `poll` fault, for its first `poll_times` polls.
        """
        with self.lock:
            kind = self.config.get("polls_fail")
            if kind:
                return str(kind), None
            job = self.jobs.get(job_id) if job_id else None
            if job is None or job.spec.poll is None:
                return None
            limit = job.spec.poll_times
            if limit is not None and job.poll_faults >= limit:
                return None
            job.poll_faults += 1
            return job.spec.poll, job.spec

    def poll(self, job_id: Optional[str]) -> list[dict]:
        """Count a good poll and return the events it sees.

        With a job id: that job's event, if it has finished by now.  Without
        one: the events of every job that has already finished.
        """
        with self.lock:
            if job_id is None:
                return [dict(job.event) for job in self.jobs.values()
                        if job.event is not None]
            job = self.jobs.get(job_id)
            if job is None:
                return []
            job.polls += 1
            self._maybe_finish(job)
            return [dict(job.event)] if job.event is not None else []

    def _maybe_finish(self, job: Job) -> None:
        """Record the job's event once its scripted conditions hold."""
        spec = job.spec
        if job.event is not None or spec.outcome == "never":
            return
        if job.polls < spec.after_polls:
            return
        if time.time() - job.accepted_at < spec.after_seconds:
            return
        operation = job.operation
        if spec.outcome == "success":
            event_type = spec.event_type or operation.success_event
            data: dict[str, Any] = {
                f"{operation.resource}_id": job.resource_id,
                "status": "success",
            }
        else:
            event_type = spec.event_type or operation.failure_event
            data = {
                "failure_reason": spec.failure_reason,
                "reasons": [{"code": "E1",
                             "description": spec.failure_reason}],
            }
        job.event = {
            "event_id": f"evt_{self.next_event}",
            "event_type": event_type,
            "delivery_status": "success",
            "data": data,
            "created_at": utc_now_iso(),
            "job_id": job.job_id,
            "access_token_reference_id": job.access_token_reference_id,
        }
        self.next_event += 1


# ---------------------------------------------------------------------------
# Request bodies
# ---------------------------------------------------------------------------

def header_params(name: str, value: str) -> dict:
    """Parameters of a structured header (boundary=, name=, filename=)."""
    try:
        header = email_policy.HTTP.header_factory(name, value)
        return dict(getattr(header, "params", {}) or {})
    except Exception:  # a malformed header just has no parameters
        return {}


def parse_multipart(body: bytes, content_type: str) -> list[dict]:
    """Split a multipart/form-data body into its parts.

    Each part is {"name", "filename" (or None), "content_type",
    "content" (bytes)}.  Raises ValueError if the body is not multipart.
    """
    boundary = header_params("content-type", content_type).get("boundary")
    if not boundary:
        raise ValueError("multipart body without a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    pos = body.find(delimiter)
    if pos < 0:
        raise ValueError("multipart boundary not found")
    parts = []
    pos += len(delimiter)
    while not body.startswith(b"--", pos):      # "--" ends the last part
        line_end = body.find(b"\r\n", pos)      # skip transport padding
        if line_end < 0:
            raise ValueError("truncated multipart body")
        start = line_end + 2
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise ValueError("unterminated multipart part")
        parts.append(_parse_part(body[start:end]))
        pos = end + 2 + len(delimiter)
    return parts


def _parse_part(raw: bytes) -> dict:
    """Parse the headers and content of one multipart part."""
    if raw.startswith(b"\r\n"):
        head, content = b"", raw[2:]
    else:
        head, sep, content = raw.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("multipart part without a header end")
    headers = {}
    for line in head.decode("utf-8", "replace").split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    disposition = header_params("content-disposition",
                                headers.get("content-disposition", ""))
    return {
        "name": disposition.get("name", ""),
        "filename": disposition.get("filename"),
        "content_type": headers.get("content-type"),
        "content": content,
    }


@dataclass
class ParsedBody:
    """A request body and what could be made of it."""

    raw: bytes
    content_type: str
    json: Any = None
    json_error: bool = False       # declared JSON, but does not parse
    form: Optional[dict] = None    # fields for the request log
    form_text: Optional[dict] = None  # text fields only, for `_mock`

    @classmethod
    def parse(cls, raw: bytes, content_type: str) -> "ParsedBody":
        parsed = cls(raw=raw, content_type=content_type)
        media = content_type.split(";", 1)[0].strip().lower()
        if media == "multipart/form-data":
            parsed._parse_form(raw, content_type)
            return parsed
        if not raw.strip():
            return parsed
        # Be liberal: a JSON body counts as JSON whatever its content type
        # (curl -d labels everything x-www-form-urlencoded).
        try:
            parsed.json = json.loads(raw)
        except ValueError:
            parsed.json_error = "json" in media
            if media == "application/x-www-form-urlencoded":
                pairs = urllib.parse.parse_qsl(
                    raw.decode("utf-8", "replace"), keep_blank_values=True)
                parsed.form = dict(pairs)
                parsed.form_text = dict(pairs)
        return parsed

    def _parse_form(self, raw: bytes, content_type: str) -> None:
        try:
            parts = parse_multipart(raw, content_type)
        except ValueError:
            return
        self.form, self.form_text = {}, {}
        for part in parts:
            content = part["content"]
            if part["filename"] is not None:
                self.form[part["name"]] = {
                    "filename": part["filename"],
                    "content_type": part["content_type"],
                    "size": len(content),
                    "sha256": hashlib.sha256(content).hexdigest(),
                }
            else:
                text = content.decode("utf-8", "replace")
                self.form[part["name"]] = text
                self.form_text[part["name"]] = text

    def mock_object(self) -> tuple[bool, Any]:
        """(present, value) of the `_mock` field, JSON text decoded."""
        if isinstance(self.json, dict) and "_mock" in self.json:
            return True, self.json["_mock"]
        if self.form_text is not None and "_mock" in self.form_text:
            try:
                return True, json.loads(self.form_text["_mock"])
            except ValueError:
                raise MockError("_mock form field is not JSON") from None
        return False, None


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

def make_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server-side TLS context for --tls-cert / --tls-key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["http/1.1"])
    return context


class MockServer(ThreadingHTTPServer):
    """The HTTP(S) server; carries the shared state and the log file."""

    daemon_threads = True
    block_on_close = False      # never wait for handler threads on close
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple, log_file=None,
                 tls_context: Optional[ssl.SSLContext] = None) -> None:
        self.tls_context = tls_context
        super().__init__(address, MockHandler)
        self.state = MockState()
        self.stopping = threading.Event()
        self.log_file = log_file
        self.log_lock = threading.Lock()

    def get_request(self) -> tuple:
        """Accept a connection; with TLS, wrap it without a handshake.

        The handshake is left to the handler thread (MockHandler.setup), so
        that a client that never finishes it cannot stall the accepting
        thread, and so every other client.
        """
        connection, address = super().get_request()
        if self.tls_context is not None:
            try:
                connection = self.tls_context.wrap_socket(
                    connection, server_side=True,
                    do_handshake_on_connect=False)
            except OSError:
                connection.close()
                raise
        return connection, address


class MockHandler(BaseHTTPRequestHandler):
    """Answers one connection's requests (keep-alive)."""

    server: MockServer
    protocol_version = "HTTP/1.1"
    server_version = "MockCobalt/1.0"
    sys_version = ""
    disable_nagle_algorithm = True

    # -- plumbing ----------------------------------------------------------
    def setup(self) -> None:
        """With TLS, finish the handshake here, in the handler thread.

        A handshake that fails (plain HTTP, an untrusted certificate, a
        client that sends nothing for TLS_HANDSHAKE_TIMEOUT seconds) closes
        the connection, with one line on stderr.
        """
        self._tls_failed = False
        connection = self.request
        if isinstance(connection, ssl.SSLSocket):
            connection.settimeout(TLS_HANDSHAKE_TIMEOUT)
            try:
                connection.do_handshake()
            except OSError as error:    # ssl.SSLError, timeout, reset
                self._tls_failed = True
                self._note_tls_error("TLS handshake", error)
            else:
                connection.settimeout(None)
        super().setup()

    def handle(self) -> None:
        """Serve the connection's requests (none if the handshake failed)."""
        if self._tls_failed:
            self.close_connection = True
            return
        try:
            super().handle()
        except ssl.SSLError as error:
            self._note_tls_error("TLS", error)

    def _note_tls_error(self, what: str, error: BaseException) -> None:
        text = (str(error) or type(error).__name__).splitlines()[0]
        sys.stderr.write(f"mock_cobalt: {what} with "
                         f"{self.client_address[0]}:"
                         f"{self.client_address[1]} failed: {text}\n")
        sys.stderr.flush()

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Per-request logging goes to --log FILE only."""
        log_file = self.server.log_file
        if log_file is None:
            return
        line = "%s - - [%s] %s\n" % (self.address_string(),
                                     self.log_date_time_string(),
                                     format % args)
        with self.server.log_lock:
            log_file.write(line)
            log_file.flush()

    def finish(self) -> None:
        """Close the connection, with a TCP RST if a "reset" asked for one.
        """
        if not getattr(self, "_abort_with_rst", False):
            super().finish()
            return
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        except OSError:
            pass
        # The socket is only really closed once its files are closed too.
        self.rfile.close()
        self.wfile.close()
        self.connection.close()

    def _handle(self) -> None:
        """Run the request; any exception becomes a 500 with a JSON body."""
        self._entry: Optional[dict] = None
        self._responded = False
        self._abort_with_rst = False
        try:
            self._dispatch()
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True
        except Exception:
            sys.stderr.write(f"mock_cobalt: error handling {self.command} "
                             f"{self.path}\n{traceback.format_exc()}")
            sys.stderr.flush()
            self.close_connection = True
            if not self._responded:
                try:
                    self._send_json(500, {"success": False,
                                          "message": "Mock internal error"})
                except OSError:
                    pass

    def _send_raw(self, status: int, body: bytes,
                  content_type: Optional[str] = "application/json",
                  headers: Optional[dict] = None) -> None:
        """Answer with a body and its Content-Length."""
        self._send_stream(status, len(body), [body], content_type, headers)

    def _send_stream(self, status: int, length: int,
                     chunks: Iterable[bytes],
                     content_type: Optional[str] = "application/json",
                     headers: Optional[dict] = None) -> None:
        """Answer with a body of `length` bytes, written chunk by chunk.

        A content_type of None sends no Content-Type header.
        """
        self._responded = True
        self.server.state.set_entry(self._entry, status=status)
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(chunk)

    def _send_redirect(self, status: int, location: str) -> None:
        self._send_json(status, {"success": False, "message": "Redirected",
                                 "location": location},
                        headers={"Location": location})

    def _send_json(self, status: int, obj: Any,
                   headers: Optional[dict] = None) -> None:
        self._send_raw(status, json.dumps(obj).encode("utf-8"),
                       headers=headers)

    def _read_body(self) -> bytes:
        """Read the request body (Content-Length or chunked)."""
        encoding = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in encoding:
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            raise BodyError(400, "Invalid Content-Length") from None
        if length < 0:
            raise BodyError(400, "Invalid Content-Length")
        if length > MAX_BODY_BYTES:
            raise BodyError(413, "Request body too large")
        body = self.rfile.read(length)
        if len(body) < length:
            raise ConnectionError("client closed before sending the body")
        return body

    def _read_chunked(self) -> bytes:
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise ConnectionError("client closed inside a chunked body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BodyError(400, "Invalid chunked encoding") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass                        # skip trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise BodyError(413, "Request body too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)           # CRLF after the chunk

    def _hang(self) -> None:
        """Never answer; wait until the client goes or the server stops."""
        self.close_connection = True
        self._responded = True
        connection = self.connection
        while not self.server.stopping.is_set():
            readable, _, _ = select.select([connection], [], [], 0.2)
            if readable:
                try:
                    if not connection.recv(65536):
                        return          # the client closed the connection
                except OSError:
                    return

    def _reset(self) -> None:
        """Answer nothing and close the connection with a TCP RST."""
        self.close_connection = True
        self._responded = True
        self._abort_with_rst = True

    # -- routing -----------------------------------------------------------
    def _dispatch(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        is_control = (path == CONTROL_PREFIX
                      or path.startswith(CONTROL_PREFIX + "/"))
        try:
            raw = self._read_body()
        except BodyError as error:
            self.close_connection = True
            if not is_control:
                self._entry = self.server.state.log_request(
                    self._log_record(ParsedBody(b"", "")))
            self._send_json(error.status, {"success": False,
                                           "message": error.message})
            return
        body = ParsedBody.parse(raw, self.headers.get("Content-Type", ""))
        if is_control:
            self._control(path[len(CONTROL_PREFIX):], query, body)
            return
        self._entry = self.server.state.log_request(self._log_record(body))
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            self._api(path, path[len(API_PREFIX):].strip("/"), query, body)
        else:
            self._send_json(404, {"success": False, "message": "Not found"})

    def _log_record(self, body: ParsedBody) -> dict:
        """The request as /_mock/requests shows it."""
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = (f"{headers[name]}, {value}" if name in headers
                             else value)
        record = {
            "seq": None,
            "time": time.time(),
            "method": self.command,
            "path": self.path,
            "headers": headers,
            "body": body.raw[:LOGGED_BODY_BYTES].decode("utf-8", "replace"),
            "content_type": body.content_type or None,
            "form": body.form,
            "json": body.json,
            "status": None,
            "job_id": None,
        }
        if len(body.raw) > LOGGED_BODY_BYTES:
            record["body_truncated"] = True
            record["body_size"] = len(body.raw)
        return record

    # -- control endpoints -------------------------------------------------
    def _control(self, subpath: str, query: dict, body: ParsedBody) -> None:
        state = self.server.state
        method = self.command
        if subpath == "/health" and method == "GET":
            self._send_raw(200, b"ok", "text/plain; charset=utf-8")
        elif subpath == "/requests" and method == "GET":
            try:
                since = int(query.get("since", ["0"])[0] or 0)
            except ValueError:
                self._send_json(400, {"success": False,
                                      "message": "since must be an integer"})
                return
            self._send_json(200, state.requests_since(since))
        elif subpath == "/jobs" and method == "GET":
            self._send_json(200, state.jobs_summary())
        elif subpath == "/reset" and method == "POST":
            state.reset()
            self._send_json(200, {"success": True})
        elif subpath == "/config" and method == "GET":
            self._send_json(200, state.get_config())
        elif subpath == "/config" and method == "POST":
            if not isinstance(body.json, dict):
                self._send_json(400, {"success": False,
                                      "message": "expected a JSON object"})
                return
            try:
                self._send_json(200, state.merge_config(body.json))
            except MockError as error:
                self._send_json(400, {"success": False,
                                      "message": f"mock: {error}"})
        elif subpath == "/raise" and method == "POST":
            raise RuntimeError("deliberate failure requested by /_mock/raise")
        else:
            self._send_json(404, {"success": False,
                                  "message": "Unknown control endpoint"})

    # -- the API -----------------------------------------------------------
    def _authorised(self) -> bool:
        """The three credential headers are present (and as configured)."""
        values = {name: self.headers.get(name, "").strip()
                  for name in AUTH_HEADERS}
        if not all(values.values()):
            return False
        config = self.server.state.get_config()
        for name in AUTH_HEADERS:
            expected = config.get(f"expect_{name}")
            if expected is None:
                continue
            allowed = expected if isinstance(expected, list) else [expected]
            if values[name] not in [str(item) for item in allowed]:
                return False
        return True

    def _api(self, path: str, subpath: str, query: dict,
             body: ParsedBody) -> None:
        if not self._authorised():
            self._send_json(401, AUTH_FAILED)
        elif subpath == "webhook-events":
            if self.command == "GET":
                self._poll(query)
            else:
                self._send_json(405, {"success": False,
                                      "message": "Method not allowed"})
        elif self.command in ("POST", "PATCH") and subpath:
            self._create_job(path, subpath, body)
        else:
            self._send_json(404, {"success": False, "message": "Not found"})

    def _create_job(self, path: str, subpath: str, body: ParsedBody) -> None:
        """A job-creating request, answered as its `_mock` object says."""
        state = self.server.state
        if body.json_error:
            self._send_json(400, {"success": False,
                                  "message": "Invalid JSON body"})
            return
        try:
            present, raw_mock = body.mock_object()
            if not present:
                raw_mock = state.get_config().get("send_default")
            spec = MockSpec.parse(raw_mock)
        except MockError as error:
            self._send_json(400, {"success": False,
                                  "message": f"mock: {error}"})
            return

        send = spec.send
        count = state.count_send(spec.key)
        if spec.send_times is not None and count > spec.send_times:
            send = "ok"
        if spec.delay:
            time.sleep(spec.delay)

        if send == "ok":
            self._accept(path, subpath, spec)
        elif send == "reject":
            self._send_json(spec.status or 400, {
                "success": False,
                "message": spec.message or DEFAULT_REJECT_MESSAGE})
        elif send == "success_false":
            self._send_json(200, {
                "success": False,
                "message": spec.message or DEFAULT_REJECT_MESSAGE})
        elif send == "error":
            self._send_json(spec.status or 500, {
                "success": False,
                "message": spec.message or "Internal error"})
        elif send == "429":
            self._send_json(429, TOO_MANY_REQUESTS,
                            headers={"Retry-After": spec.retry_after})
        elif send == "malformed":
            self._send_raw(200, MALFORMED_SEND)
        elif send == "no_job_id":
            self._send_json(200, {"success": True, "message": "done",
                                  "appointment_id": "a1"})
        elif send == "raw":
            self._send_raw(spec.status or 200,
                           raw_body(spec.body, spec.body_b64),
                           spec.content_type, dict(spec.headers))
        elif send == "huge":
            self._send_stream(200, spec.size, huge_body(spec.size))
        elif send == "redirect":
            self._send_redirect(spec.status or 302, spec.location)
        elif send == "hang":
            self._hang()
        elif send == "reset":
            self._reset()

    def _accept(self, path: str, subpath: str, spec: MockSpec) -> None:
        """Create the job and answer with its job_id."""
        state = self.server.state
        operation = resolve_operation(self.command, subpath)
        job = state.create_job(self.command, path, operation, spec,
                               self.headers.get("access_token", ""))
        state.set_entry(self._entry, job_id=job.job_id)
        id_field = f"{operation.resource}_id"
        if spec.job_id_as == "data":
            answer: dict[str, Any] = {
                "success": True,
                "data": {id_field: job.resource_id, "job_id": job.job_id},
            }
        else:
            label = operation.resource.replace("_", " ").capitalize()
            answer = {
                "success": True,
                "message": f"{label} {operation.verb} request accepted. "
                           f"{ACCEPTED_SUFFIX}",
                id_field: job.resource_id,
                "job_id": (int(job.job_id) if spec.job_id_as == "number"
                           else job.job_id),
            }
        self._send_json(200, answer)

    def _poll(self, query: dict) -> None:
        """GET /v1/webhook-events: the job's event once it has finished."""
        state = self.server.state
        job_id = query.get("job_id", [None])[0]
        state.set_entry(self._entry, job_id=job_id)
        fault = state.take_poll_fault(job_id)
        if fault is not None:
            kind, spec = fault
            if kind == "500":
                self._send_json(500, INTERNAL_ERROR)
            elif kind == "429":
                retry_after = spec.poll_retry_after if spec else "1"
                self._send_json(429, TOO_MANY_REQUESTS,
                                headers={"Retry-After": retry_after})
            elif kind == "malformed":
                self._send_raw(200, MALFORMED_POLL)
            elif kind == "hang":
                self._hang()
            elif kind == "reset":
                self._reset()
            elif spec is None:      # refused by merge_config; be safe
                self._send_json(500, INTERNAL_ERROR)
            elif kind == "raw":
                self._send_raw(spec.poll_status or 200,
                               raw_body(spec.poll_body, spec.poll_body_b64),
                               spec.poll_content_type,
                               dict(spec.poll_headers))
            elif kind == "huge":
                self._send_stream(200, spec.poll_size,
                                  huge_body(spec.poll_size))
            elif kind == "redirect":
                self._send_redirect(spec.poll_status or 302,
                                    spec.poll_location)
            return

        events = state.poll(job_id)
        for name in ("event_type", "delivery_status"):
            wanted = query.get(name, [None])[0]
            if wanted:
                events = [e for e in events if e[name] == wanted]
        reverse = query.get("sort", ["-created_at"])[0] != "created_at"
        events.sort(key=lambda e: (e["created_at"],
                                   int(e["event_id"][4:])), reverse=reverse)
        page = _query_int(query, "page", 1, 1, 1 << 30)
        page_size = _query_int(query, "page_size", 50, 1, 100)
        start = (page - 1) * page_size
        self._send_json(200, {
            "success": True,
            "webhook_events": events[start:start + page_size],
            "pagination": {
                "current_page": page,
                "total_pages": max(1, math.ceil(len(events) / page_size)),
                "total_count": len(events),
                "page_size": page_size,
            },
        })


def _query_int(query: dict, name: str, default: int, low: int,
               high: int) -> int:
    """An integer query parameter, clamped to [low, high]."""
    try:
        value = int(query.get(name, [default])[0])
    except ValueError:
        value = default
    return min(max(value, low), high)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def write_port_file(path: str, port: int) -> None:
    """Write the port atomically: a temporary file, then a rename."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="ascii") as out:
        out.write(f"{port}\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Local mock of the Cobalt EHR HTTP API.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0,
                        help="port to bind; 0 picks a free one")
    parser.add_argument("--port-file",
                        help="write the port chosen here, once listening")
    parser.add_argument("--log",
                        help="append a line per request to this file")
    parser.add_argument("--tls-cert", metavar="FILE",
                        help="serve HTTPS only, with this PEM certificate "
                             "(chain); needs --tls-key")
    parser.add_argument("--tls-key", metavar="FILE",
                        help="the PEM private key for --tls-cert")
    args = parser.parse_args(argv)

    tls_context = None
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_cert is not None:
        try:
            tls_context = make_tls_context(args.tls_cert, args.tls_key)
        except (OSError, ValueError) as error:
            parser.error(f"cannot load the TLS certificate or key: {error}")

    log_file = open(args.log, "a", encoding="utf-8") if args.log else None
    server = MockServer((args.host, args.port), log_file, tls_context)
    port = server.server_address[1]
    if args.port_file:
        write_port_file(args.port_file, port)

    def stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever() to return, and that runs in
        # this (the main) thread, so ask from another thread.
        if not server.stopping.is_set():
            server.stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.stopping.set()       # releases any "hang" handlers
        server.server_close()
        if log_file is not None:
            log_file.close()
    # Handler threads are daemons: connections still open do not delay us.
    return 0


if __name__ == "__main__":
    sys.exit(main())

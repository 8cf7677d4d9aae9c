#!/usr/bin/env python3
"""Write the seed corpus of fuzz_answers.c into corpus/ (next to this file).

Every seed is a 2-byte header, an optional Retry-After value, then the
response body (see fuzz_answers.c):

    byte 0  bits 0-4 status index (STATUS below), bit 5 response_too_large,
            bit 6 transport failure, bit 7 maybe_delivered
    byte 1  bits 0-5 length of the Retry-After value, bits 6-7 clock index
    then    the Retry-After value, then the body

The output is deterministic; run it again after changing a seed and commit
corpus/.  Every seed must pass ("make regress"): inputs that make src/
crash belong in findings/, not here.
"""

import os
import sys

# Index of each status in fuzz_answers.c's status_table[].
STATUS = {
    200: 0, 201: 1, 202: 2, 204: 3, 299: 4, 429: 5, 400: 6, 401: 7,
    403: 8, 404: 9, 409: 10, 422: 11, 500: 12, 502: 13, 503: 14, 504: 15,
    0: 16, 100: 17, 199: 18, 300: 19, 301: 20, 302: 21, 304: 22, 405: 23,
    408: 24, 410: 25, 413: 26, 418: 27, 499: 28, 599: 29, -1: 30, 1000: 31,
}
TOO_LARGE, TRANSPORT, MAYBE_DELIVERED = 0x20, 0x40, 0x80
# Index of each clock in now_table[].
NOW_1994, NOW_EPOCH, NOW_2023, NOW_9999 = 0, 1, 2, 3


def seed(body, status=200, flags=0, retry_after=b"", now=NOW_1994):
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(retry_after, str):
        retry_after = retry_after.encode("ascii")
    assert len(retry_after) < 64
    return bytes([STATUS[status] | flags, len(retry_after) | (now << 6)]) + \
        retry_after + body


def nested(depth):
    """{"a":[[...]]} with "depth" levels in all."""
    return '{"a":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


def events(*evs):
    return '{"webhook_events":[' + ",".join(evs) + "]}"


SEEDS = {
    # ---- answers to job-creating requests
    "send-job-id-string": seed('{"success":true,"job_id":"a1b2c3"}'),
    "send-job-id-number": seed('{"success":true,"job_id":12345}'),
    "send-job-id-under-data": seed(
        '{"success":true,"data":{"job_id":"j-77","status":"queued"}}', 201),
    "send-job-id-double": seed('{"job_id":1.5e3}', 202),
    "send-job-id-null-data-id": seed('{"job_id":null,"data":{"job_id":"d1"}}'),
    "send-job-id-empty": seed('{"success":true,"job_id":""}'),
    "send-success-false": seed(
        '{"success":false,"message":"Patient not found","job_id":"j9"}'),
    "send-completed-no-job-id": seed('{"success":true,"data":{"id":5}}'),
    "send-204-no-body": seed(b"", 204),
    "send-400-message": seed(
        '{"success":false,"message":"Invalid date",'
        '"errors":{"date":["must be in the future"]}}', 400),
    "send-401-unauthenticated": seed('{"message":"Unauthenticated."}', 401),
    "send-422-unicode-message": seed(
        '{"message":"Le champ \\u00e9t\\u00e9 est requis \u2014 \u2713"}', 422),
    "send-500-html": seed(
        "<html><body><h1>500 Internal Server Error</h1></body></html>", 500),
    "send-429-retry-seconds": seed(
        '{"message":"Too Many Attempts."}', 429, retry_after="120"),
    "send-429-retry-date": seed(
        b"", 429, retry_after="Sun, 06 Nov 1994 08:49:37 GMT", now=NOW_1994),
    "send-429-retry-far-future": seed(
        b"", 429, retry_after="Fri, 31 Dec 9999 23:59:59 GMT", now=NOW_EPOCH),
    "send-429-retry-garbage": seed(b"{}", 429, retry_after="soon"),
    "send-timeout-maybe-delivered": seed(b"", 0, TRANSPORT | MAYBE_DELIVERED),
    "send-connect-failed": seed(b"", 0, TRANSPORT),
    "send-too-large-partial": seed(b'{"job_id":"x","pad":"', 200, TOO_LARGE),

    # ---- answers to GET /webhook-events?job_id=...
    "poll-empty": seed('{"webhook_events":[]}'),
    "poll-one-created": seed(events(
        '{"event_id":"e1","event_type":"appointment.created",'
        '"created_at":"2024-05-01T10:00:00Z","data":{"appointment_id":42}}')),
    "poll-several-created-at": seed(events(
        '{"event_id":"e3","event_type":"appointment.updated",'
        '"created_at":"2024-05-01T10:02:00Z","data":{"n":3}}',
        '{"event_id":"e2","event_type":"appointment.failed",'
        '"created_at":"2024-05-01T10:01:00Z","data":{"failure_reason":"late"}}',
        '{"event_id":"e1","event_type":"appointment.created",'
        '"created_at":"2024-05-01T10:00:00Z","data":{"n":1}}')),
    "poll-several-some-without-created-at": seed(events(
        '{"event_type":"note.created","data":null}',
        '{"event_type":"note.updated","created_at":"2024-01-02"}',
        '{"event_type":"note.created","created_at":5,"data":"text"}')),
    "poll-failed-reasons": seed(events(
        '{"event_id":"f1","event_type":"appointment.failed","data":{'
        '"failure_reason":"Slot taken","reasons":['
        '{"code":409,"description":"conflict"},'
        '{"code":"E2","description":"second"},'
        '{"description":"only a description"},{"code":"only_code"},'
        '{"code":""},"not an object",{"code":1.5,"description":7}]}}')),
    "poll-upload-failed-no-reason": seed(events(
        '{"event_type":"document.upload_failed","data":{}}')),
    "poll-failed-no-data": seed(events('{"event_type":"appointment.failed"}')),
    "poll-failed-long-ascii-type": seed(events(
        '{"event_type":"' + "x" * 560 + '.failed","data":{"reasons":[]}}')),
    "poll-data-array": seed(events(
        '{"event_type":"file.uploaded","data":[1,-2,3.25,"three",null,true,false,{},[]]}')),
    "poll-429-retry": seed(b"", 429, retry_after="30"),
    "poll-500": seed('{"message":"Server Error"}', 500),
    "poll-many-events": seed(events(*[
        '{"event_id":"e%d","event_type":"t.created","created_at":"2024-01-01T00:00:%02d"}'
        % (i, 59 - i) for i in range(40)])),

    # ---- hostile answers
    "hostile-deep-nesting-63": seed(nested(63)),
    "hostile-deep-nesting-65": seed(nested(65)),
    "hostile-nan": seed('{"job_id":NaN}'),
    "hostile-minus-infinity": seed('{"a":-Infinity}'),
    "hostile-one-dot": seed('{"a":1.}'),
    "hostile-big-integer": seed('{"job_id":123456789012345678901234}'),
    "hostile-int64-max": seed('{"job_id":9223372036854775807}'),
    "hostile-huge-exponent": seed('{"job_id":"j","a":1e400,"b":-1E-400}'),
    "hostile-nul-escape": seed('{"job_id":"a\\u0000b"}'),
    "hostile-escaped-backslash-u0000": seed('{"job_id":"j","p":"C:\\\\u0000"}'),
    "hostile-raw-nul-byte": seed(b'{"job_id":"a\x00b"}'),
    "hostile-invalid-utf8": seed(b'{"job_id":"\xff\xfe"}'),
    "hostile-overlong-utf8": seed(b'{"job_id":"\xc0\xaf"}'),
    "hostile-utf8-surrogate": seed(events(
        b'{"event_type":"x\xed\xa0\x80.created"}'.decode("latin-1")).encode("latin-1")),
    "hostile-lone-surrogate-escape": seed('{"job_id":"\\ud800"}'),
    "hostile-surrogate-pair": seed('{"job_id":"\\ud83d\\ude00"}'),
    "hostile-truncated": seed('{"webhook_events":[{"event_type":"appointment.cr'),
    "hostile-trailing-garbage": seed('{"job_id":"a"} x'),
    "hostile-duplicate-keys": seed('{"job_id":"first","job_id":"second","success":true}'),
    "hostile-webhook-events-object": seed('{"webhook_events":{"event_type":"x"}}'),
    "hostile-job-id-object": seed('{"job_id":{"id":"x"}}'),
    "hostile-comment": seed('{/*"*/"job_id":"\\u0000"}'),
    "hostile-single-quotes": seed("{'job_id':'x'}"),
    "hostile-event-type-number": seed(events('{"event_type":5}')),
    "hostile-event-type-empty": seed(events('{"event_type":""}')),
    "hostile-control-chars": seed(b'{"job_id":"a\x01b\tc","m":"\x1f"}'),
    "hostile-top-level-array": seed('[{"job_id":"x"}]'),
    "hostile-bom": seed(b'\xef\xbb\xbf{"job_id":"x"}'),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        os.remove(os.path.join(out, name))
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("%d seeds written to %s" % (len(SEEDS), out), file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Self-test for test/mock_cobalt.py, the mock of the Cobalt EHR API.
#
# Starts the mock on a free port, exercises every documented behaviour with
# curl, checks the answers (grep, and /usr/bin/python3 for JSON), stops the
# mock and prints "N passed, N failed" as its last line.  Exits 1 if any
# check failed.  For HTTPS it makes a throwaway CA and server certificate
# with the openssl CLI and starts a second mock with --tls-cert/--tls-key.
# Every wait is bounded (curl --max-time, timeouts in the helper clients).
#
# Usage: test/mock_cobalt_selftest.sh [-v]    (-v: show passing checks too)

set -u

HERE=$(cd "$(dirname "$0")" && pwd)
MOCK="$HERE/mock_cobalt.py"
PY=/usr/bin/python3
VERBOSE=0
[ "${1:-}" = "-v" ] && VERBOSE=1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mock_cobalt_selftest.XXXXXX")
PASS=0
FAIL=0
MISSING_LENGTH=0      # answers seen without a Content-Length header
PIDS=()               # every process this script started in the background
STATUS= TIME= CURL_RC=  # set by each request
CURL_EXTRA=()         # curl options for every request (--cacert for HTTPS)

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

pass() {
    PASS=$((PASS + 1))
    [ "$VERBOSE" = 1 ] && echo "ok - $1"
    return 0
}

fail() {
    FAIL=$((FAIL + 1))
    echo "not ok - $1"
    [ -n "${2:-}" ] && echo "#   $2"
    return 0
}

# check NAME COMMAND...: passes if COMMAND succeeds.
check() {
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name" "status=$STATUS body=$(head -c 300 "$TMP/body" 2>/dev/null)"; fi
}

# eq NAME ACTUAL EXPECTED
eq() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', expected '$3'"; fi
}

# jtrue EXPR [FILE]: the Python expression is true, with d = the JSON file.
jtrue() {
    "$PY" - "${2:-$TMP/body}" "$1" <<'EOF'
import json, re, sys
with open(sys.argv[1], encoding="utf-8") as f:
    d = json.load(f)
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
}

# jget EXPR [FILE]: print the value of the expression (strings unquoted).
jget() {
    "$PY" - "${2:-$TMP/body}" "$1" <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as f:
    d = json.load(f)
v = eval(sys.argv[2])
print(v if isinstance(v, str) else json.dumps(v))
EOF
}

# start_mock NAME [ARGS...]: start a mock instance, wait for its port file.
# Sets MOCK_PID and MOCK_PORT.
start_mock() {
    local name=$1
    shift
    "$PY" "$MOCK" --port 0 --port-file "$TMP/$name.port" "$@" \
        2>"$TMP/$name.stderr" &
    MOCK_PID=$!
    PIDS+=("$MOCK_PID")
    local i
    for i in $(seq 100); do
        [ -s "$TMP/$name.port" ] && break
        sleep 0.05
    done
    MOCK_PORT=$(cat "$TMP/$name.port" 2>/dev/null)
}

AUTH=(-H "client_id: ci_test_1" -H "client_secret: cs_test_1"
      -H "access_token: tok_1")
JSON_CT=(-H "Content-Type: application/json")

# call METHOD PATH [CURL ARGS...]: an authenticated request.  Sets STATUS,
# TIME and CURL_RC; the body is in $TMP/body and headers in $TMP/headers.
call() {
    raw_call "$1" "$2" "${AUTH[@]}" "${@:3}"
}

# raw_call METHOD PATH [CURL ARGS...]: as call, without credentials.
raw_call() {
    local method=$1 path=$2 out
    shift 2
    : >"$TMP/body"
    : >"$TMP/headers"
    # --max-time 30 bounds every request; a later --max-time overrides it.
    out=$(curl -sS --max-time 30 ${CURL_EXTRA[@]+"${CURL_EXTRA[@]}"} \
        -X "$method" -o "$TMP/body" -D "$TMP/headers" \
        -w '%{http_code} %{time_total}' "$@" "$BASE$path" 2>"$TMP/curl.err")
    CURL_RC=$?
    STATUS=${out%% *}
    TIME=${out##* }
    if [ "$CURL_RC" = 0 ] && [ "$STATUS" != 000 ] &&
        ! grep -qi '^content-length:' "$TMP/headers"; then
        MISSING_LENGTH=$((MISSING_LENGTH + 1))
        echo "# no Content-Length: $method $path"
    fi
}

# send PATH JSON: a job-creating POST with a JSON body.
send() {
    call POST "$1" "${JSON_CT[@]}" --data-binary "$2"
}

# poll JOB_ID
poll() {
    call GET "/v1/webhook-events?job_id=$1"
}

# events: the number of events in the last poll answer.
events() {
    jget 'len(d["webhook_events"])'
}

# header NAME VALUE: the last answer carried this header value.
header() {
    grep -qiE "^$1: $2"$'\r?$' "$TMP/headers"
}

ctl() {  # ctl METHOD PATH [CURL ARGS...]: a control request.
    raw_call "$@"
}

# same_body FILE: the last answer's body is exactly the bytes of FILE, and
# its Content-Length says so.
same_body() {
    cmp -s "$TMP/body" "$1" &&
        header Content-Length "$(stat -c %s "$1")"
}

# mock_refused: the last answer is a 400 refusing the _mock object.
mock_refused() {
    [ "$STATUS" = 400 ] && jtrue 'd["success"] is False and d["message"].startswith("mock: ")'
}

job_count() {
    ctl GET /_mock/jobs
    jget 'len(d)'
}

# ---------------------------------------------------------------------------
# Start
# ---------------------------------------------------------------------------

start_mock main --log "$TMP/main.log"
BASE="http://127.0.0.1:$MOCK_PORT"
MAIN_PID=$MOCK_PID

check "port file is digits and a newline" "$PY" -c \
    'import re, sys; sys.exit(not re.fullmatch(r"\d+\n", open(sys.argv[1]).read()))' \
    "$TMP/main.port"
check "no temporary port file left" test -z "$(ls "$TMP" | grep 'port\.tmp')"

ctl GET /_mock/health
eq "health answers 200" "$STATUS" 200
eq "health says ok" "$(cat "$TMP/body")" ok

# ---------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------

raw_call GET "/v1/webhook-events?job_id=1"
eq "no credentials: 401" "$STATUS" 401
check "401 body" jtrue 'd == {"success": False, "message": "Missing or invalid credentials"}'

for missing in client_id client_secret access_token; do
    args=()
    for h in client_id client_secret access_token; do
        [ "$h" = "$missing" ] || args+=(-H "$h: x")
    done
    raw_call POST /v1/appointments "${args[@]}" "${JSON_CT[@]}" -d '{}'
    eq "missing $missing: 401" "$STATUS" 401
done

raw_call POST /v1/appointments -H "client_id: a" -H "client_secret: b" \
    -H "access_token;" "${JSON_CT[@]}" -d '{}'
eq "empty access_token: 401" "$STATUS" 401

ctl POST /_mock/config "${JSON_CT[@]}" \
    -d '{"expect_client_id": "ci_good", "expect_client_secret": "cs_good"}'
eq "config accepts expect_client_id" "$STATUS" 200
call POST /v1/appointments "${JSON_CT[@]}" -d '{}'
eq "wrong client_id: 401" "$STATUS" 401
raw_call POST /v1/appointments -H "client_id: ci_good" \
    -H "client_secret: cs_good" -H "access_token: t" "${JSON_CT[@]}" -d '{}'
eq "expected client_id and secret: 200" "$STATUS" 200
ctl POST /_mock/config "${JSON_CT[@]}" \
    -d '{"expect_client_id": null, "expect_client_secret": null}'
check "config key reset by null" jtrue 'd["expect_client_id"] is None'

ctl POST /_mock/config "${JSON_CT[@]}" -d '{"sends_fail": "refuse"}'
eq "unknown config key: 400" "$STATUS" 400

ctl POST /_mock/reset
eq "reset answers 200" "$STATUS" 200
eq "reset forgets jobs" "$(job_count)" 0

# ---------------------------------------------------------------------------
# The default job: accepted, succeeds at the first poll
# ---------------------------------------------------------------------------

send /v1/appointments '{"mrn": "MRN1", "datetime": "2026-12-01T10:00:00-05:00"}'
eq "create appointment: 200" "$STATUS" 200
check "answer shape" jtrue 'd["success"] is True and d["message"].endswith("A webhook event will be sent upon completion.") and isinstance(d["appointment_id"], str) and d["appointment_id"]'
check "job_id is a string of digits" jtrue 'isinstance(d["job_id"], str) and d["job_id"].isdigit()'
# 10001 went to the one accepted request of the authentication checks.
eq "job ids count up from 10001" "$(jget 'd["job_id"]')" 10002
JOB=$(jget 'd["job_id"]')
APPT=$(jget 'd["appointment_id"]')

send /v1/appointments '{"mrn": "MRN1"}'
JOB2=$(jget 'd["job_id"]')
check "job ids are unique" test "$JOB" != "$JOB2"

poll "$JOB"
eq "poll: 200" "$STATUS" 200
check "poll: one event" jtrue 'd["success"] is True and len(d["webhook_events"]) == 1'
check "event fields" jtrue '(lambda e: e["event_type"] == "appointment.created" and e["delivery_status"] == "success" and e["job_id"] == "'"$JOB"'" and e["data"] == {"appointment_id": "'"$APPT"'", "status": "success"} and re.fullmatch(r"evt_\d+", e["event_id"]) and re.fullmatch(r"ref_\d+", e["access_token_reference_id"]) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["created_at"]))(d["webhook_events"][0])'
check "pagination" jtrue 'd["pagination"] == {"current_page": 1, "total_pages": 1, "total_count": 1, "page_size": 50}'
EVENT_ID=$(jget 'd["webhook_events"][0]["event_id"]')
poll "$JOB"
eq "the event is stable across polls" "$(jget 'd["webhook_events"][0]["event_id"]')" "$EVENT_ID"

poll 99999999
eq "unknown job: 200" "$STATUS" 200
check "unknown job: empty list" jtrue 'd["webhook_events"] == [] and d["pagination"]["total_count"] == 0'

call GET "/v1/webhook-events?event_type=appointment.created"
check "event list without job_id, filtered by type" jtrue 'len(d["webhook_events"]) == 1 and d["webhook_events"][0]["job_id"] == "'"$JOB"'"'

# ---------------------------------------------------------------------------
# Event types per endpoint, success and failure
# ---------------------------------------------------------------------------

while read -r method path ok_type fail_type id_field; do
    for outcome in success failure; do
        call "$method" "$path" "${JSON_CT[@]}" \
            -d '{"x": 1, "_mock": {"outcome": "'"$outcome"'"}}'
        if [ "$STATUS" != 200 ]; then
            fail "$method $path ($outcome): 200" "got $STATUS"
            continue
        fi
        job=$(jget 'd["job_id"]')
        rid=$(jget "d['$id_field']")
        poll "$job"
        if [ "$outcome" = success ]; then
            check "$method $path: $ok_type" jtrue \
                '(lambda e: e["event_type"] == "'"$ok_type"'" and e["data"] == {"'"$id_field"'": "'"$rid"'", "status": "success"})(d["webhook_events"][0])'
        else
            check "$method $path: $fail_type" jtrue \
                '(lambda e: e["event_type"] == "'"$fail_type"'" and e["data"] == {"failure_reason": "Slot is no longer available", "reasons": [{"code": "E1", "description": "Slot is no longer available"}]})(d["webhook_events"][0])'
        fi
    done
done <<'EOF'
POST /v1/appointments appointment.created appointment.failed appointment_id
PATCH /v1/appointments/apt123 appointment.updated appointment.failed appointment_id
POST /v1/patients patient.created patient.failed patient_id
POST /v1/notes note.uploaded note.failed note_id
POST /v1/tasks task.created task.failed task_id
POST /v1/messages message.created message.failed message_id
POST /v1/patients/MRN42/insurances patient.insurance.added patient.insurance.failed insurance_id
POST /v1/referring-providers referring_provider.created referring_provider.failed referring_provider_id
POST /v1/telephone-encounters telephone_encounter.created telephone_encounter.failed telephone_encounter_id
POST /v1/widgets/w1/gizmo-boxes gizmo_box.created gizmo_box.failed gizmo_box_id
PATCH /v1/foo-bars/x1 foo_bar.updated foo_bar.failed foo_bar_id
POST /v1/categories category.created category.failed category_id
EOF

call PATCH /v1/appointments/apt123 "${JSON_CT[@]}" -d '{"status": "cancelled"}'
eq "PATCH appointment answers the path's id" "$(jget 'd["appointment_id"]')" apt123

# ---------------------------------------------------------------------------
# Outcome scripting
# ---------------------------------------------------------------------------

send /v1/appointments '{"_mock": {"outcome": "failure", "failure_reason": "Provider unavailable"}}'
poll "$(jget 'd["job_id"]')"
check "failure_reason" jtrue 'd["webhook_events"][0]["data"]["failure_reason"] == "Provider unavailable" and d["webhook_events"][0]["data"]["reasons"][0]["description"] == "Provider unavailable"'

send /v1/notes '{"_mock": {"event_type": "note.created"}}'
poll "$(jget 'd["job_id"]')"
check "event_type override" jtrue 'd["webhook_events"][0]["event_type"] == "note.created"'

send /v1/appointments '{"_mock": {"outcome": "never"}}'
job=$(jget 'd["job_id"]')
poll "$job"; n1=$(events); poll "$job"; n2=$(events); poll "$job"; n3=$(events)
eq "outcome never: no event after 3 polls" "$n1$n2$n3" 000
ctl GET /_mock/jobs
check "outcome never: job not finished, 3 polls" jtrue 'd["'"$job"'"]["finished"] is False and d["'"$job"'"]["polls"] == 3 and d["'"$job"'"]["outcome"] == "never"'

send /v1/appointments '{"_mock": {"after_polls": 3}}'
job=$(jget 'd["job_id"]')
poll "$job"; n1=$(events); poll "$job"; n2=$(events); poll "$job"; n3=$(events)
eq "after_polls 3: event at the third poll" "$n1$n2$n3" 001

send /v1/appointments '{"_mock": {"after_seconds": 1}}'
job=$(jget 'd["job_id"]')
poll "$job"; n1=$(events)
sleep 1.1
poll "$job"; n2=$(events)
eq "after_seconds 1: event after a second" "$n1$n2" 01

send /v1/appointments '{"_mock": {"after_polls": 3, "after_seconds": 0.5}}'
job=$(jget 'd["job_id"]')
poll "$job"; n1=$(events)
sleep 0.6
poll "$job"; n2=$(events); poll "$job"; n3=$(events)
eq "after_polls and after_seconds must both hold" "$n1$n2$n3" 001

# ---------------------------------------------------------------------------
# Faults of the job-creating request
# ---------------------------------------------------------------------------

jobs_before=$(job_count)

send /v1/tasks '{"_mock": {"send": "reject"}}'
eq "reject: 400" "$STATUS" 400
check "reject: body" jtrue 'd == {"success": False, "message": "Missing required field: subject"}'

send /v1/tasks '{"_mock": {"send": "reject", "status": 404, "message": "Patient not found"}}'
eq "reject with status 404" "$STATUS" 404
check "reject with message" jtrue 'd["message"] == "Patient not found" and d["success"] is False'

send /v1/tasks '{"_mock": {"send": "success_false"}}'
eq "success_false: 200" "$STATUS" 200
check "success_false: body" jtrue 'd["success"] is False and d["message"] == "Missing required field: subject"'

send /v1/tasks '{"_mock": {"send": "error"}}'
eq "error: 500" "$STATUS" 500
check "error: body" jtrue 'd == {"success": False, "message": "Internal error"}'

send /v1/tasks '{"_mock": {"send": "error", "status": 503}}'
eq "error with status 503" "$STATUS" 503

send /v1/tasks '{"_mock": {"send": "429"}}'
eq "429: status" "$STATUS" 429
check "429: Retry-After 1" header Retry-After 1
check "429: JSON body" jtrue 'd["success"] is False'

send /v1/tasks '{"_mock": {"send": "429", "retry_after": "7"}}'
check "429: Retry-After from retry_after" header Retry-After 7

send /v1/tasks '{"_mock": {"send": "malformed"}}'
eq "malformed: 200" "$STATUS" 200
eq "malformed: truncated JSON" "$(cat "$TMP/body")" '{"success": true, "job_id": '

send /v1/tasks '{"_mock": {"send": "no_job_id"}}'
eq "no_job_id: 200" "$STATUS" 200
check "no_job_id: body" jtrue 'd == {"success": True, "message": "done", "appointment_id": "a1"}'

call POST /v1/tasks "${JSON_CT[@]}" --max-time 1 -d '{"_mock": {"send": "hang"}}'
eq "hang: no answer within 1 s (curl timeout)" "$CURL_RC" 28
ctl GET /_mock/health
eq "server still answers after a hang" "$STATUS" 200

call POST /v1/tasks "${JSON_CT[@]}" --max-time 5 -d '{"_mock": {"send": "reset"}}'
eq "reset: connection reset by peer" "$CURL_RC" 56
check "reset: curl says reset" grep -qi "reset" "$TMP/curl.err"

eq "faulted sends create no job" "$(job_count)" "$jobs_before"

send /v1/tasks '{"_mock": {"send": "error", "send_times": 2, "key": "k1"}}'
s1=$STATUS
send /v1/tasks '{"other": 2, "_mock": {"send": "error", "send_times": 2, "key": "k1"}}'
s2=$STATUS
send /v1/tasks '{"_mock": {"send": "error", "send_times": 2, "key": "k1"}}'
eq "send_times 2 with key: 500 500 200" "$s1 $s2 $STATUS" "500 500 200"
check "send_times: then a real job" jtrue 'd["job_id"].isdigit()'

send /v1/tasks '{"_mock": {"send": "429", "send_times": 1, "retry_after": "3"}}'
s1=$STATUS
header Retry-After 3 && r1=yes || r1=no
send /v1/tasks '{"_mock": {"send": "429", "send_times": 1, "retry_after": "3"}}'
eq "send_times without key: keyed by the _mock text" "$s1 $r1 $STATUS" "429 yes 200"

send /v1/tasks '{"_mock": {"delay": 0.5}}'
check "delay 0.5: answer takes >= 0.5 s" "$PY" -c "import sys; sys.exit(not $TIME >= 0.5)"
eq "delay: then 200" "$STATUS" 200

send /v1/appointments '{"_mock": {"job_id_as": "number"}}'
check "job_id_as number" jtrue 'type(d["job_id"]) is int and d["success"] is True'
poll "$(jget 'd["job_id"]')"
check "numeric job id polls as a string" jtrue 'd["webhook_events"][0]["job_id"] == str(d["webhook_events"][0]["job_id"])'

send /v1/appointments '{"_mock": {"job_id_as": "data"}}'
check "job_id_as data" jtrue 'd["success"] is True and "job_id" not in d and isinstance(d["data"]["job_id"], str) and d["data"]["appointment_id"]'
poll "$(jget 'd["data"]["job_id"]')"
eq "job_id_as data: job polls" "$(events)" 1

call POST /v1/appointments "${JSON_CT[@]}" -d '{"mrn": '
eq "invalid JSON body: 400" "$STATUS" 400
call POST /v1/appointments -d '{"_mock": {"send": "reject", "status": 409}}'
eq "JSON body without a JSON content type still read" "$STATUS" 409
call POST /v1/appointments -d 'mrn=MRN5' --data-urlencode '_mock={"send": "reject", "status": 418}'
eq "urlencoded form: _mock field honoured" "$STATUS" 418
send /v1/appointments '{"_mock": {"outcom": "failure"}}'
eq "unknown _mock key: 400" "$STATUS" 400
check "unknown _mock key: message" jtrue 'd["message"].startswith("mock:")'
send /v1/appointments '{"_mock": {"send": "explode"}}'
eq "bad send value: 400" "$STATUS" 400

# ---------------------------------------------------------------------------
# Faults of polls
# ---------------------------------------------------------------------------

send /v1/appointments '{"_mock": {"poll": "500", "poll_times": 2}}'
job=$(jget 'd["job_id"]')
poll "$job"; s1=$STATUS; poll "$job"; s2=$STATUS; poll "$job"
eq "poll 500 twice, then normal" "$s1 $s2 $STATUS $(events)" "500 500 200 1"
ctl GET /_mock/jobs
check "faulty polls are not counted as polls" jtrue 'd["'"$job"'"]["polls"] == 1 and d["'"$job"'"]["poll_faults"] == 2'

send /v1/appointments '{"_mock": {"poll": "500", "poll_times": 1, "after_polls": 2}}'
job=$(jget 'd["job_id"]')
poll "$job"; s1=$STATUS; poll "$job"; n2=$(events); poll "$job"
eq "faulty polls don't count towards after_polls" "$s1 $n2 $(events)" "500 0 1"

send /v1/appointments '{"_mock": {"poll": "500"}}'
job=$(jget 'd["job_id"]')
poll "$job"; s1=$STATUS; poll "$job"; s2=$STATUS; poll "$job"
eq "poll fault without poll_times: always" "$s1 $s2 $STATUS" "500 500 500"
check "poll 500: JSON body" jtrue 'd["success"] is False'

send /v1/appointments '{"_mock": {"poll": "429", "poll_times": 1, "poll_retry_after": "5"}}'
job=$(jget 'd["job_id"]')
poll "$job"
eq "poll 429" "$STATUS" 429
check "poll 429: Retry-After 5" header Retry-After 5
poll "$job"
eq "poll 429 once, then the event" "$STATUS $(events)" "200 1"

send /v1/appointments '{"_mock": {"poll": "429", "poll_times": 1}}'
poll "$(jget 'd["job_id"]')"
check "poll 429: default Retry-After 1" header Retry-After 1

send /v1/appointments '{"_mock": {"poll": "malformed", "poll_times": 1}}'
job=$(jget 'd["job_id"]')
poll "$job"
eq "poll malformed: 200" "$STATUS" 200
check "poll malformed: not JSON" bash -c '! '"$PY"' -c "import json,sys; json.load(open(sys.argv[1]))" "$1" 2>/dev/null' _ "$TMP/body"
poll "$job"
eq "poll malformed once, then the event" "$(events)" 1

send /v1/appointments '{"_mock": {"poll": "hang", "poll_times": 1}}'
job=$(jget 'd["job_id"]')
call GET "/v1/webhook-events?job_id=$job" --max-time 1
eq "poll hang: curl timeout" "$CURL_RC" 28
poll "$job"
eq "poll hang once, then the event" "$(events)" 1

send /v1/appointments '{"_mock": {"poll": "reset", "poll_times": 1}}'
job=$(jget 'd["job_id"]')
poll "$job"
eq "poll reset: connection reset" "$CURL_RC" 56
poll "$job"
eq "poll reset once, then the event" "$(events)" 1

send /v1/appointments '{}'
job=$(jget 'd["job_id"]')
ctl POST /_mock/config "${JSON_CT[@]}" -d '{"polls_fail": "500"}'
poll "$job"
eq "config polls_fail 500" "$STATUS" 500
ctl POST /_mock/config "${JSON_CT[@]}" -d '{"polls_fail": "429"}'
poll "$job"
eq "config polls_fail 429" "$STATUS" 429
check "config polls_fail 429: Retry-After" header Retry-After 1
ctl POST /_mock/config "${JSON_CT[@]}" -d '{"polls_fail": null}'
poll "$job"
eq "config polls_fail null: normal again" "$STATUS $(events)" "200 1"

ctl POST /_mock/config "${JSON_CT[@]}" -d '{"send_default": {"send": "reject", "status": 422}}'
send /v1/appointments '{"mrn": "1"}'
eq "send_default applies to requests without _mock" "$STATUS" 422
send /v1/appointments '{"_mock": {}}'
eq "send_default: an explicit _mock wins" "$STATUS" 200
ctl POST /_mock/config "${JSON_CT[@]}" -d '{"send_default": {"bogus": 1}}'
eq "config: invalid send_default rejected" "$STATUS" 400

# ---------------------------------------------------------------------------
# Documents (multipart/form-data), chunked bodies, large bodies
# ---------------------------------------------------------------------------

ctl POST /_mock/config "${JSON_CT[@]}" -d '{"send_default": null}'
printf '%%PDF-1.4 small test file\n' >"$TMP/small.pdf"
ctl GET /_mock/requests
last_seq=$(jget 'd[-1]["seq"]')
call POST /v1/documents -F "document=@$TMP/small.pdf;type=application/pdf" \
    -F folder_name=Labs -F patient_mrn=MRN7 \
    --form-string '_mock={"after_polls": 2}'
eq "document upload: 200" "$STATUS" 200
job=$(jget 'd["job_id"]')
doc=$(jget 'd["document_id"]')
poll "$job"; n1=$(events); poll "$job"
eq "document: _mock from the form field (after_polls 2)" "$n1$(events)" 01
check "document.uploaded" jtrue 'd["webhook_events"][0]["event_type"] == "document.uploaded" and d["webhook_events"][0]["data"]["document_id"] == "'"$doc"'"'
ctl GET "/_mock/requests?since=$last_seq"
sum=$(sha256sum "$TMP/small.pdf" | cut -d' ' -f1)
check "request log: multipart form fields" jtrue 'd[0]["form"]["folder_name"] == "Labs" and d[0]["form"]["patient_mrn"] == "MRN7" and d[0]["form"]["_mock"] == "{\"after_polls\": 2}" and d[0]["json"] is None and d[0]["content_type"].startswith("multipart/form-data")'
check "request log: file part" jtrue 'd[0]["form"]["document"] == {"filename": "small.pdf", "content_type": "application/pdf", "size": '"$(stat -c %s "$TMP/small.pdf")"', "sha256": "'"$sum"'"}'

head -c 40000000 /dev/urandom >"$TMP/big.bin"
sum=$(sha256sum "$TMP/big.bin" | cut -d' ' -f1)
ctl GET /_mock/requests
last_seq=$(jget 'd[-1]["seq"]')
call POST /v1/documents -F "document=@$TMP/big.bin" -F folder_name=Scans \
    --form-string '_mock={"outcome": "failure"}'
eq "40 MB document: 200" "$STATUS" 200
check "40 MB document: under 10 s" "$PY" -c "import sys; sys.exit(not $TIME < 10)"
poll "$(jget 'd["job_id"]')"
check "document.upload_failed" jtrue 'd["webhook_events"][0]["event_type"] == "document.upload_failed"'
ctl GET "/_mock/requests?since=$last_seq"
check "40 MB document: size and sha256 logged" jtrue 'd[0]["form"]["document"]["size"] == 40000000 and d[0]["form"]["document"]["sha256"] == "'"$sum"'" and d[0]["body_truncated"] is True'
rm -f "$TMP/big.bin"

printf '{"mrn": "MRN9", "_mock": {"outcome": "failure"}}' >"$TMP/chunked.json"
call POST /v1/appointments "${JSON_CT[@]}" -H "Transfer-Encoding: chunked" \
    --data-binary "@$TMP/chunked.json"
eq "chunked body: 200" "$STATUS" 200
poll "$(jget 'd["job_id"]')"
check "chunked body: _mock honoured" jtrue 'd["webhook_events"][0]["event_type"] == "appointment.failed"'

# ---------------------------------------------------------------------------
# Raw, huge and redirect answers, for sends and for polls
# ---------------------------------------------------------------------------

jobs_before=$(job_count)

send /v1/tasks '{"_mock": {"send": "raw"}}'
eq "raw: default status 200" "$STATUS" 200
: >"$TMP/expected"
check "raw: default body empty, Content-Length 0" same_body "$TMP/expected"
check "raw: default Content-Type application/json" header Content-Type application/json

send /v1/tasks '{"_mock": {"send": "raw", "status": 299, "body": "caf\u00e9 {not json", "content_type": "text/plain; charset=utf-8", "headers": {"X-Mock-One": "1", "Set-Cookie": "sid=abc; HttpOnly"}}}'
eq "raw: status 299" "$STATUS" 299
printf 'caf\303\251 {not json' >"$TMP/expected"
check "raw: body text sent as UTF-8, exact bytes and Content-Length" same_body "$TMP/expected"
check "raw: Content-Type from content_type" header Content-Type 'text/plain; charset=utf-8'
check "raw: extra header X-Mock-One" header X-Mock-One 1
check "raw: extra header Set-Cookie" header Set-Cookie 'sid=abc; HttpOnly'
check "raw: a single Content-Type" test "$(grep -ci '^content-type:' "$TMP/headers")" = 1
ctl GET /_mock/requests
check "request log: raw answer's status" jtrue 'd[-1]["status"] == 299 and d[-1]["job_id"] is None'

# Invalid UTF-8, NUL bytes, a truncated sequence: only body_b64 can say it.
printf '{"success": true, "job_id": "\377\376\000\303("}\000' >"$TMP/expected"
b64=$(base64 -w0 "$TMP/expected")
send /v1/tasks '{"_mock": {"send": "raw", "body_b64": "'"$b64"'"}}'
eq "raw body_b64: 200" "$STATUS" 200
check "raw body_b64: invalid UTF-8 and NULs, exact bytes" same_body "$TMP/expected"

send /v1/tasks '{"_mock": {"send": "raw", "body": "x", "content_type": null}}'
check "raw content_type null: no Content-Type" bash -c '! grep -qi "^content-type:" "$1"' _ "$TMP/headers"

send /v1/tasks '{"_mock": {"send": "raw", "status": 503, "body": "down", "send_times": 1, "key": "raw1"}}'
s1=$STATUS b1=$(cat "$TMP/body")
send /v1/tasks '{"_mock": {"send": "raw", "status": 503, "body": "down", "send_times": 1, "key": "raw1"}}'
eq "raw send_times 1: raw, then accepted" "$s1 $b1 $STATUS" "503 down 200"
check "raw send_times: then a real job" jtrue 'd["job_id"].isdigit()'

HUGE_FRAME='{"success":true,"pad":""}'
send /v1/tasks '{"_mock": {"send": "huge", "size": 1}}'
printf '{' >"$TMP/expected"
check "huge size 1: the first byte" same_body "$TMP/expected"
send /v1/tasks '{"_mock": {"send": "huge", "size": 25}}'
printf '%s' "$HUGE_FRAME" >"$TMP/expected"
check "huge size 25: the bare frame" same_body "$TMP/expected"
send /v1/tasks '{"_mock": {"send": "huge", "size": 1000000}}'
eq "huge: 200" "$STATUS" 200
check "huge 1000000: Content-Length and size" header Content-Length 1000000
eq "huge 1000000: bytes received" "$(stat -c %s "$TMP/body")" 1000000
check "huge 1000000: JSON padded with x" jtrue 'd == {"success": True, "pad": "x" * (1000000 - 25)}'
send /v1/tasks '{"_mock": {"send": "huge", "size": 67108864}}'
eq "huge 64 MiB (the maximum): 200" "$STATUS" 200
check "huge 64 MiB: Content-Length" header Content-Length 67108864
check "huge 64 MiB: exact bytes" "$PY" -c '
import sys
data = open(sys.argv[1], "rb").read()
n = 64 * 1024 * 1024
sys.exit(data != b"{\"success\":true,\"pad\":\"" + b"x" * (n - 25) + b"\"}")' "$TMP/body"
check "huge 64 MiB: under 10 s" "$PY" -c "import sys; sys.exit(not $TIME < 10)"
: >"$TMP/body"
send /v1/tasks '{"_mock": {"send": "huge", "size": 100, "send_times": 1, "key": "huge1"}}'
s1=$STATUS n1=$(stat -c %s "$TMP/body")
send /v1/tasks '{"_mock": {"send": "huge", "size": 100, "send_times": 1, "key": "huge1"}}'
eq "huge send_times 1: huge, then accepted" "$s1 $n1 $STATUS" "200 100 200"
check "huge send_times: then a real job" jtrue 'd["job_id"].isdigit()'

send /v1/tasks '{"_mock": {"send": "redirect", "location": "http://127.0.0.1:1/v1/tasks"}}'
eq "redirect: default status 302" "$STATUS" 302
check "redirect: Location" header Location 'http://127.0.0.1:1/v1/tasks'
check "redirect: JSON body" jtrue 'd == {"success": False, "message": "Redirected", "location": "http://127.0.0.1:1/v1/tasks"}'
check "redirect: Content-Length" header Content-Length "$(stat -c %s "$TMP/body")"
send /v1/tasks '{"_mock": {"send": "redirect", "status": 307, "location": "https://elsewhere.invalid/steal"}}'
eq "redirect: status 307" "$STATUS" 307
check "redirect 307: Location" header Location 'https://elsewhere.invalid/steal'
send /v1/tasks '{"_mock": {"send": "redirect", "location": "/v1/other", "send_times": 2, "key": "redir1"}}'
s1=$STATUS
send /v1/tasks '{"_mock": {"send": "redirect", "location": "/v1/other", "send_times": 2, "key": "redir1"}}'
s2=$STATUS
send /v1/tasks '{"_mock": {"send": "redirect", "location": "/v1/other", "send_times": 2, "key": "redir1"}}'
eq "redirect send_times 2: 302 302 200" "$s1 $s2 $STATUS" "302 302 200"
eq "raw, huge and redirect answers create no job" "$(job_count)" "$((jobs_before + 3))"

# Polls
printf 'not\000json \377' >"$TMP/expected"
b64=$(base64 -w0 "$TMP/expected")
send /v1/appointments '{"_mock": {"poll": "raw", "poll_times": 1, "poll_status": 202, "poll_body_b64": "'"$b64"'", "poll_headers": {"X-Poll": "p1"}, "poll_content_type": "text/html"}}'
job=$(jget 'd["job_id"]')
poll "$job"
eq "poll raw: poll_status 202" "$STATUS" 202
check "poll raw: poll_body_b64, exact bytes" same_body "$TMP/expected"
check "poll raw: poll_headers" header X-Poll p1
check "poll raw: poll_content_type" header Content-Type text/html
poll "$job"
eq "poll raw once (poll_times 1), then the event" "$STATUS $(events)" "200 1"

send /v1/appointments '{"_mock": {"poll": "raw", "poll_body": "{\"success\": true, \"webhook_events\": \"\u00ff\"}"}}'
job=$(jget 'd["job_id"]')
poll "$job"; s1=$STATUS
printf '{"success": true, "webhook_events": "\303\277"}' >"$TMP/expected"
check "poll raw: poll_body text as UTF-8" same_body "$TMP/expected"
poll "$job"
eq "poll raw without poll_times: always, default status 200" "$s1 $STATUS" "200 200"
check "poll raw: still the raw body" same_body "$TMP/expected"

send /v1/appointments '{"_mock": {"poll": "raw"}}'
poll "$(jget 'd["job_id"]')"
: >"$TMP/expected"
check "poll raw: default empty body, Content-Length 0" same_body "$TMP/expected"

send /v1/appointments '{"_mock": {"poll": "huge", "poll_size": 2000000, "poll_times": 2}}'
job=$(jget 'd["job_id"]')
poll "$job"; s1=$STATUS n1=$(stat -c %s "$TMP/body")
check "poll huge: Content-Length" header Content-Length 2000000
check "poll huge: JSON padded with x" jtrue 'd == {"success": True, "pad": "x" * (2000000 - 25)}'
poll "$job"; s2=$STATUS
poll "$job"
eq "poll huge twice (poll_times 2), then the event" "$s1 $n1 $s2 $STATUS $(events)" "200 2000000 200 200 1"
ctl GET /_mock/jobs
check "poll huge: faulty polls not counted as polls" jtrue 'd["'"$job"'"]["polls"] == 1 and d["'"$job"'"]["poll_faults"] == 2'

send /v1/appointments '{"_mock": {"poll": "redirect", "poll_location": "http://127.0.0.1:1/v1/webhook-events", "poll_times": 1}}'
job=$(jget 'd["job_id"]')
poll "$job"
eq "poll redirect: default 302" "$STATUS" 302
check "poll redirect: Location" header Location 'http://127.0.0.1:1/v1/webhook-events'
check "poll redirect: JSON body" jtrue 'd["location"] == "http://127.0.0.1:1/v1/webhook-events" and d["success"] is False'
poll "$job"
eq "poll redirect once, then the event" "$STATUS $(events)" "200 1"
send /v1/appointments '{"_mock": {"poll": "redirect", "poll_status": 308, "poll_location": "/elsewhere"}}'
poll "$(jget 'd["job_id"]')"
eq "poll redirect: poll_status 308" "$STATUS" 308
check "poll redirect 308: Location" header Location /elsewhere

# Specs the mock refuses, with 400 and a "mock: " message.
jobs_before=$(job_count)
while IFS= read -r spec; do
    [ -n "$spec" ] || continue
    send /v1/tasks '{"_mock": '"$spec"'}'
    check "refused with 400: $spec" mock_refused
done <<'EOF'
{"send": "raw", "body": "a", "body_b64": "YQ=="}
{"send": "raw", "body_b64": "not base64!"}
{"send": "raw", "body_b64": 12}
{"send": "raw", "body": {"a": 1}}
{"send": "raw", "headers": ["X-A", "1"]}
{"send": "raw", "headers": {"X-A\r\nX-Injected": "1"}}
{"send": "raw", "headers": {"X-A\n": "1"}}
{"send": "raw", "headers": {"X-A": "1\r\nX-Injected: 2"}}
{"send": "raw", "headers": {"X-A": "1\r"}}
{"send": "raw", "headers": {"X-A": 1}}
{"send": "raw", "headers": {"X A": "1"}}
{"send": "raw", "headers": {"": "1"}}
{"send": "raw", "headers": {"X-A": "\u20ac"}}
{"send": "raw", "headers": {"Content-Length": "5"}}
{"send": "raw", "headers": {"transfer-encoding": "chunked"}}
{"send": "raw", "headers": {"Content-Type": "text/plain"}}
{"send": "raw", "content_type": "text/plain\r\nX-Injected: 1"}
{"send": "raw", "status": 99}
{"send": "raw", "status": 1000}
{"send": "429", "retry_after": "1\r\nX-Injected: 1"}
{"send": "huge"}
{"send": "huge", "size": 0}
{"send": "huge", "size": 67108865}
{"send": "huge", "size": "big"}
{"send": "redirect"}
{"send": "redirect", "location": ""}
{"send": "redirect", "location": "http://a/\r\nX-Injected: 1"}
{"poll": "raw", "poll_body": "a", "poll_body_b64": "YQ=="}
{"poll": "raw", "poll_body_b64": "%%%"}
{"poll": "raw", "poll_headers": {"X-A": "1\nX-B: 2"}}
{"poll": "raw", "poll_headers": {"Content-Length": "1"}}
{"poll": "raw", "poll_status": 42}
{"poll": "raw", "poll_content_type": "a\nb"}
{"poll": "huge"}
{"poll": "huge", "poll_size": 0}
{"poll": "huge", "poll_size": 67108865}
{"poll": "redirect"}
{"poll": "redirect", "poll_location": "/x\r\n"}
{"poll": "explode"}
EOF
eq "refused specs create no job" "$(job_count)" "$jobs_before"
send /v1/tasks '{"_mock": {"send": "raw", "headers": {"X-A": "1\r\nX-Injected: 2"}}}'
check "refused header: says CR or LF" jtrue '"CR or LF" in d["message"]'
check "refused header: nothing injected" bash -c '! grep -qi "^x-injected" "$1"' _ "$TMP/headers"

for kind in raw huge redirect; do
    ctl POST /_mock/config "${JSON_CT[@]}" -d '{"polls_fail": "'"$kind"'"}'
    eq "config polls_fail $kind: refused with 400" "$STATUS" 400
done
check "config polls_fail refusal: says why" jtrue '"poll_" in d["message"]'
ctl GET /_mock/config
check "config polls_fail still unset" jtrue 'd["polls_fail"] is None'

# ---------------------------------------------------------------------------
# Credentials are never echoed in API answers
# ---------------------------------------------------------------------------

CANARY_SECRET=cs_CANARY_s3cr3t_7741
CANARY_TOKEN=at_CANARY_t0k3n_4242
CANARY=(-H "client_id: ci_canary" -H "client_secret: $CANARY_SECRET"
        -H "access_token: $CANARY_TOKEN")
: >"$TMP/answers"
# canary METHOD PATH [CURL ARGS...]: a request with the canary credentials;
# its answer (headers and body) is appended to $TMP/answers.
canary() {
    raw_call "$1" "$2" "${CANARY[@]}" "${@:3}"
    cat "$TMP/headers" "$TMP/body" >>"$TMP/answers"
}
canary POST /v1/appointments "${JSON_CT[@]}" -d '{"mrn": "MRN1"}'
job=$(jget 'd["job_id"]')
canary GET "/v1/webhook-events?job_id=$job"
check "canary: the event is there" jtrue 'len(d["webhook_events"]) == 1'
ref=$(jget 'd["webhook_events"][0]["access_token_reference_id"]')
canary GET "/v1/webhook-events?job_id=$job"
check "access_token_reference_id stable for a token" jtrue 'd["webhook_events"][0]["access_token_reference_id"] == "'"$ref"'"'
canary GET "/v1/webhook-events"
canary PATCH /v1/appointments/a1 "${JSON_CT[@]}" -d '{"_mock": {"outcome": "failure"}}'
canary GET "/v1/webhook-events?job_id=$(jget 'd["job_id"]')"
for spec in '{"send": "reject"}' '{"send": "success_false"}' \
        '{"send": "error"}' '{"send": "429"}' '{"send": "malformed"}' \
        '{"send": "no_job_id"}' '{"send": "raw", "body": "x"}' \
        '{"send": "huge", "size": 100}' \
        '{"send": "redirect", "location": "/x"}' '{"bogus": 1}' \
        '{"send": "raw", "headers": {"X": "\n"}}'; do
    canary POST /v1/tasks "${JSON_CT[@]}" -d '{"_mock": '"$spec"'}'
done
canary POST /v1/tasks "${JSON_CT[@]}" -d '{"mrn": '
canary PATCH /v1/webhook-events
canary GET /v1/nothing-here
canary GET /elsewhere
send /v1/appointments '{"_mock": {"poll": "500", "poll_times": 1}}'
canary GET "/v1/webhook-events?job_id=$(jget 'd["job_id"]')"
ctl POST /_mock/config "${JSON_CT[@]}" -d '{"expect_access_token": "at_other"}'
canary POST /v1/appointments "${JSON_CT[@]}" -d '{}'
eq "canary: unexpected access_token: 401" "$STATUS" 401
ctl POST /_mock/config "${JSON_CT[@]}" -d '{"expect_access_token": null}'
check "access_token_reference_id is ref_N, not from the token" "$PY" -c '
import re, sys
sys.exit(not re.fullmatch(r"ref_\d+", sys.argv[1]))' "$ref"
check "no API answer echoes client_secret or access_token (in any easy form)" "$PY" -c '
import base64, codecs, hashlib, sys, urllib.parse
answers = open(sys.argv[1], "rb").read().lower()
bad = []
for secret in sys.argv[2:]:
    raw = secret.encode()
    forms = [raw, raw[::-1], raw.hex().encode(), codecs.encode(secret, "rot13").encode(),
             urllib.parse.quote(secret).encode(), hashlib.sha256(raw).hexdigest().encode()]
    for enc in (base64.b64encode, base64.urlsafe_b64encode, base64.b32encode):
        forms += [enc(raw), enc(raw).rstrip(b"=")]
    bad += [f for f in forms if f.lower() in answers]
print("#   found: %r" % bad) if bad else None
sys.exit(1 if bad else 0)' "$TMP/answers" "$CANARY_SECRET" "$CANARY_TOKEN"
check "canary: all 23 answers were collected" test \
    "$(grep -ao 'HTTP/1.1 [0-9][0-9][0-9]' "$TMP/answers" | wc -l)" = 23
ctl GET /_mock/requests
check "request log records the credentials sent (for the tests, by design)" jtrue 'any(e["headers"].get("access_token") == "'"$CANARY_TOKEN"'" for e in d)'

# ---------------------------------------------------------------------------
# Control endpoints, unknown paths, errors, logging
# ---------------------------------------------------------------------------

ctl POST /_mock/config "${JSON_CT[@]}" -d '{"expect_access_token": ["tok_1"]}'
ctl POST /_mock/reset
ctl GET /_mock/config
check "reset keeps the config" jtrue 'd["expect_access_token"] == ["tok_1"]'
ctl POST /_mock/config "${JSON_CT[@]}" -d '{"expect_access_token": null}'
ctl GET /_mock/requests
check "reset forgets requests" jtrue 'd == []'
eq "reset forgets jobs" "$(job_count)" 0

raw_call GET "/v1/webhook-events?job_id=1"
poll 424242
send /v1/patients '{"first_name": "Ada", "_mock": {"outcome": "never"}}'
job=$(jget 'd["job_id"]')
send /v1/tasks '{"_mock": {"send": "reject"}}'
ctl GET /_mock/requests
check "request log: 4 requests in order" jtrue '[e["seq"] for e in d] == sorted(e["seq"] for e in d) and len(d) == 4 and all(isinstance(e["time"], float) for e in d)'
check "request log: the 401" jtrue 'd[0]["status"] == 401 and d[0]["method"] == "GET" and d[0]["path"] == "/v1/webhook-events?job_id=1"'
check "request log: polled job id" jtrue 'd[1]["job_id"] == "424242" and d[1]["status"] == 200 and d[1]["body"] == "" and d[1]["json"] is None'
check "request log: headers lower-cased" jtrue 'd[2]["headers"]["client_id"] == "ci_test_1" and d[2]["headers"]["access_token"] == "tok_1" and all(k == k.lower() for k in d[2]["headers"])'
check "request log: JSON body and job id" jtrue 'd[2]["json"]["first_name"] == "Ada" and d[2]["job_id"] == "'"$job"'" and d[2]["content_type"] == "application/json" and "Ada" in d[2]["body"] and d[2]["form"] is None'
check "request log: faulted request" jtrue 'd[3]["status"] == 400 and d[3]["job_id"] is None'
seq2=$(jget 'd[1]["seq"]')
ctl GET "/_mock/requests?since=$seq2"
check "request log: since" jtrue 'len(d) == 2 and d[0]["seq"] == '"$seq2"' + 1'

call POST /v1/tasks "${JSON_CT[@]}" --max-time 1 -d '{"_mock": {"send": "hang"}}'
ctl GET /_mock/requests
check "request log: hang has status null" jtrue 'd[-1]["status"] is None and d[-1]["json"]["_mock"]["send"] == "hang"'
ctl GET /_mock/jobs
check "jobs: fields" jtrue '(lambda j: j["operation_path"] == "/v1/patients" and j["polls"] == 0 and j["finished"] is False and j["outcome"] == "never" and isinstance(j["accepted_at"], float))(d["'"$job"'"])'

call GET /v1/nothing-here
eq "unknown API path: 404" "$STATUS" 404
ctl GET /elsewhere
eq "path outside /v1: 404" "$STATUS" 404
ctl GET /_mock/nothing
eq "unknown control endpoint: 404" "$STATUS" 404

ctl POST /_mock/raise
eq "handler exception: 500" "$STATUS" 500
check "handler exception: JSON body" jtrue 'd["success"] is False'
ctl GET /_mock/health
eq "server keeps running after an exception" "$STATUS" 200
check "exception logged to stderr" grep -q "deliberate failure" "$TMP/main.stderr"
check "no per-request logging on stderr" bash -c \
    '! grep -q "HTTP/1.1\" [0-9]" "$1"' _ "$TMP/main.stderr"
check "--log gets per-request lines" grep -q '"GET /_mock/health HTTP/1.1" 200' "$TMP/main.log"

# ---------------------------------------------------------------------------
# Keep-alive and throughput
# ---------------------------------------------------------------------------

u="$BASE/v1/webhook-events?job_id=1"
connects=$(curl -sS "${AUTH[@]}" -o /dev/null -o /dev/null -o /dev/null \
    -w '%{num_connects}\n' "$u" "$u" "$u" | awk '{s += $1} END {print s}')
eq "keep-alive: three polls on one connection" "$connects" 1
connects=$(curl -sS -o /dev/null -o /dev/null -o /dev/null \
    -w '%{num_connects}\n' "$u" "$u" "$BASE/_mock/health" | awk '{s += $1} END {print s}')
eq "keep-alive: survives 401 answers" "$connects" 1
connects=$(curl -sS "${AUTH[@]}" "${JSON_CT[@]}" -d '{"_mock": {"send": "429"}}' \
    -o /dev/null -o /dev/null -w '%{num_connects}\n' \
    "$BASE/v1/tasks" "$BASE/v1/tasks" | awk '{s += $1} END {print s}')
eq "keep-alive: POSTs and 429 answers" "$connects" 1

: >"$TMP/urls.cfg"
for i in $(seq 1000); do
    printf 'url = "%s"\noutput = /dev/null\n' "$u" >>"$TMP/urls.cfg"
done
t0=$(date +%s.%N)
codes=$(curl -sS "${AUTH[@]}" -K "$TMP/urls.cfg" -w '%{http_code}\n' |
    sort | uniq -c | awk '{print $2 "x" $1}')
t1=$(date +%s.%N)
eq "1000 polls on one connection: all 200" "$codes" "200x1000"
check "1000 polls in under 2 s (>= 500 requests/s)" \
    "$PY" -c "import sys; print('#   %.0f requests/s' % (1000 / ($t1 - $t0))) if $VERBOSE else None; sys.exit(not $t1 - $t0 < 2)"

: >"$TMP/posts.cfg"
for i in $(seq 200); do
    printf 'url = "%s/v1/appointments"\noutput = /dev/null\n' "$BASE" >>"$TMP/posts.cfg"
done
t0=$(date +%s.%N)
clients=()
for p in 1 2 3 4; do
    curl -sS "${AUTH[@]}" "${JSON_CT[@]}" -d '{"mrn": "1"}' -K "$TMP/posts.cfg" \
        -w '%{http_code}\n' >"$TMP/codes.$p" &
    clients+=($!)
done
wait "${clients[@]}"
t1=$(date +%s.%N)
eq "4 x 200 concurrent job creations: all 200" \
    "$(cat "$TMP"/codes.* | sort | uniq -c | awk '{print $2 "x" $1}')" "200x800"
check "800 concurrent job creations in under 1.6 s" \
    "$PY" -c "import sys; sys.exit(not $t1 - $t0 < 1.6)"
ctl GET /_mock/jobs
check "concurrent job ids are unique" jtrue 'len(d) == len(set(d)) and sum(j["operation_path"] == "/v1/appointments" for j in d.values()) >= 800'

# ---------------------------------------------------------------------------
# HTTPS (--tls-cert / --tls-key)
# ---------------------------------------------------------------------------

# A throwaway CA, and a server certificate it signs for IP 127.0.0.1.
cat >"$TMP/tls.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = mock_cobalt selftest
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
authorityKeyIdentifier = keyid
EOF
EC_KEY=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
check "openssl: throwaway CA and server certificate for IP 127.0.0.1" bash -c '
    cd "$1" &&
    openssl req -x509 -config tls.cnf -extensions ca_ext "${@:2}" \
        -keyout ca.key -out ca.crt -days 2 -subj "/CN=mock_cobalt selftest CA" &&
    openssl req -new -config tls.cnf "${@:2}" -keyout server.key \
        -out server.csr -subj "/CN=127.0.0.1" &&
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial 2 \
        -days 2 -extfile tls.cnf -extensions server_ext -out server.crt &&
    openssl verify -CAfile ca.crt server.crt' _ "$TMP" "${EC_KEY[@]}" \
    >"$TMP/openssl.log" 2>&1

timeout 5 "$PY" "$MOCK" --port 0 --tls-cert "$TMP/server.crt" >/dev/null 2>"$TMP/tlsarg.err"
eq "--tls-cert without --tls-key: usage error" "$?" 2
timeout 5 "$PY" "$MOCK" --port 0 --tls-cert "$TMP/ca.crt" --tls-key "$TMP/server.key" >/dev/null 2>"$TMP/tlsarg.err"
eq "--tls-cert and --tls-key that do not match: usage error" "$?" 2
check "bad TLS files: says so" grep -q "cannot load the TLS certificate" "$TMP/tlsarg.err"

start_mock tls --tls-cert "$TMP/server.crt" --tls-key "$TMP/server.key" \
    --log "$TMP/tls.log"
TLS_PID=$MOCK_PID
TLS_PORT=$MOCK_PORT
check "HTTPS: port file is digits and a newline" "$PY" -c \
    'import re, sys; sys.exit(not re.fullmatch(r"\d+\n", open(sys.argv[1]).read()))' \
    "$TMP/tls.port"
HTTP_BASE=$BASE
BASE="https://127.0.0.1:$TLS_PORT"
CURL_EXTRA=(--cacert "$TMP/ca.crt")

# A connection that never starts the handshake is closed after
# TLS_HANDSHAKE_TIMEOUT (5 s); this client measures it, meanwhile.
"$PY" -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=9)
t0 = time.monotonic()
try:
    s.recv(1)
except OSError:
    pass
print("%.1f" % (time.monotonic() - t0))' "$TLS_PORT" >"$TMP/idle_closed" 2>&1 &
IDLE_TIMER=$!
PIDS+=("$IDLE_TIMER")

ctl GET /_mock/health
eq "HTTPS with --cacert: health 200" "$STATUS" 200
eq "HTTPS: health says ok" "$(cat "$TMP/body")" ok
raw_call GET "/v1/webhook-events?job_id=1"
eq "HTTPS: no credentials: 401" "$STATUS" 401
send /v1/appointments '{"mrn": "MRN1", "_mock": {"after_polls": 1}}'
eq "HTTPS: authenticated job creation: 200" "$STATUS" 200
check "HTTPS: job_id" jtrue 'd["job_id"].isdigit() and d["success"] is True'
poll "$(jget 'd["job_id"]')"
check "HTTPS: authenticated poll sees the event" jtrue 'len(d["webhook_events"]) == 1 and d["webhook_events"][0]["event_type"] == "appointment.created"'
printf '\377\000raw over TLS' >"$TMP/expected"
send /v1/tasks '{"_mock": {"send": "raw", "status": 201, "body_b64": "'"$(base64 -w0 "$TMP/expected")"'", "headers": {"X-Tls": "yes"}}}'
check "HTTPS: raw answer, exact bytes" same_body "$TMP/expected"
check "HTTPS: raw answer's status and header" bash -c '[ "$1" = 201 ] && grep -qi "^x-tls: yes" "$2"' _ "$STATUS" "$TMP/headers"
ctl GET /_mock/requests
check "HTTPS: request log" jtrue 'len(d) == 4 and d[1]["method"] == "POST" and d[1]["headers"]["client_id"] == "ci_test_1" and d[1]["json"]["mrn"] == "MRN1" and d[1]["status"] == 200'
ctl GET /_mock/jobs
check "HTTPS: jobs" jtrue 'len(d) == 1'
check "HTTPS: --log gets per-request lines" grep -q '"GET /_mock/health HTTP/1.1" 200' "$TMP/tls.log"
connects=$(curl -sS --max-time 10 --cacert "$TMP/ca.crt" "${AUTH[@]}" \
    -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects}\n' \
    "$BASE/v1/webhook-events?job_id=1" "$BASE/v1/webhook-events?job_id=1" \
    "$BASE/_mock/health" | awk '{s += $1} END {print s}')
eq "HTTPS: keep-alive, three requests on one connection" "$connects" 1

# A 64 MiB answer is streamed: the mock's peak memory hardly grows.
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
hwm0=$(hwm "$TLS_PID")
send /v1/appointments '{"_mock": {"poll": "huge", "poll_size": 67108864}}'
got=$(curl -sS --max-time 20 --cacert "$TMP/ca.crt" "${AUTH[@]}" -o /dev/null \
    -w '%{http_code} %{size_download}' \
    "$BASE/v1/webhook-events?job_id=$(jget 'd["job_id"]')")
eq "HTTPS: poll huge 64 MiB" "$got" "200 67108864"
hwm1=$(hwm "$TLS_PID")
check "huge answers are streamed: peak memory +$(( (hwm1 - hwm0) / 1024 )) MiB < 16 MiB" \
    test $((hwm1 - hwm0)) -lt 16384

CURL_EXTRA=()
ctl GET /_mock/health --max-time 10
eq "HTTPS without the CA: curl certificate error (60)" "$CURL_RC" 60
check "HTTPS without the CA: says certificate" grep -qi "certificate" "$TMP/curl.err"
CURL_EXTRA=(--cacert "$TMP/ca.crt")
ctl GET /_mock/health
eq "HTTPS: serves on after a client refused the certificate" "$STATUS" 200

BASE="http://127.0.0.1:$TLS_PORT"
ctl GET /_mock/health --max-time 5
check "plain HTTP to the HTTPS port fails at once (curl $CURL_RC, not a timeout)" \
    bash -c '[ "$1" != 0 ] && [ "$1" != 28 ] && [ "$2" != 200 ]' _ "$CURL_RC" "$STATUS"
BASE="https://127.0.0.1:$TLS_PORT"
ctl GET /_mock/health
eq "HTTPS: serves on after a plain-HTTP request" "$STATUS" 200
call GET "/v1/webhook-events?job_id=1"
eq "HTTPS: authenticated request after a plain-HTTP one" "$STATUS" 200

# Clients that connect and never finish a handshake: one sends nothing, one
# half a ClientHello.  Other clients are served meanwhile.
idle=()
for hello in '' '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'; do
    "$PY" -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(sys.argv[2].encode("latin-1").decode("unicode_escape").encode("latin-1"))
time.sleep(3)' "$TLS_PORT" "$hello" 2>/dev/null &
    idle+=($!)
    PIDS+=($!)
done
sleep 0.3
ctl GET /_mock/health --max-time 2
eq "HTTPS: health while two handshakes hang" "$STATUS" 200
check "HTTPS: ... answered at once ($TIME s)" "$PY" -c "import sys; sys.exit(not $TIME < 1)"
send /v1/appointments '{"mrn": "MRN2"}'
eq "HTTPS: job creation while two handshakes hang" "$STATUS" 200
for pid in "${idle[@]}"; do
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
done

# The timer started above: closed after the handshake timeout (5 s).
for i in $(seq 100); do
    kill -0 "$IDLE_TIMER" 2>/dev/null || break
    sleep 0.1
done
check "HTTPS: a connection with no handshake is closed after 5 s ($(cat "$TMP/idle_closed") s)" \
    "$PY" -c 'import sys; sys.exit(not 4.5 <= float(open(sys.argv[1]).read()) < 7)' "$TMP/idle_closed"
check "HTTPS: failed handshakes logged, one line each" \
    test "$(grep -c '^mock_cobalt: TLS handshake with 127.0.0.1:[0-9]* failed: ' "$TMP/tls.stderr")" -ge 4
check "HTTPS: no traceback on stderr" bash -c '! grep -q Traceback "$1"' _ "$TMP/tls.stderr"

CURL_EXTRA=()
BASE=$HTTP_BASE

eq "every answer carried Content-Length" "$MISSING_LENGTH" 0

# ---------------------------------------------------------------------------
# Shutdown
# ---------------------------------------------------------------------------

# wait_exit PID: wait up to 3 s for the process to exit.  Sets EXIT_SECS
# (time taken) and EXIT_RC (its exit status).
wait_exit() {
    local pid=$1 t0 t1 i
    t0=$(date +%s.%N)
    for i in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.01
    done
    t1=$(date +%s.%N)
    wait "$pid"
    EXIT_RC=$?
    EXIT_SECS=$("$PY" -c "print('%.2f' % ($t1 - $t0))")
}

kill -TERM "$MAIN_PID"
wait_exit "$MAIN_PID"
eq "SIGTERM: exit status 0" "$EXIT_RC" 0
check "SIGTERM: exits within 1 s ($EXIT_SECS s)" \
    "$PY" -c "import sys; sys.exit(not $EXIT_SECS < 1)"

for sig in TERM INT; do
    start_mock "stop$sig"
    BASE="http://127.0.0.1:$MOCK_PORT"
    # A request the mock never answers, and an idle keep-alive connection.
    curl -sS "${AUTH[@]}" "${JSON_CT[@]}" -d '{"_mock": {"send": "hang"}}' \
        -o /dev/null "$BASE/v1/tasks" 2>/dev/null &
    PIDS+=($!)
    "$PY" -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /_mock/health HTTP/1.1\r\nHost: x\r\n\r\n")
s.recv(1000)
time.sleep(30)' "$MOCK_PORT" 2>/dev/null &
    PIDS+=($!)
    sleep 0.5
    kill -"$sig" "$MOCK_PID"
    wait_exit "$MOCK_PID"
    eq "SIG$sig with open connections: exit status 0" "$EXIT_RC" 0
    check "SIG$sig with open connections: exits within 1 s ($EXIT_SECS s)" \
        "$PY" -c "import sys; sys.exit(not $EXIT_SECS < 1)"
done

# The HTTPS mock, with a connection that never starts its handshake.
"$PY" -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
time.sleep(30)' "$TLS_PORT" 2>/dev/null &
PIDS+=($!)
sleep 0.3
kill -TERM "$TLS_PID"
wait_exit "$TLS_PID"
eq "HTTPS, SIGTERM during a handshake: exit status 0" "$EXIT_RC" 0
check "HTTPS, SIGTERM during a handshake: exits within 1 s ($EXIT_SECS s)" \
    "$PY" -c "import sys; sys.exit(not $EXIT_SECS < 1)"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]

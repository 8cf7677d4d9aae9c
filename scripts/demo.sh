#!/usr/bin/env bash
# A demo on a fresh Debian 12 machine, as root:
#
#     bash scripts/demo.sh
#
# installs what it needs, builds and installs cobalt, starts a throwaway
# PostgreSQL cluster with the cobalt worker and the local mock Cobalt
# server, submits jobs of several operations (some of which fail), and shows
# them reaching their outcomes.  Everything it starts is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash scripts/install-deps.sh
bash scripts/build.sh

BIN=/usr/lib/postgresql/15/bin
demo=$(mktemp -d /tmp/cobalt-demo.XXXXXX)
chmod 755 "$demo"
chown postgres "$demo"
mock_pid=""
cleanup() {
	[ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null
	[ -f "$demo/data/postmaster.pid" ] && runuser -u postgres -- "$BIN/pg_ctl" -D "$demo/data" -m fast stop >/dev/null 2>&1
	rm -rf "$demo"
}
trap cleanup EXIT

runuser -u postgres -- /usr/bin/python3 "$root/test/mock_cobalt.py" --port 0 --port-file "$demo/mock.port" \
	>"$demo/mock.log" 2>&1 &
mock_pid=$!
for _ in $(seq 100); do [ -s "$demo/mock.port" ] && break; sleep 0.1; done
mock_port=$(cat "$demo/mock.port")
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

runuser -u postgres -- "$BIN/initdb" -D "$demo/data" -A trust -E UTF8 >/dev/null
cat >> "$demo/data/postgresql.conf" <<CONF
port = $pg_port
listen_addresses = ''
unix_socket_directories = '$demo'
shared_preload_libraries = 'cobalt'
cobalt.database_name = 'app'
cobalt.api_url = 'http://127.0.0.1:$mock_port/v1'
cobalt.poll_interval = '500ms'
CONF
runuser -u postgres -- "$BIN/pg_ctl" -D "$demo/data" -l "$demo/server.log" -w start >/dev/null
runuser -u postgres -- "$BIN/createdb" -h "$demo" -p "$pg_port" app

psql_app() {
	runuser -u postgres -- "$BIN/psql" -h "$demo" -p "$pg_port" -d app -X -v ON_ERROR_STOP=1 "$@"
}

echo "== A throwaway cluster with cobalt, talking to the mock Cobalt at 127.0.0.1:$mock_port =="
psql_app -e <<'SQL'
CREATE EXTENSION cobalt;
SELECT cobalt_set_client('ci_live_demo', 'cs_live_demo');
SELECT cobalt_add_account('clinic-a', 'at_live_demo');

-- An application table whose rows point at their cobalt job.
CREATE TABLE appointments (id serial PRIMARY KEY, mrn text, starts_at timestamptz, cobalt_job bigint);

-- Submit inside the application's own transaction: sent only if it commits.
BEGIN;
INSERT INTO appointments (mrn, starts_at, cobalt_job)
SELECT '1234', '2026-12-01 10:00-05',
       cobalt_submit('appointment.create',
                     '{"mrn":"1234","location":"L1","provider":"P1","type":"follow-up",
                       "datetime":"2026-12-01T10:00:00-05:00"}');
COMMIT;

SELECT cobalt_submit('patient.create', '{"first_name":"Ada","last_name":"Lovelace","dob":"1815-12-10"}');
SELECT cobalt_submit('note.create', '{"appointment_id":"apt_1","note":"Follow-up in two weeks"}');
SELECT cobalt_submit('document.upload',
       json_build_object('folder_name','Labs','patient_mrn','1234','filename','labs.txt',
                         'content_type','text/plain',
                         'document', encode(convert_to('Hemoglobin 14.1 g/dL', 'UTF8'), 'base64'))::jsonb);
SELECT cobalt_submit('insurance.create', '{"patient_mrn":"1234","member_id":"M-1","insurance_name":"Acme"}');
-- This one the (mock) EHR refuses after accepting it: a failure event.
SELECT cobalt_submit('task.create', '{"description":"Call back","patient_mrn":"1234",
                                      "_mock":{"outcome":"failure","failure_reason":"Assignee not found"}}');
-- This one Cobalt rejects outright: HTTP 400.
SELECT cobalt_submit('message.create', '{"provider":"P1","_mock":{"send":"reject","status":400,
                                         "message":"Missing required field: subject"}}');
-- This one takes a few polls.
SELECT cobalt_submit('referring_provider.create', '{"first_name":"Greg","last_name":"House","npi":"1234567890",
                                                    "_mock":{"after_polls":4}}');

-- A user is waiting on the appointment: block until its outcome.
SELECT job_id, state, event_type FROM cobalt_wait(1, '30 s');
SQL

echo
echo "== Waiting for every job to reach its outcome =="
for _ in $(seq 60); do
	left=$(psql_app -Atc "SELECT count(*) FROM cobalt.jobs WHERE state IN ('queued','sending','polling')")
	[ "$left" = "0" ] && break
	sleep 0.5
done
psql_app -c "SELECT id, operation, state, remote_job_id AS remote, http_status AS http, event_type,
                    coalesce(error, '') AS error, attempts,
                    round(extract(epoch FROM finished_at - created_at)::numeric, 2) AS seconds
             FROM cobalt.jobs ORDER BY id"
psql_app -c "SELECT a.id, a.mrn, j.state, j.result FROM appointments a JOIN cobalt.jobs j ON j.id = a.cobalt_job"

echo "== What the mock Cobalt received =="
curl -s "http://127.0.0.1:$mock_port/_mock/requests" | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    print("%-6s %-45s -> %s" % (r["method"], r["path"], r["status"]))'
echo
echo "Demo finished; the cluster and the mock are stopped and removed."

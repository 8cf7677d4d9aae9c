#!/usr/bin/env bash
# The whole test suite.  On a fresh Debian 12 machine, as root:
#
#     bash scripts/test.sh
#
# installs what it needs (apt-get), builds with warnings as errors, installs
# the extension, then runs
#   1. the unit tests of the plain-C layer (AddressSanitizer),
#   2. a bounded libFuzzer run over the answer parsers (FUZZ_SECONDS, 60),
#   3. the mock Cobalt server's self-test,
#   4. the pg_regress suite, against a throwaway server it starts and stops,
#   5. the TAP suite (each test starts its own clusters and mock Cobalt),
#   6. a smoke run of the benchmark (a few seconds).
# PostgreSQL refuses to run as root, so 4 and 5 run as "postgres" from a
# copy of the tree that user owns.  The last line is "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash scripts/install-deps.sh || exit 1
bash scripts/build.sh || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

BIN=/usr/lib/postgresql/15/bin
PG_CONFIG=$BIN/pg_config
work=$(mktemp -d /tmp/cobalt-test.XXXXXX)
chmod 755 "$work"

cleanup() {
	if [ -f "$work/data/postmaster.pid" ]; then
		runuser -u postgres -- "$BIN/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1
	fi
	if [ -z "${COBALT_KEEP_TMP:-}" ]; then
		rm -rf "$work"
	fi
}
trap cleanup EXIT

passed=0
failed=0
count() {	# count PASSED FAILED
	passed=$((passed + $1))
	failed=$((failed + $2))
}
count_summary() {	# count the last "N passed, N failed" line of $1 (a failure if none)
	local line
	line=$(echo "$1" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
	if [ -n "$line" ]; then
		count "$(echo "$line" | cut -d' ' -f1)" "$(echo "$line" | cut -d' ' -f3)"
	else
		count 0 1
	fi
}

echo "=== unit tests (plain C, AddressSanitizer) ==="
unit_out=$(make -s -C test/unit check 2>&1)
echo "$unit_out"
count_summary "$unit_out"

echo "=== fuzzing the answer parsers (libFuzzer, ASan, UBSan; ${FUZZ_SECONDS:-60} s) ==="
fuzz_out=$(bash test/fuzz/run.sh 2>&1)
echo "$fuzz_out" | tail -n 8
count_summary "$fuzz_out"

echo "=== mock Cobalt server self-test ==="
mock_out=$(bash test/mock_cobalt_selftest.sh 2>&1)
echo "$mock_out" | tail -n 5
count_summary "$mock_out"

cp -a "$root/." "$work/src"
chown -R postgres "$work"

echo "=== pg_regress ==="
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
runuser -u postgres -- "$BIN/initdb" -D "$work/data" -A trust -E UTF8 --no-sync >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'cobalt'
cobalt.database_name = 'postgres'
fsync = off
CONF
runuser -u postgres -- "$BIN/pg_ctl" -D "$work/data" -l "$work/regress-server.log" -w start >/dev/null
regress_out=$(cd "$work/src" && runuser -u postgres -- make -s installcheck TAP_TESTS= \
	PG_CONFIG="$PG_CONFIG" with_llvm=no PGHOST="$work" PGPORT="$port" 2>&1)
echo "$regress_out"
count "$(echo "$regress_out" | grep -cE '\.\.\. ok')" "$(echo "$regress_out" | grep -cE '\.\.\. FAILED')"
if echo "$regress_out" | grep -qE '\.\.\. FAILED' && [ -f "$work/src/regression.diffs" ]; then
	head -n 200 "$work/src/regression.diffs"
fi
runuser -u postgres -- "$BIN/pg_ctl" -D "$work/data" -m fast stop >/dev/null

echo "=== TAP ==="
tap_out=$(cd "$work/src" && runuser -u postgres -- make -s installcheck REGRESS= \
	PG_CONFIG="$PG_CONFIG" with_llvm=no PROVE_FLAGS="--timer" 2>&1)
echo "$tap_out"
tap_total=$(echo "$tap_out" | sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' | tail -n 1)
tap_failed=$(echo "$tap_out" | sed -n 's/.*Failed: \([0-9]*\)).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
# a test file that died without a failing test still counts as one failure
tap_died=$(echo "$tap_out" | grep -E '\(Wstat: [1-9][0-9]* Tests: [0-9]+ Failed: 0\)' | wc -l)
count "$(( ${tap_total:-0} - tap_failed ))" "$(( tap_failed + tap_died ))"
if [ -z "$tap_total" ]; then
	count 0 1
fi
if [ "$failed" -ne 0 ] && [ -d "$work/src/tmp_check/log" ]; then
	for f in "$work"/src/tmp_check/log/regress_log_*; do
		if grep -q "not ok" "$f" 2>/dev/null; then
			echo "--- tail of $f"
			tail -n 60 "$f"
		fi
	done
fi

echo "=== benchmark smoke run ==="
bench_out=$(COBALT_SKIP_BUILD=1 bash bench/run.sh --smoke 2>&1)
echo "$bench_out" | tail -n 30
if echo "$bench_out" | grep -q '^bench smoke: 1 passed, 0 failed$'; then
	count 1 0
else
	count 0 1
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
#
# CI wrapper for the fuzz target: installs clang-14 / libFuzzer when
# missing, fuzzes for ${FUZZ_SECONDS:-60} seconds ("make run"), and ends
# with exactly one line "N passed, N failed": "1 passed, 0 failed" when
# nothing was found, else "0 passed, 1 failed" after the sanitizer report
# and the path of the input that triggered it.
#
# test/fuzz/run.sh

set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
seconds=${FUZZ_SECONDS:-60}
log="$here/build/run.log"

fail() {
	echo "$*"
	echo "0 passed, 1 failed"
	exit 1
}

# ---- toolchain
need=()
command -v clang-14 >/dev/null 2>&1 || need+=(clang-14)
dpkg -s libclang-rt-14-dev >/dev/null 2>&1 || need+=(libclang-rt-14-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists json-c 2>/dev/null || need+=(libjson-c-dev)
if [ ${#need[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
	echo "fuzz: installing ${need[*]}"
	{ $sudo env DEBIAN_FRONTEND=noninteractive apt-get -qq update &&
	  $sudo env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y \
		--no-install-recommends "${need[@]}"; } >/dev/null 2>&1 ||
		fail "fuzz: could not install ${need[*]}"
fi

# ---- build (apart from the run, so that the time below is fuzzing only)
mkdir -p "$here/build"
if ! make -s -C "$here" all >"$here/build/build.log" 2>&1; then
	cat "$here/build/build.log"
	fail "fuzz: build failed"
fi

# ---- fuzz; libFuzzer's per-input NEW/REDUCE lines and its recommended
# dictionary stay in the log only
start=$(date +%s.%N)
make --no-print-directory -C "$here" run SECONDS="$seconds" >"$log" 2>&1 &
make_pid=$!
tail -n +1 --pid="$make_pid" -f "$log" 2>/dev/null |
	awk '/^###### Recommended dictionary/ { skip = 1 }
		!skip && !/^#[0-9]+[[:space:]]+(NEW|REDUCE)[[:space:]]/ { print; fflush() }
		/^###### End of recommended dictionary/ { skip = 0 }'
wait "$make_pid"
status=$?
end=$(date +%s.%N)

executed=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -n 1)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
echo "fuzz: executed ${executed:-unknown} inputs in ${elapsed} s"

if [ "$status" -eq 0 ]; then
	echo "1 passed, 0 failed"
	exit 0
fi

# A finding: repeat the report (from the first sanitizer / invariant line)
# and name the input libFuzzer saved.
echo "---- fuzz: finding ----"
awk '/^==[0-9]+== ?(ERROR|WARNING)|runtime error:|^INVARIANT VIOLATED|^ALARM: working on the last Unit|out-of-memory|deadly signal/ { on = 1 }
	on && !/^stat::/' "$log"
artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
if [ -n "$artifact" ]; then
	case $artifact in
		/*) ;;
		*) artifact="$here/${artifact#./}" ;;
	esac
	echo "fuzz: crash input: $artifact"
	echo "fuzz: reproduce with: $here/build/fuzz_answers $artifact"
else
	echo "fuzz: no crash input was saved (make exited with status $status); see $log"
fi
echo "0 passed, 1 failed"
exit 1

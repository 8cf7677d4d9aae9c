#!/usr/bin/env bash
# The benchmark, on a fresh Debian 12 machine, as root:
#     bash bench/run.sh            # full run, about 10 minutes; writes bench/results/
#     bash bench/run.sh --smoke    # a few seconds, checks it all works (CI runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
missing=()
for p in nginx-light wrk gnuplot-nox; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# the package may start a default nginx on port 80; the benchmark runs its own
	pkill -x nginx 2>/dev/null || true
fi
if [ "${COBALT_SKIP_BUILD:-}" != 1 ]; then
	bash scripts/build.sh
fi
exec python3 bench/bench.py "$@"

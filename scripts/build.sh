#!/usr/bin/env bash
# Build cobalt with warnings as errors and install it into PostgreSQL 15.
# Run as root (it writes into PostgreSQL's directories).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
make -s clean PG_CONFIG="$PG_CONFIG" with_llvm=no
make -s PG_CONFIG="$PG_CONFIG" with_llvm=no COPT="-Werror ${COPT:-}"
make -s install PG_CONFIG="$PG_CONFIG" with_llvm=no

#!/usr/bin/env bash
# Install, from Debian 12's packages, everything cobalt needs to build, test
# and run its demo.  Run as root.  Installs only what is missing.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	echo "scripts/install-deps.sh: run as root (it uses apt-get)" >&2
	exit 1
fi

packages=(
	postgresql-15 postgresql-client-15 postgresql-server-dev-15
	libcurl4-openssl-dev libjson-c-dev pkg-config
	make gcc libc6-dev
	libipc-run-perl libio-socket-ssl-perl
	python3 curl ca-certificates openssl
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if [ "${#missing[@]}" -gt 0 ]; then
	echo "Installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

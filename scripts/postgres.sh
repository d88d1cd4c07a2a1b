#!/usr/bin/env bash
# PostgreSQL for the local database hosts (Debian's packages): installed when missing and root,
# else a line saying how to get it. Used by scripts/start and scripts/tools.sh.
set -euo pipefail
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [[ -z "$(pg_bin)" && -z "${ENVPLANE_PG_BIN:-}" ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "tools: installing PostgreSQL (apt-get install postgresql)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  else
    echo "tools: PostgreSQL is missing: install Debian's postgresql package (as root)" >&2
  fi
fi

#!/usr/bin/env bash
# Runs schemathesis (pinned in .tools/schemathesis) against a real `envplane serve` with a real
# token: every check, every phase (examples, coverage, fuzzing, stateful), and fails on any
# failure. The plane runs on a scratch data directory and a free loopback port, and is stopped
# whatever happens. Extra arguments go to schemathesis.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# The binary the test build made: `cargo test --no-run --workspace` resolves features as
# `cargo nextest run --workspace` did, so after the tests this builds nothing (a plain
# `cargo build -p envplane` unifies features differently and rebuilt half the graph in CI).
cargo test --no-run --workspace --locked -q
envplane="$root/target/debug/envplane"
work=$(mktemp -d)
serve_pid=""
cleanup() {
  [[ -n $serve_pid ]] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# A real token: the tokens file holds only its hash, as for any user.
made=$("$envplane" token --principal schemathesis --role admin)
token=$(sed -n 's/^token (shown once[^:]*: \(.*\)$/\1/p' <<<"$made")
entry=$(sed -n 's/^add to the tokens file.s "tokens" list: //p' <<<"$made")
mkdir -p "$work/data"
printf '{"tokens": [%s]}\n' "$entry" >"$work/data/tokens.json"

port=$("$root/.tools/moto/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
# Drift and housekeeping stay out of the way: the contract is what is under test.
"$envplane" serve --listen "127.0.0.1:$port" --data-dir "$work/data" \
  --drift-interval 0 --housekeeping-interval 0 >"$work/serve.log" 2>&1 &
serve_pid=$!
"$root/.tools/moto/bin/python" - "$url/health" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1).read()
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit("contract: envplane serve did not answer /health")
PY

status=0
(cd "$work" && "$root/.tools/schemathesis/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml" \
  run "$url/v1/openapi.json" --url "$url" \
  -H "Authorization: Bearer $token" --checks all \
  --phases examples,coverage,fuzzing,stateful --workers 1 "$@") || status=$?
if [[ $status -ne 0 ]]; then
  echo "contract: schemathesis failed; the plane's log (panics, then its end):" >&2
  grep -A8 "panicked" "$work/serve.log" >&2 || true
  tail -30 "$work/serve.log" >&2
fi
exit $status

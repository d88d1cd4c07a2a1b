# Sourced by scripts: starts moto's server (from the pinned venv) on a free loopback port,
# exports MOTO_ENDPOINT, and stops the server when the sourcing shell exits.
# Requires scripts/tools.sh to have run.

moto_start() {
  local root=$1
  _moto_out=$(mktemp)
  _moto_log=$(mktemp)
  "$root/.tools/moto/bin/python" "$root/scripts/moto_server.py" 127.0.0.1 >"$_moto_out" 2>"$_moto_log" &
  _moto_pid=$!
  trap moto_stop EXIT INT TERM
  for _ in $(seq 1 100); do
    [[ -s "$_moto_out" ]] && break
    if ! kill -0 "$_moto_pid" 2>/dev/null; then
      cat "$_moto_log" >&2
      echo "moto's server did not start" >&2
      return 1
    fi
    sleep 0.2
  done
  local port
  port=$(head -n1 "$_moto_out")
  if [[ -z "$port" ]]; then
    cat "$_moto_log" >&2
    echo "moto's server printed no port" >&2
    return 1
  fi
  export MOTO_ENDPOINT="http://127.0.0.1:$port"
  echo "moto listening on $MOTO_ENDPOINT" >&2
}

moto_stop() {
  if [[ -n "${_moto_pid:-}" ]]; then
    kill "$_moto_pid" 2>/dev/null || true
    wait "$_moto_pid" 2>/dev/null || true
    rm -f "$_moto_out" "$_moto_log"
    _moto_pid=
  fi
}

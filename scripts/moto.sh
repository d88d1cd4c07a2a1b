# Sourced by scripts: starts moto's servers (from the pinned venv) on free loopback ports,
# exports MOTO_ENDPOINT (the emulator every adapter test uses) and MOTO_SFN_ENDPOINT (one whose
# Step Functions really runs the definitions), and stops both when the sourcing shell exits.
# Requires scripts/tools.sh to have run.

_moto_pids=()
_moto_files=()

# _moto_launch ROOT VAR [ARGS...]: starts one server and exports its endpoint as VAR.
_moto_launch() {
  local root=$1 var=$2
  shift 2
  local out log pid port
  out=$(mktemp)
  log=$(mktemp)
  _moto_files+=("$out" "$log")
  # AWS-managed IAM policies (the EKS ones) exist only when moto loads them.
  MOTO_IAM_LOAD_MANAGED_POLICIES=true "$root/.tools/moto/bin/python" "$root/scripts/moto_server.py" 127.0.0.1 "$@" >"$out" 2>"$log" &
  pid=$!
  _moto_pids+=("$pid")
  for _ in $(seq 1 100); do
    [[ -s "$out" ]] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      cat "$log" >&2
      echo "moto's server did not start" >&2
      return 1
    fi
    sleep 0.2
  done
  port=$(head -n1 "$out")
  if [[ -z "$port" ]]; then
    cat "$log" >&2
    echo "moto's server printed no port" >&2
    return 1
  fi
  export "$var=http://127.0.0.1:$port"
  echo "moto listening on http://127.0.0.1:$port ($var)" >&2
}

moto_start() {
  local root=$1
  trap moto_stop EXIT INT TERM
  _moto_launch "$root" MOTO_ENDPOINT || return 1
  _moto_launch "$root" MOTO_SFN_ENDPOINT --execute-state-machines || return 1
}

moto_stop() {
  local pid
  for pid in "${_moto_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if ((${#_moto_files[@]})); then
    rm -f "${_moto_files[@]}"
  fi
  _moto_pids=()
  _moto_files=()
}

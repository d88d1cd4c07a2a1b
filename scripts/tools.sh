#!/usr/bin/env bash
# Installs the pinned test tools into .tools/ (git-ignored) and prints nothing on a warm cache.
# Each tool gets its own venv: aws-sam-cli pins boto and jsonschema versions that moto and cfn-lint do not share.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
PYTHON=${PYTHON:-python3}

MOTO_VERSION=5.2.5
SAM_VERSION=1.170.0
# cfn-lint from 1.54 on no longer runs the SAM transform; 1.53 still does.
CFN_LINT_VERSION=1.53.3
ASL_VALIDATOR_VERSION=4.0.0
# cargo-lambda drives the Lambda package builds (sam build's rust-cargolambda method), zig cross-links arm64.
CARGO_LAMBDA_VERSION=1.9.2
ZIGLANG_VERSION=0.15.1
SCHEMATHESIS_VERSION=4.32.5

venv() { # name, pip specs...
  local name=$1; shift
  local dir="$tools/$name" stamp="$tools/$name/.pinned"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$*" ]]; then return 0; fi
  echo "tools: installing $* into .tools/$name" >&2
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
  echo "$*" > "$stamp"
}

mkdir -p "$tools"
venv moto "moto[server]==$MOTO_VERSION"
venv sam "aws-sam-cli==$SAM_VERSION"
venv cfn-lint "cfn-lint==$CFN_LINT_VERSION"
venv lambda "cargo-lambda==$CARGO_LAMBDA_VERSION" "ziglang==$ZIGLANG_VERSION"
venv schemathesis "schemathesis==$SCHEMATHESIS_VERSION"

# asl-validator from npm, pinned, into .tools/node (no global install).
node_dir="$tools/node"
if [[ ! -x "$node_dir/node_modules/.bin/asl-validator" || "$(cat "$node_dir/.pinned" 2>/dev/null)" != "$ASL_VALIDATOR_VERSION" ]]; then
  echo "tools: installing asl-validator@$ASL_VALIDATOR_VERSION into .tools/node" >&2
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  npm install --prefix "$node_dir" --no-audit --no-fund --loglevel=error "asl-validator@$ASL_VALIDATOR_VERSION" >&2
  echo "$ASL_VALIDATOR_VERSION" > "$node_dir/.pinned"
fi

"$root/scripts/postgres.sh"

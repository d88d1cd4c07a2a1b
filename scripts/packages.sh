#!/usr/bin/env bash
# Builds the four Lambda packages as `sam deploy` ships them, and checks their size.
#
# `sam build` runs the template's rust-cargolambda method: one `cargo lambda build --release
# --arm64 --bin NAME` per function, at the workspace root: the virtual manifest selects every
# member, so all four builds share one feature set and the first compiles the graph for the
# others. A build of the four packages alone beforehand does not help: `-p` selects only them,
# whose features differ from the whole workspace's, so SAM's builds recompiled nearly
# everything after it (measured in CI). Prints each function's zipped size against the 10 MB
# goal.
#
# The template declares arm64. Where the aarch64 Rust target cannot be fetched, the functions
# are built for x86_64 instead and the output says so: those are not the packages the template
# deploys, and `sam build` is skipped.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.tools/lambda/bin:$PATH" SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}

functions=(api worker scheduler notifier)
packages=()
for f in "${functions[@]}"; do packages+=(-p "envplane-fn-$f"); done

arch=arm64
if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  if ! rustup target add aarch64-unknown-linux-gnu >&2; then
    arch=x86_64
    echo "packages: WARNING: the aarch64-unknown-linux-gnu target cannot be fetched;" \
      "building x86_64 packages instead — NOT what template.yaml (arm64) deploys" >&2
  fi
fi

started=$(date +%s)
if [[ $arch == arm64 ]]; then
  .tools/sam/bin/sam build --beta-features --template template.yaml --build-dir .aws-sam/build >&2
  echo "packages: sam build (arm64, 4 functions, cold or warm) took $(( $(date +%s) - started )) s" >&2
  built=.aws-sam/build
else
  cargo lambda build --release --locked --x86-64 "${packages[@]}"
  echo "packages: cargo lambda build --release (x86_64, 4 functions) took $(( $(date +%s) - started )) s" >&2
  built=""
fi

# Each function's package as Lambda receives it: the bootstrap, zipped.
.tools/sam/bin/python - "$built" "${functions[@]}" <<'PY'
import os, sys, tempfile, zipfile
built, functions = sys.argv[1], sys.argv[2:]
goal = 10 * 1024 * 1024
logical = {"api": "ApiFunction", "worker": "WorkerFunction", "scheduler": "SchedulerFunction", "notifier": "NotifierFunction"}
failed = False
for name in functions:
    if built:
        bootstrap = os.path.join(built, logical[name], "bootstrap")
    else:
        bootstrap = os.path.join("target", "lambda", name, "bootstrap")
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, name + ".zip")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            z.write(bootstrap, "bootstrap")
        zipped = os.path.getsize(path)
    raw = os.path.getsize(bootstrap)
    verdict = "ok" if zipped <= goal else "OVER the 10 MB goal"
    failed |= zipped > goal
    print(f"package {name:<10} bootstrap {raw / 1048576:5.1f} MiB, zipped {zipped / 1048576:4.1f} MiB ({verdict}) from {bootstrap}")
sys.exit(1 if failed else 0)
PY

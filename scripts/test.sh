#!/usr/bin/env bash
# Sets up a fresh machine (idempotent), builds qopt and runs every test
# (lit + FileCheck suites and the GoogleTest unit tests, through lit).
# This is the README's test command; .ci/run runs exactly it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh"
"$here/scripts/build.sh"
build=${QOPT_BUILD_DIR:-$here/build}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
ninja -C "$build" check-qopt 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# lit's summary, as the plain "N passed, N failed" line CI reads.
passed=$(sed -n 's/^ *Passed *: *\([0-9]*\).*/\1/p' "$log" | tail -1)
failed=$(sed -n 's/^ *Failed *: *\([0-9]*\).*/\1/p' "$log" | tail -1)
unsupported=$(sed -n 's/^ *Unsupported *: *\([0-9]*\).*/\1/p' "$log" | tail -1)
echo "qopt: ${passed:-0} passed, ${failed:-0} failed, ${unsupported:-0} skipped"
if [ "$rc" -eq 0 ] && [ "${passed:-0}" -eq 0 ]; then
  echo "qopt: no test ran" >&2
  exit 1
fi
exit "$rc"

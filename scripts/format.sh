#!/usr/bin/env bash
# Formats qopt's C and C++ sources with clang-format-22 (.clang-format: LLVM
# style). `scripts/format.sh --check` changes nothing and fails, naming each
# file and line, when a source is not formatted (test/lint/format.test).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
clang_format=${QOPT_CLANG_FORMAT:-clang-format-22}
if ! command -v "$clang_format" >/dev/null; then
  echo "format.sh: $clang_format not found (scripts/setup.sh installs it)" >&2
  exit 2
fi
cd "$here"
# Sources only: generated tables (*.inc) are written by their scripts.
mapfile -t files < <(git ls-files -- '*.h' '*.cpp' '*.c' | grep -v '^test/')
if [ "${1:-}" = "--check" ]; then
  "$clang_format" --dry-run -Werror "${files[@]}"
  echo "format.sh: ${#files[@]} files formatted"
else
  "$clang_format" -i "${files[@]}"
fi

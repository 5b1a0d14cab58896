#!/usr/bin/env bash
# Run pytest with the given interpreter; a layer that collects no test (exit 5) fails loudly.
set -uo pipefail
python="$1"; shift
"$python" -m pytest "$@"
code=$?
if [ "$code" = 5 ]; then
  echo "!! pytest collected no tests in: $* (a test layer must run something)" >&2
  exit 1
fi
exit "$code"

#!/usr/bin/env bash
# The long malformed-input run (issue 7): starts its own `kaji up` on a
# temporary data dir and loopback port, then runs tests/malformed with
#   * the raw malformed-HTTP corpus (test_raw_corpus.py), and
#   * schemathesis on every group-version kaji's /openapi/v3 lists, every
#     operation, positive and negative data, MAX_EXAMPLES generated requests
#     per operation and mode.
# Each answer must be a non-5xx, every error a Kubernetes Status with the
# right code, and the server still ready and serving writes at the end.
#
# Usage: scripts/schemathesis.sh [MAX_EXAMPLES] [extra pytest arguments…]
#   MAX_EXAMPLES            default 20 (the test suite's short run uses 3)
#   KAJI_ST_TIME_LIMIT      seconds after which the operations not yet run are
#                           skipped (default 3600); the run is killed 10 minutes
#                           after that if it still has not ended
#   KAJI_ST_GROUP_VERSIONS  e.g. api/v1,apis/apps/v1 (default: all)
#   KAJI_ST_PATHS           regex on operation paths (default: all)
#   KAJI_ST_PHASES          default examples,fuzzing; adding `coverage`
#                           (boundary values of every parameter) is thorough
#                           but its cases are built up front and take tens of
#                           minutes per Pod-sized operation: use it with a
#                           narrow KAJI_ST_PATHS
# Needs: python3 with `pip install pytest schemathesis`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
max_examples="${1:-${KAJI_ST_MAX_EXAMPLES:-20}}"
shift || true
time_limit="${KAJI_ST_TIME_LIMIT:-3600}"

cargo build -p kaji
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
kaji="$target_dir/debug/kaji"

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$kaji" up --data-dir "$work/data" --listen 127.0.0.1:0 --log warn --runtime none \
  >"$work/stdout" 2>"$work/server.log" &
server_pid=$!
url=""
for _ in $(seq 300); do
  url="$(sed -n 's/^kaji is ready at \(https:\/\/[^ ]*\).*/\1/p' "$work/stdout" | head -n1)"
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "kaji up exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "kaji up did not report ready" >&2; exit 1; }
echo "kaji at $url (pid $server_pid); schemathesis: $max_examples examples per operation and mode, ${time_limit}s at most"

status=0
(
  cd "$repo/tests/malformed"
  KAJI_URL="$url" \
  KAJI_CA="$work/data/pki/ca.crt" \
  KAJI_CERT="$work/data/pki/admin.crt" \
  KAJI_KEY="$work/data/pki/admin.key" \
  KAJI_ST_MAX_EXAMPLES="$max_examples" \
  KAJI_ST_GROUP_VERSIONS="${KAJI_ST_GROUP_VERSIONS:-all}" \
  KAJI_ST_PATHS="${KAJI_ST_PATHS:-all}" \
  KAJI_ST_PHASES="${KAJI_ST_PHASES:-examples,fuzzing}" \
  KAJI_ST_BUDGET="$time_limit" \
  timeout -s KILL "$((time_limit + 600))" python3 -m pytest -q -s -p no:cacheprovider -rfE \
    test_raw_corpus.py test_schemathesis.py "$@"
) || status=$?
if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "kaji exited during the run; its log:" >&2
  tail -n 50 "$work/server.log" >&2
  status=1
fi
[ "$status" -eq 137 ] && echo "killed $((time_limit + 600))s after the start (KAJI_ST_TIME_LIMIT + 10 min)" >&2
exit "$status"

#!/usr/bin/env bash
# Crash loop of the whole server: runs crates/kaji/tests/crash.rs with many
# rounds (default 50). Each round starts `kaji up` on the same data dir, runs
# concurrent writers through the API, SIGKILLs the server at a random moment
# and checks, after the restart, that every acknowledged write survived,
# nothing is half-written and the revision never went backwards.
#
# Usage: scripts/crash-loop.sh [ROUNDS] [extra cargo test arguments…]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-${KAJI_CRASH_ROUNDS:-50}}"
shift || true
KAJI_CRASH_ROUNDS="$rounds" exec cargo test -p kaji --test crash "$@" -- --nocapture

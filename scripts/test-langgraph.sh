#!/usr/bin/env bash
# Tests examples/langgraph-agent and the LangGraph API the bridge delivers to, against a real
# `langgraph dev` server (scripts/langgraph.sh; pinned venv built in ~/.cache/auren on first
# use). Offline once the venv exists.
#
#   scripts/test-langgraph.sh            # API tests, then restart tests (about 1.5 minutes)
#   scripts/test-langgraph.sh api        # API tests only
#   TRANSCRIPT=/tmp/t.md scripts/test-langgraph.sh api   # also write every request/response
#   LANGGRAPH_TEST_PORT=8124 ...         # default: a free port
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/langgraph.sh
source "$here/langgraph.sh"

port=${LANGGRAPH_TEST_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
pid_file=$(mktemp)
cleanup() {
  local rc=$?
  # The restart tests start new server processes; the last one's pid is in pid_file.
  if [ -s "$pid_file" ]; then LANGGRAPH_PID=$(cat "$pid_file"); fi
  if [ "$rc" != 0 ] && [ -n "${LANGGRAPH_LOG:-}" ] && [ -f "$LANGGRAPH_LOG" ]; then
    echo "[test-langgraph] failed; the server log ends with:" >&2
    sed 's/\x1b\[[0-9;]*m//g' "$LANGGRAPH_LOG" | tail -n 40 >&2
  fi
  stop_langgraph
  rm -f "$pid_file"
}
trap cleanup EXIT

start_langgraph "$port"
LANGGRAPH_SH="$here/langgraph.sh" LANGGRAPH_PID_FILE="$pid_file" \
  "$LANGGRAPH_PYTHON" "$here/../examples/langgraph-agent/tests/test_server.py" "$@"

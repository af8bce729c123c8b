#!/usr/bin/env bash
# A real LangGraph Agent Server (`langgraph dev`, in-memory runtime) serving
# examples/langgraph-agent on 127.0.0.1, for the agent delivery tests and the example's README.
# Sourced (also under set -euo pipefail); needs only python3 (the pinned venv is built in ~/.cache/auren on first use, ~75 s)
# and curl.
#
#   source scripts/langgraph.sh
#   start_langgraph 8124            # exports LANGGRAPH_URL, LANGGRAPH_PID, LANGGRAPH_LOG,
#                                   # LANGGRAPH_WORKDIR, LANGGRAPH_PYTHON
#   ...
#   stop_langgraph --keep           # SIGTERM: the server flushes its state to LANGGRAPH_WORKDIR
#   start_langgraph 8124 "$LANGGRAPH_WORKDIR"   # restarted with its threads and checkpoints
#   stop_langgraph                  # stops it and removes the scratch copy it made
#
# What it takes care of (examples/langgraph-agent/API-NOTES.md has the measurements):
# - no outbound calls: CLI analytics (a non-daemon thread with no timeout), the version check
#   and LangSmith tracing are switched off, licence/control-plane/LangSmith keys are unset;
#   --no-browser, no tunnel;
# - `langgraph dev` silently moves to a random port when its own is taken: the port is checked
#   free first, and afterwards the listener on it must be this server's process;
# - the "in-memory" server pickles its state into ./.langgraph_api under its working directory:
#   each start without WORKDIR runs in a fresh copy of the example under mktemp -d, so no state
#   leaks between runs and nothing is written into the repository;
# - --no-reload: one process, and SIGTERM to it shuts it down cleanly (and flushes).

_LANGGRAPH_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/pyenv.sh
source "$_LANGGRAPH_HERE/pyenv.sh"

: "${LANGGRAPH_START_TIMEOUT:=120}" # seconds; a cold start on 2 busy cores takes 5-10
LANGGRAPH_EXAMPLE="$(cd "$_LANGGRAPH_HERE/.." && pwd)/examples/langgraph-agent"

_lg_log() { echo "[langgraph] $*" >&2; }

_lg_port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The pid listening on 127.0.0.1:PORT, when ss can tell.
_lg_listener_pid() {
  command -v ss >/dev/null || return 0
  ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2 || true
}

# start_langgraph PORT [WORKDIR]: starts the server and waits until it answers.
# WORKDIR: a directory holding the graph project (langgraph.json) and the server's saved state;
# given, the server resumes what it saved there; left out, a fresh copy of the example is made.
start_langgraph() {
  local port=${1:?usage: start_langgraph PORT [WORKDIR]} workdir=${2:-} venv log from t0 i pid
  if [ -n "${LANGGRAPH_PID:-}" ] && kill -0 "$LANGGRAPH_PID" 2>/dev/null; then
    _lg_log "already running (pid $LANGGRAPH_PID, $LANGGRAPH_URL); stop_langgraph first"
    return 1
  fi
  if _lg_port_busy "$port"; then
    _lg_log "port $port is taken by another process; pick another one"
    return 1
  fi
  venv=$(ensure_venv langgraph) || return 1
  if [ -z "$workdir" ]; then
    workdir=$(mktemp -d "${TMPDIR:-/tmp}/auren-langgraph.XXXXXX") || return 1
    cp -r "$LANGGRAPH_EXAMPLE/." "$workdir/"
    rm -rf "$workdir/.langgraph_api" "$workdir/__pycache__"
    export LANGGRAPH_OWN_WORKDIR=$workdir # stop_langgraph removes this one, and only this one
  elif [ ! -f "$workdir/langgraph.json" ]; then
    _lg_log "$workdir has no langgraph.json"
    return 1
  fi
  if [ "$workdir" = "${LANGGRAPH_OWN_WORKDIR:-}" ]; then
    log="$workdir.log" # one log across restarts, removed with the scratch copy
  else
    log=$(mktemp "${TMPDIR:-/tmp}/auren-langgraph-$port.XXXXXX.log") || return 1
  fi
  echo "[langgraph] $(date -u +%FT%TZ) starting on port $port in $workdir" >>"$log"
  from=$(($(stat -c %s "$log") + 1)) # this start's part of the log
  t0=$(date +%s.%N)
  # Graph paths in langgraph.json resolve against the cwd, and the state is saved under it.
  (
    cd "$workdir" || exit 1
    exec env \
      -u LANGSMITH_API_KEY -u LANGCHAIN_API_KEY -u LANGSMITH_ENDPOINT -u LANGCHAIN_ENDPOINT \
      -u LANGGRAPH_CLOUD_LICENSE_KEY -u LANGSMITH_CONTROL_PLANE_API_KEY \
      -u OTEL_ENABLED -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT \
      LANGGRAPH_CLI_NO_ANALYTICS=1 LANGGRAPH_NO_VERSION_CHECK=true LANGSMITH_TRACING=false \
      LANGCHAIN_TRACING_V2=false PYTHONUNBUFFERED=1 \
      "$venv/bin/langgraph" dev --host 127.0.0.1 --port "$port" --no-browser --no-reload
  ) >>"$log" 2>&1 &
  pid=$!
  export LANGGRAPH_PID=$pid LANGGRAPH_LOG=$log LANGGRAPH_WORKDIR=$workdir \
    LANGGRAPH_URL="http://127.0.0.1:$port" LANGGRAPH_PYTHON="$venv/bin/python"
  for ((i = 0; i < LANGGRAPH_START_TIMEOUT * 5; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      _lg_log "the server exited while starting; its log ($log) ends with:"
      tail -c "+$from" "$log" | tail -n 30 >&2
      unset LANGGRAPH_PID
      return 1
    fi
    if tail -c "+$from" "$log" | grep -q "is already in use"; then
      _lg_log "port $port was taken while starting and the server moved elsewhere; stopping it"
      stop_langgraph
      return 1
    fi
    if curl -fsS -m 2 -o /dev/null "$LANGGRAPH_URL/ok" 2>/dev/null; then
      local owner
      owner=$(_lg_listener_pid "$port")
      if [ -n "$owner" ] && [ "$owner" != "$pid" ]; then
        _lg_log "127.0.0.1:$port answers, but from pid $owner, not from this server ($pid)"
        stop_langgraph
        return 1
      fi
      export LANGGRAPH_START_SECONDS
      LANGGRAPH_START_SECONDS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
      _lg_log "ready at $LANGGRAPH_URL in ${LANGGRAPH_START_SECONDS}s (pid $pid, log $log, state in $workdir)"
      return 0
    fi
    sleep 0.2
  done
  _lg_log "not ready after ${LANGGRAPH_START_TIMEOUT}s; its log ($log) ends with:"
  tail -n 30 "$log" >&2
  stop_langgraph
  return 1
}

# stop_langgraph [--keep] [--kill]: SIGTERM (the server then saves its state), SIGKILL after
# 20 s. --kill sends SIGKILL at once (a crash: what the server did not save yet is lost).
# Removes the scratch copy start_langgraph made, and its log, unless --keep (or, for the log,
# LANGGRAPH_KEEP_LOG=1).
stop_langgraph() {
  local keep= sig=TERM a i
  for a in "$@"; do
    case $a in
      --keep) keep=1 ;;
      --kill) sig=KILL ;;
      *) _lg_log "stop_langgraph: unknown option $a"; return 1 ;;
    esac
  done
  if [ -n "${LANGGRAPH_PID:-}" ] && kill -0 "$LANGGRAPH_PID" 2>/dev/null; then
    kill -"$sig" "$LANGGRAPH_PID" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "$LANGGRAPH_PID" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$LANGGRAPH_PID" 2>/dev/null; then
      _lg_log "pid $LANGGRAPH_PID still running 20 s after SIG$sig; killing it"
      kill -KILL "$LANGGRAPH_PID" 2>/dev/null || true
    fi
    wait "$LANGGRAPH_PID" 2>/dev/null || true # reaps it when it is this shell's child
  fi
  unset LANGGRAPH_PID
  if [ -z "$keep" ] && [ -n "${LANGGRAPH_OWN_WORKDIR:-}" ] &&
    [ "${LANGGRAPH_WORKDIR:-}" = "$LANGGRAPH_OWN_WORKDIR" ]; then
    rm -rf "$LANGGRAPH_OWN_WORKDIR"
    [ -n "${LANGGRAPH_KEEP_LOG:-}" ] || rm -f "$LANGGRAPH_OWN_WORKDIR.log"
    unset LANGGRAPH_WORKDIR LANGGRAPH_OWN_WORKDIR
  fi
  return 0
}

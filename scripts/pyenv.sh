#!/usr/bin/env bash
# Cached Python virtualenvs for the test tools (schemathesis, standardwebhooks, validators, a
# LangGraph server). Each group pins its packages in scripts/requirements/NAME.txt; the venv
# lives in ~/.cache/auren, keyed by the hash of that file, so a changed pin builds a new one and
# an unchanged one is reused across runs and clones. Sourced by the test scripts.

: "${AUREN_CACHE:=$HOME/.cache/auren}"

# ensure_venv NAME: prints the venv's directory, building it on first use.
ensure_venv() {
  local name=$1 here req hash venv
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  req="$here/requirements/$name.txt"
  hash=$(sha256sum "$req" | cut -c1-12)
  venv="$AUREN_CACHE/venv-$name-$hash"
  if [ ! -f "$venv/.complete" ]; then
    mkdir -p "$AUREN_CACHE"
    # Tests running in parallel may all ask for the same venv on a fresh machine: one builds it,
    # the others wait on the lock and then find it complete.
    (
      flock 9
      if [ ! -f "$venv/.complete" ]; then
        echo "[pyenv] building the $name virtualenv in $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2 || exit 1
        touch "$venv/.complete"
      fi
    ) 9>"$AUREN_CACHE/venv-$name.lock" || return 1
  fi
  echo "$venv"
}

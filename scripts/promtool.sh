# shellcheck shell=bash
# find_promtool: used by scripts/validate-deploy.sh (rules, config, dashboard queries) and by
# scripts/test.sh (the metrics test checks a live /metrics with `promtool check metrics`).
: "${AUREN_CACHE:=$HOME/.cache/auren}"
# Prints the path of promtool, fetching it into the cache when it is not installed; prints the
# reason and returns 1 when it cannot be had.
find_promtool() {
  local cached=$AUREN_CACHE/promtool/promtool tmp log
  if command -v promtool >/dev/null 2>&1; then command -v promtool; return 0; fi
  if [ -x "$cached" ]; then echo "$cached"; return 0; fi
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
    echo "no promtool on PATH and no apt-get/dpkg-deb to fetch Debian's prometheus package" >&2
    return 1
  fi
  tmp=$(mktemp -d) log=$tmp/apt.log
  fetch() { (cd "$tmp" && apt-get download prometheus) >>"$log" 2>&1; }
  if ! fetch; then
    # A new machine may have no package lists yet.
    if [ "$(id -u)" = 0 ]; then apt-get update >>"$log" 2>&1 || true; fi
    if ! fetch; then
      echo "could not download Debian's prometheus package (which ships promtool):" >&2
      tail -n 3 "$log" >&2
      rm -rf "$tmp"
      return 1
    fi
  fi
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/unpacked"
  mkdir -p "$(dirname "$cached")"
  install -m 0755 "$tmp/unpacked/usr/bin/promtool" "$cached"
  rm -rf "$tmp"
  echo "$cached"
}

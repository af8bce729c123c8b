#!/bin/bash
# The image's health check: exits 0 when GET PATH on 127.0.0.1:PORT answers 200, else 1.
# The runtime image has no curl or wget; bash's /dev/tcp is enough for one plain HTTP request.
#
#   auren-healthcheck [PORT [PATH]]
#
# PORT defaults to the port of AUREN_HTTP_ADDR (else 8000), PATH to /health: `auren serve`.
# `auren bridge` has no API listener; check its metrics listener: auren-healthcheck 9000 /metrics
# With HTTPS on the API (AUREN_TLS_CERT), bash cannot speak TLS: the default is then the plain
# metrics listener (AUREN_METRICS_ADDR, else 9000), /metrics.
set -u
addr=${AUREN_HTTP_ADDR:-0.0.0.0:8000}
path=${2:-/health}
if [ -n "${AUREN_TLS_CERT:-}" ] && [ $# -eq 0 ]; then
  addr=${AUREN_METRICS_ADDR:-0.0.0.0:9000}
  path=/metrics
fi
port=${1:-${addr##*:}}
{ exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || { echo "nothing listens on 127.0.0.1:$port"; exit 1; }
printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
IFS=' ' read -r -t 5 _version status _reason <&3 || { echo "no answer from 127.0.0.1:$port$path"; exit 1; }
exec 3<&-
if [ "$status" = 200 ]; then exit 0; fi
echo "GET $path on port $port answered ${status:-nothing}"
exit 1

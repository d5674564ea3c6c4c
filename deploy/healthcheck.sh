#!/bin/bash
# Container health check for inferd (Docker HEALTHCHECK): exits 0 when the local server
# answers GET $INFERD_HEALTH_PATH with 200, 1 otherwise (refused, timed out, any other status).
# Uses bash's /dev/tcp so the image needs no curl.
# Environment: INFERD_HEALTH_PORT (default 8000), INFERD_HEALTH_PATH (default
# /v2/health/live), INFERD_HEALTH_TIMEOUT seconds (default 2).
set -u
port=${INFERD_HEALTH_PORT:-8000}
path=${INFERD_HEALTH_PATH:-/v2/health/live}
timeout_s=${INFERD_HEALTH_TIMEOUT:-2}
# Read only the status line; the server closes an HTTP/1.0 connection after answering.
status=$(timeout "$timeout_s" bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" "$2" >&3
    IFS= read -r line <&3 || exit 1
    printf "%s" "$line"
' _ "$port" "$path" 2>/dev/null) || exit 1
case "$status" in
    "HTTP/1."?" 200 "*) exit 0 ;;
    *) exit 1 ;;
esac

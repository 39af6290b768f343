#!/usr/bin/env bash
# The two commands: `./local.sh up` runs Sluice, `./local.sh test` runs the checks.
# Each installs what it needs first (redis-server, .venv, the project; chromium, node and
# npm for the tests).
set -euo pipefail
cd "$(dirname "$0")"

# Install a Debian package when its command is missing.
need() {
  local command="$1" package="$2"
  if ! command -v "$command" >/dev/null 2>&1; then
    echo "local.sh: installing $package" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$package" >/dev/null
  fi
}

setup() {
  # Tests always start their own; `up` only when no REDIS_URL names a server.
  if [ "${1:-}" != "external-redis" ]; then
    need redis-server redis-server
  fi
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  # Reinstall only when the project definition changed since the last install.
  if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    touch .venv/.installed
  fi
}

free_port() {
  .venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Whether nothing listens on 127.0.0.1:$1.
port_is_free() {
  .venv/bin/python -c 'import socket, sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

up() {
  if [ -n "${REDIS_URL:-}" ]; then setup external-redis; else setup; fi
  # The ingress on 8080 unless something else holds it (another Sluice, say).
  if [ -z "${SLUICE_INGRESS_PORT:-}" ] && [ -z "${PORT:-}" ] && ! port_is_free 8080; then
    SLUICE_INGRESS_PORT=$(free_port)
    export SLUICE_INGRESS_PORT
    echo "local.sh: port 8080 is taken; the ingress listens on $SLUICE_INGRESS_PORT" >&2
  fi
  if [ -z "${REDIS_URL:-}" ]; then
    mkdir -p .local
    local port
    port=$(free_port)
    # Its own session: Ctrl-C reaches Sluice only, which shuts down gracefully
    # while Redis is still there; the trap stops Redis afterwards.
    setsid redis-server infra/redis.conf --port "$port" --bind 127.0.0.1 \
      --dir "$PWD/.local" --logfile "$PWD/.local/redis.log" &
    REDIS_PID=$!
    trap 'kill "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null || true' EXIT
    for _ in $(seq 100); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && break
      sleep 0.05
    done
    export REDIS_URL="redis://127.0.0.1:$port/0"
    echo "local.sh: redis-server on port $port (data in .local/)" >&2
  fi
  SLUICE_DEMO="${SLUICE_DEMO:-true}" .venv/bin/sluice dev "$@"
}

run_tests() {
  setup
  # The dashboard's browser test.
  need chromium chromium
  # The Node client's tests (clients/node); npm comes with some nodejs builds.
  need node nodejs
  need npm npm
  .venv/bin/ruff check .
  .venv/bin/ruff format --check .
  .venv/bin/mypy
  .venv/bin/pytest "$@"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  test) shift; run_tests "$@" ;;
  bench) shift; setup; need wrk wrk; .venv/bin/python -m bench "$@" ;;
  instructions) shift; setup; need valgrind valgrind; .venv/bin/python -m bench.instructions "$@" ;;
  *) echo "usage: ./local.sh up | test [--long] [pytest args] | bench [--json FILE] [--jobs N] [--backlog N] | instructions [limits|tracing|ingress] [--jobs N] [--rounds N] [--keep DIR]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# posgate's whole test suite, on a fresh machine or in CI: installs what the tests need and the
# machine lacks (Debian packages, when running as root), checks PostgreSQL (mandatory under
# CI=true), then runs go vet and every test with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'test.sh: %s\n' "$*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "Go is not installed (https://go.dev/dl/, go 1.26 or later)"; exit 1
fi

# --- system packages the tests use ------------------------------------------------------------
# gcc: the race detector needs cgo. chromium: the console's browser test. php-cli, python3-jwt:
# the cross-language client tests (Debian's /usr/bin/python3, not a pyenv shim). curl, jq: the
# README quickstart, which a test runs as written.
missing=()
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v php >/dev/null 2>&1 || missing+=(php-cli)
if ! /usr/bin/python3 -c 'import jwt' >/dev/null 2>&1; then missing+=(python3 python3-jwt); fi
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian packages the tests use: ${missing[*]} (apt-get; this may take a minute or two)"
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get update"
    apt-get update -qq >/dev/null
    # Progress in a few lines (how many packages, then one line per package unpacked) rather than
    # minutes of silence; the whole output is shown only when apt-get fails.
    apt_log=$(mktemp)
    if ! apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" 2>&1 |
      tee "$apt_log" | sed -unE 's/^([0-9]+ upgraded, [0-9]+ newly installed.*)/test.sh:   \1/p; s/^Unpacking ([^ ]+).*/test.sh:   unpacking \1/p' >&2; then
      cat "$apt_log" >&2; rm -f "$apt_log"; log "apt-get install failed"; exit 1
    fi
    rm -f "$apt_log"
    log "installed ${missing[*]}"
  else
    log "missing ${missing[*]} (not root or no apt-get): the tests that need them skip locally and fail under CI=true"
  fi
fi

# --- PostgreSQL ---------------------------------------------------------------------------------
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [[ -d /etc/postgresql ]]; then
    log "starting PostgreSQL"
    for v in /etc/postgresql/*; do
      pg_ctlcluster --skip-systemctl-redirect "$(basename "$v")" main start >/dev/null 2>&1 || true
    done
    for _ in $(seq 1 20); do pg_up && break; sleep 0.5; done
  fi
fi
if pg_up; then
  log "PostgreSQL reachable on 127.0.0.1:5432"
elif [[ ${CI:-} == true ]]; then
  log "PostgreSQL is not reachable on 127.0.0.1:5432 (user postgres, trust): required under CI=true"; exit 1
else
  log "PostgreSQL is not reachable on 127.0.0.1:5432: PostgreSQL tests will skip"
fi

# --- the tests ----------------------------------------------------------------------------------
race=-race
if ! command -v gcc >/dev/null 2>&1; then
  if [[ ${CI:-} == true ]]; then log "gcc is required for the race detector under CI=true"; exit 1; fi
  log "no C compiler: running without -race"; race=
fi
log "go vet ./..."
go vet ./...
log "go test $race -count=1 ./..."
go test $race -count=1 -timeout 20m ./...

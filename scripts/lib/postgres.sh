# shellcheck shell=bash
# PostgreSQL: install when missing, start when stopped, create roles and databases from .env.
# Source after common.sh. Never hard-codes a PostgreSQL version: the cluster under /etc/postgresql tells.

pg_version() {
  local dir
  dir=$(ls -d /etc/postgresql/*/main 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] || return 1
  basename "$(dirname "$dir")"
}

pg_install() {
  # postgresql-contrib carries pg_trgm on Debian 12; on newer releases it is part of the server package.
  apt_install_missing postgresql postgresql-contrib
  pg_version >/dev/null || die "PostgreSQL is installed but no cluster 'main' exists under /etc/postgresql"
}

pg_ready() { pg_isready -q -h "${1:-127.0.0.1}" -p "${2:-5432}"; }

pg_start() {
  local version
  version=$(pg_version) || die "no PostgreSQL cluster found"
  if pg_ready 127.0.0.1 "${PG_PORT:-5432}"; then return 0; fi
  changed "starting PostgreSQL $version"
  if has_systemd; then
    systemctl enable --now "postgresql@$version-main" >/dev/null
  else
    pg_ctlcluster "$version" main start
  fi
  wait_until 60 "PostgreSQL to accept connections" pg_ready 127.0.0.1 "${PG_PORT:-5432}"
}

pg_ensure_running() { pg_install; pg_start; }

# psql as the postgres superuser over the local socket. SQL comes on stdin so that passwords
# never appear on a command line (ps would show them).
pg_admin_psql() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# pg_exists CATALOG COLUMN VALUE: whether a row of that catalog has that name.
pg_exists() {
  [ "$(pg_admin_psql -tA -v value="$3" <<<"SELECT count(*) FROM $1 WHERE $2 = :'value'")" = 1 ]
}

# pg_ensure_role NAME PASSWORD: a login role, its password kept equal to .env's.
pg_ensure_role() {
  pg_exists pg_roles rolname "$1" || changed "creating PostgreSQL role $1"
  pg_admin_psql -v role="$1" -v password="$2" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'role', :'password') \gexec
SQL
}

# pg_ensure_database NAME OWNER: created once, owned by OWNER (so its migrations may create a
# trusted extension such as pg_trgm without a superuser).
pg_ensure_database() {
  pg_exists pg_database datname "$1" && return 0
  changed "creating database $1"
  pg_admin_psql -v db="$1" -v owner="$2" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
}

# pg_drop_database NAME: tests use it to start from a clean database.
pg_drop_database() {
  pg_admin_psql -v db="$1" <<'SQL'
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db') \gexec
SQL
}

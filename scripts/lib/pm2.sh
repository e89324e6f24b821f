# shellcheck shell=bash
# Node.js, PM2 and root's PM2 daemon, and newman (the tests' Postman runner). Source after common.sh.

PM2_VERSION=7.0.4
NEWMAN_VERSION=6.2.2

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

node_ensure() {
  # PM2 7 needs Node >= 18: Debian 12 and Ubuntu 24.04 both ship 18, so their own packages suffice.
  if [ "$(node_major)" -lt 18 ]; then apt_install_missing nodejs npm; fi
  [ "$(node_major)" -ge 18 ] || die "Node.js >= 18 is required by PM2 $PM2_VERSION, found $(node --version 2>/dev/null || echo none)"
  command -v npm >/dev/null || apt_install_missing npm
}

# The installed PM2's version, read from its package: `pm2 --version` would spawn a daemon (without the
# kill signal below) as a side effect.
pm2_installed_version() {
  local root
  root=$(npm root -g 2>/dev/null) || return 0
  node -p "require('$root/pm2/package.json').version" 2>/dev/null || true
}

# npm_install_global PACKAGE@VERSION. A slow machine (an emulated VM) fetches the hundred tarballs of PM2 for
# minutes, and a connection reset on the way then failed the whole install after npm's default two retries.
npm_install_global() {
  npm install -g --no-fund --no-audit --loglevel=error --fetch-retries=6 --fetch-retry-mintimeout=10000 \
    --fetch-retry-maxtimeout=60000 "$1" >/dev/null
}

pm2_install() {
  node_ensure
  if [ "$(pm2_installed_version)" != "$PM2_VERSION" ]; then
    changed "installing PM2 $PM2_VERSION"
    npm_install_global "pm2@$PM2_VERSION"
  fi
}

newman_install() {
  node_ensure
  if [ "$(newman --version 2>/dev/null)" != "$NEWMAN_VERSION" ]; then
    changed "installing newman $NEWMAN_VERSION"
    npm_install_global "newman@$NEWMAN_VERSION"
  fi
}

pm2_home() { echo "${PM2_HOME:-$HOME/.pm2}"; }

pm2_daemon_pid() {
  local pid
  pid=$(cat "$(pm2_home)/pm2.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# The daemon must stop apps with SIGTERM (PM2's default SIGINT makes gunicorn drop in-flight
# requests). The signal is read from the daemon's environment when it starts, so a daemon started
# without it is replaced.
pm2_daemon_ensure() {
  local pid
  if pid=$(pm2_daemon_pid); then
    if tr '\0' '\n' <"/proc/$pid/environ" | grep -qx 'PM2_KILL_SIGNAL=SIGTERM'; then return 0; fi
    changed "restarting the PM2 daemon so that it stops apps with SIGTERM"
    pm2 kill >/dev/null
  fi
  changed "starting root's PM2 daemon (PM2_KILL_SIGNAL=SIGTERM)"
  PM2_KILL_SIGNAL=SIGTERM pm2 ping >/dev/null
}

# pm2_apps: one line per app PM2 knows, "NAME STATUS INSTANCES TOPOLOGY": online when any of its instances is,
# else its first instance's status; the TOPOLOGY it was started with, "-" for none. One `pm2 jlist` (a node
# process and a round trip to the daemon: seconds on an emulated VM) for everything the functions below ask.
# The list is its line that starts with "[": PM2 may print warnings before it (a daemon of another version).
pm2_apps() {
  pm2 jlist 2>/dev/null | python3 -c '
import json, sys
listed = [line for line in sys.stdin if line.startswith("[")]
if not listed:
    sys.exit("PM2 answered `pm2 jlist` without a list of apps")
apps = {}
for app in json.loads(listed[-1]):
    env = app["pm2_env"]
    status, count, topology = apps.get(app["name"], (env["status"], 0, env.get("TOPOLOGY") or "-"))
    apps[app["name"]] = ("online" if env["status"] == "online" else status, count + 1, topology)
for name, (status, count, topology) in apps.items():
    print(name, status, count, topology)
'
}

# pm2_app_line APPS NAME: NAME's line of pm2_apps's output APPS, empty when PM2 has no such app.
pm2_app_line() { awk -v name="$2" '$1 == name' <<<"$1"; }

# pm2_app_online NAME
pm2_app_online() { [ "$(pm2_app_line "$(pm2_apps)" "$1" | cut -d' ' -f2)" = online ]; }

# pm2_app_topology NAME: the TOPOLOGY app NAME was started with; empty when there is no such app or none was set.
pm2_app_topology() { pm2_app_line "$(pm2_apps)" "$1" | awk '$4 != "-" { print $4 }'; }

# pm2_instances NAME: how many instances of app NAME PM2 runs.
pm2_instances() { pm2_app_line "$(pm2_apps)" "$1" | awk '{ n = $3 } END { print n + 0 }'; }

# pm2_scale COUNT NAME...: COUNT instances of each app NAME (PM2 numbers them in NODE_APP_INSTANCE).
pm2_scale() {
  local count=$1 apps name scaled=0
  shift
  apps=$(pm2_apps)
  for name in "$@"; do
    [ "$(pm2_app_line "$apps" "$name" | awk '{ n = $3 } END { print n + 0 }')" = "$count" ] && continue
    changed "PM2: $count instances of $name"
    pm2 scale "$name" "$count" >/dev/null
    scaled=1
  done
  if [ "$scaled" = 1 ]; then pm2 save --force >/dev/null; fi
}

# pm2_same_topology NAME...: refuse to mix topologies: an app already online under another TOPOLOGY keeps the
# broker it was started with until it is stopped (`make down`).
pm2_same_topology() {
  local apps name status started
  apps=$(pm2_apps)
  for name in "$@"; do
    read -r _ status _ started <<<"$(pm2_app_line "$apps" "$name")"
    [ "${status:-}" = online ] || continue
    [ "$started" != - ] || started=single
    [ "$started" = "${TOPOLOGY:-single}" ] ||
      die "$name runs in TOPOLOGY=$started: \`make down\` first, then \`make up TOPOLOGY=${TOPOLOGY:-single}\`"
  done
}

# pm2_start_apps NAME...: start the named apps of config.yaml that are not online; report which.
pm2_start_apps() {
  local apps name started=()
  apps=$(pm2_apps)
  for name in "$@"; do
    [ "$(pm2_app_line "$apps" "$name" | cut -d' ' -f2)" = online ] && continue
    (cd "$ROOT" && pm2 start config.yaml --only "$name" >/dev/null)
    started+=("$name")
  done
  if [ ${#started[@]} -gt 0 ]; then
    changed "started under PM2: ${started[*]}"
    pm2 save --force >/dev/null
  else
    log "already online under PM2: $*"
  fi
}

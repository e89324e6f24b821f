# Python virtual environments: one per service, under srcs/<service>/.venv.
# Source after common.sh.

python_install() {
  command -v python3 >/dev/null || apt_install_missing python3
  # Debian and Ubuntu split venv (and ensurepip) out of python3; a pyenv or source build has them built in.
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install_missing python3-venv
}

# venv_ensure SERVICE_DIR [REQUIREMENTS...]: build or update the venv, reinstalling only when the
# requirement files changed since the last successful install (a stamp holds their checksum).
venv_ensure() {
  local dir=$1; shift
  local files=("$dir/requirements.txt" "$@") venv=$dir/.venv stamp sum args=() f
  python_install
  for f in "${files[@]}"; do [ -f "$f" ] || die "$f is missing"; args+=(-r "$f"); done
  sum=$(cat "${files[@]}" | sha256sum | cut -d' ' -f1)
  stamp=$venv/.requirements.sha256
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then return 0; fi
  changed "building the virtual environment of $(basename "$dir")"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${args[@]}"
  echo "$sum" >"$stamp"
}

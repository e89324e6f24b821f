# shellcheck shell=bash
# Python virtual environments: one per service, under srcs/<service>/.venv.
# Source after common.sh.

python_install() {
  command -v python3 >/dev/null || apt_install_missing python3
  # Debian and Ubuntu split venv (and ensurepip) out of python3; a pyenv or source build has them built in.
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install_missing python3-venv
}

# venv_ensure SERVICE_DIR [REQUIREMENTS...]: build or update the venv, installing each requirements
# file only when it changed since its last successful install (a stamp per file holds its checksum),
# so the runtime set and the runtime + test set never undo each other.
venv_ensure() {
  local dir=$1; shift
  local venv=$dir/.venv file stamp sum
  python_install
  [ -x "$venv/bin/python" ] || { changed "creating the virtual environment of $(basename "$dir")"; python3 -m venv "$venv"; }
  for file in "$dir/requirements.txt" "$@"; do
    [ -f "$file" ] || die "$file is missing"
    sum=$(sha256sum "$file" | cut -d' ' -f1)
    stamp=$venv/.installed-$(basename "$file").sha256
    [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ] && continue
    changed "installing $(basename "$dir")/$(basename "$file") into its virtual environment"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$file"
    echo "$sum" >"$stamp"
  done
}

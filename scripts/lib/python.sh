# shellcheck shell=bash
# Python virtual environments: one per service, under srcs/<service>/.venv.
# Source after common.sh.

python_install() {
  command -v python3 >/dev/null || apt_install_missing python3
  # Debian and Ubuntu split venv (and ensurepip) out of python3; a pyenv or source build has them built in.
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install_missing python3-venv
}

COMMON_DIR=$ROOT/srcs/common

# venv_ensure DIR [REQUIREMENTS...]: build or update DIR/.venv, installing each requirements file only when it
# changed since its last successful install (a stamp per file holds its checksum), so the runtime set and the
# runtime + test set never undo each other; then the platform's internal library, srcs/common.
venv_ensure() {
  local dir=$1; shift
  local venv=$dir/.venv file
  python_install
  [ -x "$venv/bin/python" ] || { changed "creating the virtual environment of $(basename "$dir")"; python3 -m venv "$venv"; }
  for file in "$dir/requirements.txt" "$@"; do
    [ -f "$file" ] || die "$file is missing"
    venv_stamped "$venv" "$file" "$(basename "$dir")/$(basename "$file")" -r "$file"
  done
  # By absolute path (pip reads a relative path in a requirements file against its working directory, not the
  # file's) and editable, so the venv runs the library of this very checkout; no dependencies of its own: the
  # requirements above pin what its modules need.
  venv_stamped "$venv" "$COMMON_DIR/pyproject.toml" "the internal library srcs/common" --no-deps -e "$COMMON_DIR"
}

# venv_stamped VENV FILE WHAT PIP-ARGS...: pip install PIP-ARGS into VENV unless FILE is unchanged since the last
# successful install.
venv_stamped() {
  local venv=$1 file=$2 what=$3 sum stamp; shift 3
  sum=$(sha256sum "$file" | cut -d' ' -f1)
  stamp=$venv/.installed-$(echo "$file" | tr '/' '_').sha256
  [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ] && return 0
  changed "installing $what into the virtual environment of $(basename "$(dirname "$venv")")"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"
  echo "$sum" >"$stamp"
}

# Sourced by the Python test runners: makes (once) a virtualenv at "$venv"
# with a Python >= 3.9, and upgrades its pip. Callers then install into it.
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))'; then
  echo "$python is older than 3.9: install python3 (>= 3.9) and python3-venv" >&2
  exit 1
fi
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv" || {
    echo "cannot create a virtualenv: \`apt-get install -y python3-venv\`" >&2
    exit 1
  }
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip

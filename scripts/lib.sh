# Shared set-up for scripts/demo and scripts/test: Debian packages and the virtual environment.
# Sourced, not run. Everything is idempotent: a second run installs nothing.

# Install the Debian packages that are missing (apt-get, as root or through sudo).
need_debs() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; return 1; }
        sudo="sudo"
    fi
    echo "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    # No recommends: they pull in systemd and a desktop's worth of packages.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=180 "${missing[@]}"
}

# Create .venv (Python >= 3.11) and install sessiond into it, with the dev group if asked.
# A stamp of pyproject.toml skips the install when nothing changed.
make_venv() {
    local group="${1:-}"
    local python="${PYTHON:-python3}"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "sessiond needs Python 3.11 or newer ($python is older)" >&2; return 1; }
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    local stamp=".venv/.sessiond-${group:-runtime}"
    local want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        # pip >= 25.1 understands dependency groups; the venv's own pip may be older.
        .venv/bin/python -m pip install -q --upgrade pip
        if [ -n "$group" ]; then
            .venv/bin/python -m pip install -q -e . --group "$group"
        else
            .venv/bin/python -m pip install -q -e .
        fi
        echo "$want" > "$stamp"
    fi
}

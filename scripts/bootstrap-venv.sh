#!/bin/sh
# Create the project's virtual environment.  Debian splits venv/ensurepip into the
# python3-venv package: install it when it is missing and we may (running as root).
set -eu
python=${1:-python3}
venv=${2:-.venv}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "srs needs Python 3.11 or newer; $python is $("$python" --version 2>&1)" >&2
    exit 1
fi
if "$python" -m venv "$venv" 2>/dev/null; then
    exit 0
fi
rm -rf "$venv"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "python${version}-venv" || \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
    "$python" -m venv "$venv"
else
    echo "cannot create $venv: install the python3-venv package (sudo apt-get install python3-venv)" >&2
    exit 1
fi

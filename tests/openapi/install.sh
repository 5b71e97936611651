#!/usr/bin/env bash
# Installs what tests/openapi.rs runs (the versions in requirements.txt) into a Python venv,
# target/schemathesis-venv unless SCHEMATHESIS_VENV names another. Does nothing when that venv
# already has them. The test runs this, and so does .ci/run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${SCHEMATHESIS_VENV:-$here/../../target/schemathesis-venv}"
requirements="$here/requirements.txt"
# A copy of the requirements the venv was made from: a change to them reinstalls.
stamp="$venv/requirements.installed"
if [ -x "$venv/bin/schemathesis" ] && cmp -s "$requirements" "$stamp"; then
    exit 0
fi
echo "installing $(grep -v '^#' "$requirements" | tr '\n' ' ')into $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"

#!/usr/bin/env bash
# Creates the Python virtualenv localstack/.venv (gitignored) when it is missing and installs
# localstack/requirements.txt into it. The scripts that need Python tools (the AWS CLI, pyarrow)
# call this first and then use localstack/.venv/bin/*.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=localstack/.venv
if ! command -v python3 >/dev/null 2>&1; then
  echo "python-venv: python3 not found. These checks need Python 3 with venv and pip (e.g. apt-get install python3 python3-venv)." >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "python-venv: creating $VENV" >&2
  if ! python3 -m venv "$VENV"; then
    rm -rf "$VENV"
    echo "python-venv: 'python3 -m venv $VENV' failed: install Python's venv module (e.g. apt-get install python3-venv)." >&2
    exit 1
  fi
fi
"$VENV/bin/pip" install -q -r localstack/requirements.txt

#!/usr/bin/env bash
# Creates localstack/.venv (gitignored) with `python3 -m venv` when it is missing and installs
# localstack/requirements.txt into it (MiniStack, AWS CLI, boto3, pyarrow). Re-running it is cheap:
# pip is only called when the requirements changed since the last successful install.
# Prints the venv's path on its last line. Exit 1, with a message, when python3 is absent.
#
#   PYTHON   the interpreter to create the venv with (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="$PWD/.venv"
REQ="$PWD/requirements.txt"

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "python-venv.sh: '$PYTHON' not found. The emulator path (MiniStack, AWS CLI, boto3, pyarrow) needs Python 3.10+ with the venv module:" >&2
  echo "  Debian/Ubuntu: apt-get install python3 python3-venv   macOS: brew install python   or set PYTHON=/path/to/python3" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "python-venv.sh: $("$PYTHON" --version 2>&1) is too old; MiniStack needs Python 3.10+ (set PYTHON=/path/to/python3)" >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "python-venv.sh: creating $VENV with $("$PYTHON" --version 2>&1)" >&2
  if ! "$PYTHON" -m venv "$VENV" >&2; then
    rm -rf "$VENV"
    echo "python-venv.sh: '$PYTHON -m venv' failed; on Debian/Ubuntu install python3-venv" >&2
    exit 1
  fi
fi

# The stamp holds the requirements the venv was last filled from: unchanged means nothing to do.
STAMP="$VENV/.requirements.installed"
if ! cmp -s "$REQ" "$STAMP" 2>/dev/null; then
  echo "python-venv.sh: installing $(grep -cv '^\s*\(#\|$\)' "$REQ") packages from localstack/requirements.txt (pip)" >&2
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --quiet -r "$REQ" >&2
  cp "$REQ" "$STAMP"
fi
echo "$VENV"

#!/usr/bin/env bash
# Build the documentation site into docs/_build/html, from the repository
# root or anywhere:
#
#     bash docs/build.sh [SPHINX_ARGS...]
#
# Every warning is an error (sphinx-build -W --keep-going): the exit status is
# non-zero if the build printed any warning, after reporting all of them.
#
# Environment: if the active Python ($PYTHON, else the active virtualenv's,
# else python3) already has the packages of docs/requirements.txt and imports
# proxyprotocol from this checkout, it is used as is. Otherwise docs/.venv is
# created and docs/requirements.txt and this checkout (-e .) are installed
# into it; it is reinstalled only when docs/requirements.txt or
# pyproject.toml changed since.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCS=$ROOT/docs
OUT=$DOCS/_build/html

if [[ -n "${PYTHON:-}" ]]; then
    PY=$PYTHON
elif [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then
    PY=$VIRTUAL_ENV/bin/python
else
    PY=python3
fi

deps_hash() {
    cat "$DOCS/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1
}

# ready PYTHON: the docs packages import, and proxyprotocol is this checkout
ready() {
    (cd / && "$1" - "$ROOT" <<'PY'
import importlib.util
import os
import sys

root = os.path.realpath(sys.argv[1])
missing = [m for m in ('sphinx', 'myst_parser', 'furo')
           if importlib.util.find_spec(m) is None]
spec = importlib.util.find_spec('proxyprotocol')
origin = spec.origin if spec is not None else None
if origin is None or not os.path.realpath(origin).startswith(root + os.sep):
    missing.append(f'proxyprotocol from {root}')
if missing:
    print('docs environment incomplete: missing ' + ', '.join(missing),
          file=sys.stderr)
    sys.exit(1)
PY
    ) >/dev/null 2>&1
}

if ! ready "$PY"; then
    VENV=$DOCS/.venv
    STAMP=$VENV/.proxyprotocol-docs-deps
    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "creating $VENV"
        "${PYTHON3:-python3}" -m venv "$VENV"
    fi
    PY=$VENV/bin/python
    if ! ready "$PY" || [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$(deps_hash)" ]]; then
        echo "installing the documentation requirements into $VENV"
        "$PY" -m pip install --quiet --disable-pip-version-check \
            --progress-bar off -r "$DOCS/requirements.txt" -e "$ROOT"
        deps_hash >"$STAMP"
    fi
    if ! ready "$PY"; then
        echo "docs/build.sh: the environment in $VENV is still incomplete" >&2
        exit 1
    fi
fi

echo "building the documentation with $PY into $OUT"
# -W: warnings are errors; --keep-going: report all of them first. -E -a: a
# full build every time (the API pages and the toctrees depend on which
# modules and pages exist, which an incremental build does not notice). The
# build is not nitpicky: references into the standard library cannot be
# resolved offline (no intersphinx), so only real problems warn.
exec "$PY" -m sphinx -W --keep-going -E -a -b html -q "$@" "$DOCS" "$OUT"

#!/usr/bin/env bash
# The whole test suite in one command, from the repository root:
#
#     bash test/run.sh [PYTEST_ARGS...]
#
# Steps: pytest (with branch coverage of proxyprotocol), mypy --strict, flake8,
# and the upstream 0.4.0 / 0.11.3 compatibility suites
# (test/upstream/run_upstream_suites.sh). Every step runs even if an earlier one
# failed; the exit status is non-zero if any failed, and a summary says which.
#
# Environment: if the active virtualenv ($VIRTUAL_ENV) already has the test
# dependencies and this checkout installed, it is used as is. Otherwise the
# script creates .venv (python3 -m venv) and installs test/requirements.txt and
# `-e .` into it; it reinstalls only when that is missing or when
# test/requirements.txt or pyproject.toml changed since the last install.
#
# Knobs: TEST_STEPS="pytest mypy flake8 upstream docs" (subset and order of steps),
# PYTEST_TIMEOUT (per-test timeout in seconds, default 120; 0 disables),
# PYTHON3 (interpreter used to create .venv, default python3).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

STAMP_NAME=.proxyprotocol-test-deps
REQUIRED_MODULES="pytest pytest_cov pytest_timeout hypothesis mypy flake8 crc32c typing_extensions trustme"

# deps_hash: what the installed environment must correspond to
deps_hash() {
    cat test/requirements.txt test/requirements-contrib.txt docs/requirements.txt pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1
}

# env_ready PYTHON: the test dependencies import, and proxyprotocol is this checkout
env_ready() {
    (cd / && "$1" - "$ROOT" $REQUIRED_MODULES <<'PY'
import importlib.util
import os
import sys

root, modules = os.path.realpath(sys.argv[1]), sys.argv[2:]
missing = [m for m in modules if importlib.util.find_spec(m) is None]
spec = importlib.util.find_spec('proxyprotocol')
origin = spec.origin if spec is not None else None
if origin is None or not os.path.realpath(origin).startswith(root + os.sep):
    missing.append(f'proxyprotocol from {root}')
if missing:
    print('test environment incomplete: missing ' + ', '.join(missing), file=sys.stderr)
    sys.exit(1)
PY
    ) >/dev/null 2>&1
}

# stamp_ok VENV: no stamp (installed by someone else), or the stamp is current
stamp_ok() {
    [[ ! -f "$1/$STAMP_NAME" ]] || [[ "$(cat "$1/$STAMP_NAME")" == "$(deps_hash)" ]]
}

setup_env() {
    if [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]] \
            && env_ready "$VIRTUAL_ENV/bin/python" && stamp_ok "$VIRTUAL_ENV"; then
        VENV=$VIRTUAL_ENV
        return 0
    fi
    VENV=$ROOT/.venv
    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "creating $VENV"
        "${PYTHON3:-python3}" -m venv "$VENV" || return 1
    fi
    if ! env_ready "$VENV/bin/python" || ! stamp_ok "$VENV"; then
        echo "installing test dependencies into $VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            --progress-bar off -r test/requirements.txt -e . || return 1
        deps_hash >"$VENV/$STAMP_NAME"
        env_ready "$VENV/bin/python" || {
            echo "the test environment in $VENV is still incomplete" >&2
            return 1
        }
    fi
}

if ! setup_env; then
    echo "test/run.sh: could not set up the test environment" >&2
    exit 1
fi
PY=$VENV/bin/python
# Console scripts (proxyprotocol-server, ...) and tools resolve to this environment,
# also in subprocesses started by the tests.
export VIRTUAL_ENV=$VENV
export PATH="$VENV/bin:$PATH"
echo "environment: $VENV ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"

pytest_args=(--cov=proxyprotocol --cov-branch --cov-report=term-missing:skip-covered)
timeout_s=${PYTEST_TIMEOUT:-120}
if [[ "$timeout_s" != 0 && " $* " != *" --timeout"* ]]; then
    pytest_args+=(--timeout="$timeout_s")
fi

step_pytest() { "$PY" -m pytest "${pytest_args[@]}" "$@"; }
step_mypy() { "$PY" -m mypy --strict proxyprotocol test; }
step_flake8() { "$PY" -m flake8 proxyprotocol test; }
step_upstream() { PYTHON=$PY bash test/upstream/run_upstream_suites.sh; }
step_docs() { PYTHON=$PY bash docs/build.sh -q; }

failed=()
results=()
for step in ${TEST_STEPS:-pytest mypy flake8 upstream docs}; do
    if ! declare -F "step_$step" >/dev/null; then
        echo "unknown step: $step" >&2
        failed+=("$step")
        results+=("$step: unknown step")
        continue
    fi
    echo
    echo "================ $step ================"
    start=$SECONDS
    if [[ "$step" == pytest ]]; then
        "step_$step" "$@"
    else
        "step_$step"
    fi
    rc=$?
    took=$((SECONDS - start))
    if ((rc == 0)); then
        results+=("$step: ok (${took}s)")
    else
        results+=("$step: FAILED with status $rc (${took}s)")
        failed+=("$step")
    fi
done

echo
echo "================ summary ================"
printf '%s\n' "${results[@]}"
if ((${#failed[@]})); then
    echo "FAILED steps: ${failed[*]}"
    exit 1
fi
echo "all steps passed"

#!/usr/bin/env bash
# The library's own tests against its built wheel, with no checkout on the path (`make test-library`;
# the release workflow runs it too). Usage: [WHEEL=expkit-*.whl] scripts/test_library_wheel.sh [pytest args]
#
# 1. build core/'s wheel (from a copy); 2. a fresh venv with that wheel installed (--no-deps) and nothing else of
# this repository: it sees the template venv's third-party packages (torch, Lightning, ...) through
# a .pth file naming that venv's site-packages (the .pth files inside that folder are not read, so
# the editable expkit and the template's `src` stay invisible); 3. core/tests copied with its
# symlinks dereferenced (the test bed's configs and src become plain files) and run from outside
# the checkout. conftest.py refuses to start unless expkit is the fresh venv's.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/expkit-wheel.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

if [ -z "${WHEEL:-}" ]; then   # WHEEL=path/to/expkit-*.whl tests that one (the release workflow)
  # built from a copy of what the distribution holds: setuptools leaves core/build/ behind, whose
  # stale files (a module since deleted) would go into a later wheel built in place
  mkdir "$TMP/core"
  cp -r core/pyproject.toml core/README.md core/CHANGELOG.md core/expkit core/hydra_plugins "$TMP/core/"
  "$PY" -m build --wheel --no-isolation "$TMP/core" -o "$TMP/dist" > "$TMP/build.log" 2>&1 ||
    { cat "$TMP/build.log"; exit 1; }
  WHEEL=$(ls "$TMP"/dist/expkit-*.whl)
fi
WHEEL=$(realpath "$WHEEL")
BASE=$("$PY" -c 'import sys; print(sys._base_executable)')   # the same Python as the template's venv
# no pip or setuptools of its own: the template venv's are the ones seen (one of each, as in a
# real install), and the wheel goes in with uv (or that pip, pointed at the fresh venv)
"$BASE" -m venv --without-pip "$TMP/venv"
VENV_PY="$TMP/venv/bin/python"
# installed before the .pth below exists: the installer sees an empty venv (not the editable expkit)
UV="$(dirname "$PY")/uv"
if [ -x "$UV" ]; then
  "$UV" pip install -q --python "$VENV_PY" --compile-bytecode --no-deps --offline "$WHEEL"
else
  "$PY" -m pip --python "$VENV_PY" install -q --no-deps --no-index --disable-pip-version-check "$WHEEL"
fi
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
FRESH_SITE=$("$VENV_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$SITE" > "$FRESH_SITE/zz_template_venv.pth"
cp -rL core/tests "$TMP/tests"
rm -rf "$TMP/tests/project/logs"
find "$TMP/tests" -name __pycache__ -type d -prune -exec rm -rf {} +
# the test bed is a project as a user has it: a git repository (runs record its commit and diff)
git -C "$TMP/tests/project" init -q
git -C "$TMP/tests/project" add -A
git -C "$TMP/tests/project" -c user.name=expkit-tests -c user.email=expkit-tests@example.invalid \
  commit -q -m "the test bed"

echo "library tests: $(basename "$WHEEL") in $TMP/venv, tests copied to $TMP/tests"
cd "$TMP"
EXPKIT_EXPECT_INSTALLED="$FRESH_SITE" "$VENV_PY" -m pytest -p no:cacheprovider tests "$@"

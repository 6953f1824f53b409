#!/usr/bin/env bash
# Refresh requirements.lock, the exact, hashed dependency set that scripts/setup.sh installs.
#
#   bash scripts/lock.sh                          # re-resolve, keeping every pin the ranges still allow
#   bash scripts/lock.sh --upgrade                # take the newest versions pyproject.toml's ranges allow
#   bash scripts/lock.sh --upgrade-package optuna # move one package (and what it needs)
#
# The lock is made by uv (`uv pip compile`): a universal resolution (every platform and Python
# that pyproject.toml admits, with markers) and a sha256 for every file, in pip's requirements
# format, so a fresh machine needs only pip to install it. Run scripts/check_latest.sh and the
# suite before committing a refreshed lock.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
  echo "[lock] uv not found: python3 -m pip install uv" >&2
  exit 2
fi
exec uv pip compile pyproject.toml --extra dev --universal --generate-hashes \
  --output-file requirements.lock "$@"

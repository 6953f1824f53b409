#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: a virtual environment with exactly the dependency set of
# requirements.lock (hashes checked; refresh it with scripts/lock.sh), ems-ray itself, and the
# Fashion-MNIST Debian package where apt is available. Re-runs are quick: the install step is
# skipped while the lock and pyproject.toml are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${EMS_RAY_VENV:-.venv}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.ems-ray-installed"
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing the locked dependencies (requirements.lock; first time: several minutes)"
  # every file is checked against the lock's sha256; --no-deps: the lock is the whole set
  "$VENV/bin/python" -m pip install --quiet --require-hashes --no-deps -r requirements.lock
  # ems-ray itself, built with the locked setuptools (nothing unlocked is fetched)
  "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
  "$VENV/bin/python" -m pip check >/dev/null || { "$VENV/bin/python" -m pip check >&2; exit 1; }
  echo "$want" > "$stamp"
fi

FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[setup] installing the Fashion-MNIST Debian package (dataset-fashion-mnist)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "[setup] Fashion-MNIST not found at $FMNIST; install the Debian package dataset-fashion-mnist" \
         "or point the data config's 'root' at the four *-ubyte.gz files" >&2
  fi
fi

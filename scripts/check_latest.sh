#!/usr/bin/env bash
# Find upstream breakage before users do: resolve the newest releases that pyproject.toml's ranges
# allow into a temporary virtual environment, run the fast (default) test suite there, and print
# what changed against requirements.lock. Not part of CI; run it before you stop.
#
#   bash scripts/check_latest.sh            # everything at its newest allowed release
#   HOLD="torch torchvision" bash scripts/check_latest.sh   # keep those at the lock's pins
#   KEEP=1 bash scripts/check_latest.sh     # keep the temporary venv for a closer look
#   extra arguments go to pytest (e.g. -x, -k search)
#
# Needs uv (python3 -m pip install uv). Exit status: pytest's (0: the newest releases pass).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v uv >/dev/null 2>&1 || { echo "[check-latest] uv not found: python3 -m pip install uv" >&2; exit 2; }
PY=${PYTHON:-python3}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ems-ray-latest.XXXXXX")
if [ -z "${KEEP:-}" ]; then trap 'rm -rf "$tmp"' EXIT; else echo "[check-latest] keeping $tmp"; fi

holds=()
for name in ${HOLD:-}; do
  pin=$(grep -E "^${name}==" requirements.lock | head -1 | cut -d' ' -f1)
  [ -n "$pin" ] || { echo "[check-latest] HOLD: $name is not in requirements.lock" >&2; exit 2; }
  echo "$pin" >> "$tmp/hold.txt"
done
[ -f "$tmp/hold.txt" ] && holds=(--constraint "$tmp/hold.txt")

echo "[check-latest] resolving the newest allowed releases for $("$PY" --version)"
uv pip compile pyproject.toml --extra dev --upgrade --python "$PY" --quiet --no-header \
  "${holds[@]}" --output-file "$tmp/latest.txt"

"$PY" - requirements.lock "$tmp/latest.txt" <<'PYCODE'
"""Print the packages whose version differs between the lock (as it applies here) and the newest."""
import re
import sys

try:
    from packaging.markers import Marker
except ImportError:  # pip vendors packaging
    from pip._vendor.packaging.markers import Marker

PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def pins(path):
    out = {}
    for line in open(path):
        m = PIN.match(line.strip())
        if m and (not m.group(3) or Marker(m.group(3)).evaluate()):
            out[m.group(1).lower()] = m.group(2)
    return out


lock, latest = pins(sys.argv[1]), pins(sys.argv[2])
rows = [(n, lock.get(n, "-"), latest.get(n, "-")) for n in sorted(set(lock) | set(latest))
        if lock.get(n) != latest.get(n)]
print(f"[check-latest] {len(rows)} of {len(latest)} packages differ from requirements.lock")
if rows:
    width = max(len(n) for n, _, _ in rows)
    print(f"  {'package':<{width}}  {'lock':>12}  {'newest':>12}")
    for name, old, new in rows:
        print(f"  {name:<{width}}  {old:>12}  {new:>12}")
PYCODE

echo "[check-latest] installing into $tmp/venv"
uv venv --quiet --python "$PY" "$tmp/venv"
uv pip install --quiet --python "$tmp/venv/bin/python" -r "$tmp/latest.txt"
uv pip install --quiet --python "$tmp/venv/bin/python" --no-deps -e .
echo "[check-latest] the fast suite on the newest releases"
set +e
"$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
if [ $status -eq 0 ]; then
  echo "[check-latest] the newest allowed releases pass; refresh the lock with: bash scripts/lock.sh --upgrade"
else
  echo "[check-latest] the newest allowed releases FAIL (pytest exit $status): fix, or cap the range in pyproject.toml" >&2
fi
exit $status

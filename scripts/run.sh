#!/usr/bin/env bash
# Set up (if needed) and run the main job; extra arguments replace the default command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -gt 0 ]; then exec .venv/bin/ems-ray "$@"; fi
exec .venv/bin/ems-ray pipeline --config configs/fmnist-quick.yaml

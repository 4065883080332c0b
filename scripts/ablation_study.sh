#!/usr/bin/env bash
# The ablation study (docs/ablations.md); all options: scripts/ablation_study.sh --help.
exec "${PYTHON:-/usr/bin/python3}" "$(dirname "$0")/ablation_study.py" "$@"

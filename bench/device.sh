#!/usr/bin/env bash
# One prepared GPU run, under 8 minutes, one table (bench/device.py says what each row means):
#   bench/device.sh            on a GPU machine; the table lands in $OUT/device.md (else outputs/device)
#   bench/device.sh --smoke    every row at tiny sizes, on the CPU in seconds (the tests run it)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python bench/device.py "$@"

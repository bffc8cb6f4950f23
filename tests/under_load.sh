#!/usr/bin/env bash
# The whole suite with every core kept busy by a CPU hog (stress-ng), as on a loaded
# laptop or a shared CI runner: a test that needs a quiet machine fails here. Used by
# `make test-under-load`; the hog stops with the suite, whatever its outcome.
set -u
cores=$(nproc)
stress-ng --cpu "$cores" --cpu-method matrixprod --timeout 2h --quiet &
hog=$!
trap 'kill "$hog" 2>/dev/null; wait "$hog" 2>/dev/null' EXIT
echo "under_load: stress-ng keeps $cores cores busy (pid $hog)"
QT_QPA_PLATFORM=offscreen "$@"

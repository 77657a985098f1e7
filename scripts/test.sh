#!/bin/sh
# Run every compiled test file with Node's test runner (spec reporter).
# Node 20 does not expand globs and exits 0 when it finds no test: fail first.
set -eu
files=$(find dist -name '*.test.js' -not -path '*/node_modules/*' | sort)
if [ -z "$files" ]; then
  echo 'No test files under dist/: did the build run?' >&2
  exit 1
fi
# shellcheck disable=SC2086
# --test-force-exit: a test that leaves a handle open cannot hang the run; --test-timeout
# bounds every test (5 min), so a stuck one fails instead of running into the CI limit
exec node --enable-source-maps --test --test-reporter=spec --test-concurrency=2 --test-force-exit --test-timeout=300000 $files

#!/usr/bin/env bash
# Services the test suite needs that a fresh machine does not run.
# (PostgreSQL for the store contract suite is added here by the platform work.)
set -euo pipefail

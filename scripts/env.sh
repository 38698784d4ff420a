#!/usr/bin/env bash
# Prints `export` lines for the test services started by scripts/services.sh:
#   eval "$(scripts/env.sh)"
# SEKIBAN_POSTGRES_DSN, SEKIBAN_REDIS_URL, SEKIBAN_COSMOS_ENDPOINT, SEKIBAN_COSMOS_KEY
# (an already set, reachable SEKIBAN_POSTGRES_DSN is passed through).
exec "$(dirname "${BASH_SOURCE[0]}")/services.sh" env

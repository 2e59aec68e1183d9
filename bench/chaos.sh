#!/usr/bin/env bash
# The chaos run at length: `npm run chaos -- --minutes N [--seed S] [--kill-every S]` (S: the mean
# seconds between SIGKILLs of the agent, 8 by default). The same test CI runs for
# 2 minutes (test/integration/chaos.test.ts), here for N, its table written to bench/results/.
# Needs root (a loop-mounted ext4 disk) and what the tests need (provisioning/dev-setup.sh --test).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=30 seed="" kill=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --kill-every) kill=$2; shift 2 ;;
    *) echo "usage: npm run chaos -- [--minutes N] [--seed S] [--kill-every S]" >&2; exit 2 ;;
  esac
done
[[ "$minutes" =~ ^[0-9]+$ ]] && [ "$minutes" -ge 1 ] || { echo "--minutes: a whole number of minutes, 1 or more" >&2; exit 2; }
bash provisioning/dev-setup.sh --test --quiet
npx tsc -p tsconfig.json   # in place: a bench still running from dist/ keeps its files
export CHAOS_MINUTES=$minutes CHAOS_RESULTS=bench/results
[ -n "$seed" ] && export CHAOS_SEED=$seed
[ -n "$kill" ] && export CHAOS_KILL_MEAN_S=$kill
exec npx vitest run --project integration test/integration/chaos.test.ts

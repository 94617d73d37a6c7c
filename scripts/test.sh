#!/usr/bin/env bash
# Runs every test of the solution. Works on a fresh machine with the .NET 10 SDK: NuGet packages come
# through restore. Prints a closing "N passed, N failed, N skipped" line summed over the test projects.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
dotnet test LbAllocator.sln --configuration Release 2>&1 | tee "$log" || status=$?

# dotnet test prints one summary line per test project: "Failed!  - Failed: 1, Passed: 2, Skipped: 0, ..."
awk '/(Passed|Failed)! +- +Failed: /{
    gsub(",", ""); for (i = 1; i <= NF; i++) { if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1); if ($i == "Skipped:") s += $(i+1) }
} END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"

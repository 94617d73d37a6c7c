#!/usr/bin/env bash
# Publishes the lballocator binary (controller, speaker, validate, plan) into OUT (default: out/).
# The Dockerfile's build stage runs exactly this, and so does CI, so CI proves the image's build steps.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out}"

dotnet publish src/LbAllocator.Cli/LbAllocator.Cli.csproj --configuration Release --output "$out" --nologo
# The published binary must run on its own: plan the bundled samples.
dotnet "$out/lballocator.dll" plan >/dev/null
echo "published to $out"

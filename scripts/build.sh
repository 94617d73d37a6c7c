#!/usr/bin/env bash
# Publishes the lballocator binary (controller, speaker, validate, plan) into OUT (default: out/).
# The Dockerfile's build stage runs exactly this, and so does CI, so CI proves the image's build steps.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out}"

# ReadyToRun: the assemblies ship precompiled, so a started controller does not spend its first bursts in the
# JIT (bench/RESULTS.md, issue 10). Framework-dependent (the image's aspnet runtime runs it); ReadyToRun needs a RID.
dotnet publish src/LbAllocator.Cli/LbAllocator.Cli.csproj --configuration Release --output "$out" --nologo \
    --runtime linux-x64 --self-contained false -p:PublishReadyToRun=true
# The published binary must run on its own: plan the bundled samples.
dotnet "$out/lballocator.dll" plan >/dev/null
echo "published to $out"

#!/usr/bin/env bash
# Publishes the lballocator binary (controller, speaker, validate, plan) into OUT (default: out/).
# The Dockerfile's build stage runs exactly this, and so does CI, so CI proves the image's build steps.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out}"

# NativeAOT: one native executable, no JIT and no runtime to load. It is the footprint's main lever (issue 14,
# bench/RESULTS.md): the JIT runtime's mapped code alone was 86 MiB of each process. The compiler links with clang.
if ! command -v clang >/dev/null && ! command -v clang-14 >/dev/null; then
    echo "installing clang (NativeAOT links with it) and zlib1g-dev"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang zlib1g-dev >/dev/null
fi
linker=$(command -v clang || command -v clang-14)
dotnet publish src/LbAllocator.Cli/LbAllocator.Cli.csproj --configuration Release --output "$out" --nologo \
    --runtime linux-x64 -p:CppCompilerAndLinker="$linker"
# The published binary must run on its own: plan the bundled samples.
"$out/lballocator" plan >/dev/null
echo "published to $out"

# One image for both components: `lballocator controller` and `lballocator speaker`.
# Build: docker build -t registry.example.com/lballocator:0.1.0 .

# Build stage: the same script CI runs (scripts/build.sh), so a green CI proves these steps.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN scripts/build.sh /out

# Runtime: the NativeAOT binary needs no .NET runtime, only the system libraries .NET's runtime-deps image has
# (libc, OpenSSL, ICU) and libpcap for the speaker; no SDK, compilers or package caches.
FROM mcr.microsoft.com/dotnet/runtime-deps:10.0
RUN apt-get update \
    && (apt-get install -y --no-install-recommends libpcap0.8t64 || apt-get install -y --no-install-recommends libpcap0.8) \
    && rm -rf /var/lib/apt/lists/*
# The one executable: the publish folder also holds its debug symbols (lballocator.dbg, 70 MB), not shipped.
COPY --from=build /out/lballocator /app/lballocator
# Non-root by default (the controller). The speaker's DaemonSet runs it as root with NET_RAW as its only capability.
USER 65532:65532
ENTRYPOINT ["/app/lballocator"]
CMD ["--help"]

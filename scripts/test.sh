#!/usr/bin/env bash
# Runs every test of the solution. Works on a fresh machine with the .NET 10 SDK, as root: NuGet packages
# come through restore, Debian packages through apt-get. Prints a closing "N passed, N failed, N skipped" line summed over the test projects.
set -euo pipefail
# KUBEBUILDER_ASSETS as given is relative to where the command runs (the README runs it from the repository root);
# the tests run in directories of their own, so they get it absolute.
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
    if [ ! -d "$KUBEBUILDER_ASSETS" ]; then
        echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS: no such directory (relative to $PWD)" >&2
        exit 2
    fi
    KUBEBUILDER_ASSETS="$(cd "$KUBEBUILDER_ASSETS" && pwd)"
    export KUBEBUILDER_ASSETS
fi
cd "$(dirname "$0")/.."

# The speaker's tests talk to real ARP/NDP peers in network namespaces: they need root, libpcap and these tools.
# The real-API tier runs kube-apiserver (from $KUBEBUILDER_ASSETS) on Debian's etcd.
missing=()
for package in iproute2 libpcap0.8 iputils-arping ndisc6 nftables tcpdump tcpreplay curl iptables etcd-server; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The install manifests are rendered with `kubectl kustomize`, which needs kustomize v3 or later
# (Debian's own kubernetes-client, 1.20, is too old to read deploy/).
command -v kubectl >/dev/null || echo "warning: kubectl (1.21 or later) is not installed: the deploy tests will fail" >&2

# The real-API tier: kube-apiserver from a directory in KUBEBUILDER_ASSETS (envtest's convention). Without
# one, those tests are skipped (outside CI) and the summary says so.
real_api="real-API tier: kube-apiserver from $KUBEBUILDER_ASSETS"
if [ ! -x "${KUBEBUILDER_ASSETS:-}/kube-apiserver" ]; then
    real_api="real-API tier skipped: set KUBEBUILDER_ASSETS to a directory holding kube-apiserver v1.28+ (CI uses ../shared/kube; envtest's setup-envtest downloads one)"
    if [ "${CI:-}" = "true" ]; then
        # In CI those tests must run: say why at once rather than after every one of them has failed.
        echo "$real_api" >&2
        exit 2
    fi
fi
# LBALLOCATOR_TEST_SETTINGS_ONLY=1 stops here, saying what the run would use (the README's command is tested with it).
if [ "${LBALLOCATOR_TEST_SETTINGS_ONLY:-}" = "1" ]; then
    echo "$real_api"
    exit 0
fi

# The tests that run lballocator as a process (the lab's speakers, the CLI's and the controller's process tests) run
# the published NativeAOT binary, the one the image ships: LBALLOCATOR_CLI, published here unless given.
if [ -z "${LBALLOCATOR_CLI:-}" ]; then
    scripts/build.sh out
    export LBALLOCATOR_CLI="$PWD/out/lballocator"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
dotnet build LbAllocator.sln --configuration Release 2>&1 | tee "$log" || status=$?
if [ "$status" -eq 0 ]; then
    # Every test project but the network lab, side by side (dotnet test's default).
    dotnet test tests/AllButLab.slnf --configuration Release --no-build 2>&1 | tee -a "$log" || status=$?
    # The lab alone afterwards: it asserts failover within 1 s, a timing goal that a machine busy with the other
    # test projects' API servers and builds would measure rather than the speaker.
    dotnet test tests/LbAllocator.NetTests --configuration Release --no-build 2>&1 | tee -a "$log" || status=$?
fi

echo "$real_api"
# dotnet test prints one summary line per test project: "Failed!  - Failed: 1, Passed: 2, Skipped: 0, ..."
awk '/(Passed|Failed)! +- +Failed: /{
    gsub(",", ""); for (i = 1; i <= NF; i++) { if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1); if ($i == "Skipped:") s += $(i+1) }
} END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"

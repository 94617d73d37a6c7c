using LbAllocator.TestApiServer;

namespace LbAllocator.Cli.Tests;

/// <summary>
/// plan --pools and validate --kubeconfig on the real kube-apiserver: Services that hold addresses (written to their
/// status as MetalLB or our controller would have), proposed pools, and exactly which Services would be renumbered or
/// left pending.
/// </summary>
public sealed class LivePlanTests(KubeApiServerFixture fixture) : IClassFixture<KubeApiServerFixture>, IDisposable
{
    private const string Ns = "lballocator-system";
    private const string AddressPool = "lballocator.io/address-pool";
    private readonly ManifestDir _files = new();

    private KubeApiServer Server => fixture.Server;

    public void Dispose() => _files.Dispose();

    [RealApiFact]
    public async Task Plan_lists_exactly_the_Services_a_pool_edit_renumbers_or_leaves_pending()
    {
        var ns = await SetUpAsync("plan");
        await PoolAsync($"{ns}-web", "192.0.2.0/29");
        await PoolAsync($"{ns}-other", "198.51.100.0/30");
        await ServiceAsync(ns, "a", "192.0.2.1", [(AddressPool, $"{ns}-web")]);
        await ServiceAsync(ns, "b", "192.0.2.2", [(AddressPool, $"{ns}-web")]);
        await ServiceAsync(ns, "c", "192.0.2.6", [(AddressPool, $"{ns}-web")]);
        await ServiceAsync(ns, "e", "198.51.100.1", [(AddressPool, $"{ns}-other")]);
        var kubeconfig = Server.AdminKubeconfig;

        // The live pools unchanged: nothing moves (other tests' Services and pools share the server and stay put too).
        var same = _files.Write("same.yaml", Pool($"{ns}-web", "192.0.2.0/29") + "---\n" + Pool($"{ns}-other", "198.51.100.0/30"));
        var unchanged = CliRun.Of("plan", "--kubeconfig", kubeconfig, "--pools", same);
        Assert.True(unchanged.ExitCode == 0, unchanged.Stdout + unchanged.Stderr);
        Assert.Empty(Rows(unchanged, ns));
        Assert.Contains("keeps every address", unchanged.Stdout, StringComparison.Ordinal);

        // web shrinks to .1-.2 (c at .6 has no room left), other moves to 198.51.100.8/30 (e renumbered).
        var edit = _files.Write("edit.yaml", Pool($"{ns}-web", "192.0.2.1-192.0.2.2") + "---\n" + Pool($"{ns}-other", "198.51.100.8/30"));
        var plan = CliRun.Of("plan", "--kubeconfig", kubeconfig, "--pools", edit);

        Assert.True(plan.ExitCode == 1, plan.Stdout + plan.Stderr);
        Assert.Equal([$"{ns} c 192.0.2.6 <pending> <none> pending", $"{ns} e 198.51.100.1 198.51.100.8 {ns}-other renumbered"], Rows(plan, ns));
        Assert.Contains("changes addresses: 1 renumbered, 1 left pending", plan.Stderr, StringComparison.Ordinal);
        var json = CliRun.Of("plan", "--kubeconfig", kubeconfig, "--pools", edit, "-o", "json");
        Assert.Equal(1, json.ExitCode);
        using (var document = System.Text.Json.JsonDocument.Parse(json.Stdout))
        {
            var ours = document.RootElement.GetProperty("changes").EnumerateArray().Where(c => c.GetProperty("namespace").GetString() == ns)
                .Select(c => $"{c.GetProperty("name")} {c.GetProperty("now")[0]} [{string.Join(",", c.GetProperty("after").EnumerateArray())}] {c.GetProperty("change")}");
            Assert.Equal(["c 192.0.2.6 [] pending", "e 198.51.100.1 [198.51.100.8] renumbered"], ours);
            var pending = document.RootElement.GetProperty("changes").EnumerateArray().Single(c => c.GetProperty("name").GetString() == "c" && c.GetProperty("namespace").GetString() == ns);
            Assert.Equal($"no available IPs in pool \"{ns}-web\" (2 of 2 assigned)", pending.GetProperty("message").GetString());
        }

        // A proposal the controller would refuse is no plan.
        var invalid = _files.Write("invalid.yaml", Pool($"{ns}-web", "192.0.2.0/33"));
        var refused = CliRun.Of("plan", "--kubeconfig", kubeconfig, "--pools", invalid);
        Assert.Equal(1, refused.ExitCode);
        Assert.StartsWith($"{invalid}:1:1: IPAddressPool/{ns}-web: spec.addresses[0]: ", refused.Stderr, StringComparison.Ordinal);

        // Read only: the Services still hold what they held.
        Assert.Equal("192.0.2.6", await Server.KubectlMustAsync("get", "service", "-n", ns, "c", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"));
    }

    [RealApiFact]
    public async Task A_Service_MetalLB_served_keeps_its_address_under_the_converted_pools_and_annotations()
    {
        var ns = await SetUpAsync("metallb");
        // As MetalLB left it: its pool is not ours yet; the Service asked by MetalLB's annotations and holds what it got.
        (string, string)[] sharing = [("metallb.universe.tf/allow-shared-ip", "k"), ("metallb.io/address-pool", $"{ns}-legacy")];
        await ServiceAsync(ns, "shared-1", "203.0.113.5", sharing);
        await ServiceAsync(ns, "shared-2", "203.0.113.5", sharing, port: 443);
        await ServiceAsync(ns, "fixed", "203.0.113.9", [("metallb.universe.tf/loadBalancerIPs", "203.0.113.9")]);
        var metalLb = _files.Write("metallb.yaml", $"""
            apiVersion: metallb.io/v1beta1
            kind: IPAddressPool
            metadata: {"{"}name: {ns}-legacy, namespace: metallb-system{"}"}
            spec:
              addresses: [203.0.113.0/28]
              autoAssign: false
            """);
        var converted = CliRun.Of("import-metallb", metalLb);
        Assert.Equal(0, converted.ExitCode);
        var ours = _files.Write("ours.yaml", converted.Stdout);

        // MetalLB's annotations read: every address stays.
        var plan = CliRun.Of("plan", "--kubeconfig", Server.AdminKubeconfig, "--pools", ours, "--accept-metallb-annotations");
        Assert.True(plan.ExitCode == 0, plan.Stdout + plan.Stderr);

        // Not read: the two Services no longer may share, and the second names no pool (none auto-assigns): it would be
        // left pending. The dry run says so before anything moves.
        var without = CliRun.Of("plan", "--kubeconfig", Server.AdminKubeconfig, "--pools", ours);
        Assert.Equal(1, without.ExitCode);
        Assert.Equal([$"{ns} shared-2 203.0.113.5 <pending> <none> pending"], Rows(without, ns));
        Assert.Contains("1 left pending", without.Stderr, StringComparison.Ordinal);
    }

    [RealApiFact]
    public async Task Validate_checks_a_pool_file_against_the_live_pools_it_does_not_replace()
    {
        var ns = await SetUpAsync("validate");
        await PoolAsync($"{ns}-live", "192.0.2.64/29");

        var overlapping = _files.Write("new.yaml", Pool($"{ns}-new", "192.0.2.68/30"));
        var refused = CliRun.Of("validate", "--kubeconfig", Server.AdminKubeconfig, overlapping);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains($"{overlapping}:1:1: IPAddressPool/{ns}-new: spec.addresses[0]: 192.0.2.68/30 overlaps 192.0.2.64/29 of pool \"{ns}-live\"", refused.Stdout, StringComparison.Ordinal);

        // The same range in a file that replaces the live pool is no overlap.
        var replacing = _files.Write("replace.yaml", Pool($"{ns}-live", "192.0.2.64/28"));
        var accepted = CliRun.Of("validate", "--kubeconfig", Server.AdminKubeconfig, replacing);
        Assert.True(accepted.ExitCode == 0, accepted.Stdout + accepted.Stderr);
        Assert.Contains("valid: 1 IPAddressPool(s)", accepted.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void A_cluster_that_cannot_be_read_or_a_proposal_that_is_not_there_is_one_line_and_exit_1()
    {
        var kubeconfig = _files.Write("closed", TestApiServer.TestApiServer.Kubeconfig("https://127.0.0.1:1/"));
        var pools = _files.Write("pools.yaml", Pool("p", "192.0.2.0/29"));

        var unreachable = CliRun.Of("plan", "--kubeconfig", kubeconfig, "--pools", pools);
        Assert.Equal(1, unreachable.ExitCode);
        Assert.StartsWith("cannot read the cluster: ", unreachable.Stderr, StringComparison.Ordinal);

        var missing = CliRun.Of("plan", "--kubeconfig", kubeconfig, "--pools", Path.Combine(_files.Path, "nope.yaml"));
        Assert.Equal(1, missing.ExitCode);
        Assert.Equal($"{Path.Combine(_files.Path, "nope.yaml")}: no such file or directory", missing.Stderr.Trim());

        var validate = CliRun.Of("validate", "--kubeconfig", kubeconfig, pools);
        Assert.Equal(1, validate.ExitCode);
        Assert.StartsWith("cannot read the cluster: ", validate.Stderr, StringComparison.Ordinal);

        Assert.Equal(2, CliRun.Of("plan", "--kubeconfig", kubeconfig).ExitCode);
    }

    /// <summary>The install, and a namespace of the test's own (every object it makes is named after it).</summary>
    private async Task<string> SetUpAsync(string name)
    {
        await Server.KubectlMustAsync("apply", "-k", Path.Combine(InstallManifests.RepoRoot, "deploy"));
        await Server.KubectlMustAsync("wait", "--for", "condition=established", "--timeout=60s", "crd/ipaddresspools.lballocator.io");
        var ns = $"lp-{name}";
        await Server.KubectlMustAsync("create", "namespace", ns);
        return ns;
    }

    /// <summary>The plan's rows of namespace <paramref name="ns"/>, their first six columns, one space apart.</summary>
    private static List<string> Rows(CliRun plan, string ns) =>
        [.. plan.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith($"{ns} ", StringComparison.Ordinal))
            .Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Take(6)))];

    private async Task PoolAsync(string name, string addresses)
    {
        var (code, _, error) = await Server.KubectlAsync(["apply", "-f", "-"], stdin: Pool(name, addresses));
        Assert.True(code == 0, error);
    }

    /// <summary>A pool that gives addresses only to Services naming it: the tests share the server, and each keeps to its own pools.</summary>
    private static string Pool(string name, string addresses) =>
        $"apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: {Ns}}}\nspec: {{addresses: [\"{addresses}\"], autoAssign: false}}\n";

    /// <summary>A LoadBalancer Service holding <paramref name="ip"/> in its status, as whoever served it wrote it.</summary>
    private async Task ServiceAsync(string ns, string name, string ip, (string Key, string Value)[] annotations, int port = 80)
    {
        var map = string.Join(", ", annotations.Select(a => $"\"{a.Key}\": \"{a.Value}\""));
        var (code, _, error) = await Server.KubectlAsync(["apply", "-f", "-"], stdin:
            $"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}, annotations: {{{map}}}}}\nspec: {{type: LoadBalancer, allocateLoadBalancerNodePorts: false, ports: [{{port: {port}}}]}}\n");
        Assert.True(code == 0, error);
        await Server.KubectlMustAsync("patch", "service", "-n", ns, name, "--subresource=status", "--type=merge", "-p", $"{{\"status\":{{\"loadBalancer\":{{\"ingress\":[{{\"ip\":\"{ip}\"}}]}}}}}}");
    }
}

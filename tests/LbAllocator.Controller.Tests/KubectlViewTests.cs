using k8s;
using LbAllocator.Core;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.TestApiServer;
using Xunit.Abstractions;

namespace LbAllocator.Controller.Tests;

/// <summary>
/// What a person sees with kubectl on a real server after the controller acted: `kubectl describe svc` with our
/// events, `kubectl get ipaddresspools` and `kubectl get l2advertisements` with their printer columns.
/// </summary>
[Collection(RealClusterCollection.Name)]
public sealed class KubectlViewTests(RealCluster cluster, ITestOutputHelper output) : IAsyncLifetime
{
    private ControllerFixture _f = null!;

    public async Task InitializeAsync() => _f = await ControllerFixture.StartAsync(cluster);

    public async Task DisposeAsync() => await _f.DisposeAsync();

    [RealApiFact]
    public async Task Describe_svc_shows_why_a_service_waits_and_when_it_got_its_address()
    {
        await _f.CreatePoolAsync("one", "192.0.2.7");
        await _f.StartControllerAsync();
        await _f.CreateServiceAsync("first");
        await _f.CreateServiceAsync("second", annotations: new() { [ServiceAnnotations.AddressPool] = "one" });
        await ControllerFixture.Eventually(async () => (await _f.EventsAsync("second")).Any(e => e.Reason == "AllocationFailed"), "second waits");

        var first = await DescribeAsync("first");
        Assert.Contains("LoadBalancer Ingress:     192.0.2.7", first, StringComparison.Ordinal);
        var allocated = Assert.Single(KubectlTable.DescribedEvents(first));
        Assert.Equal(("Normal", "IPAllocated", "lballocator-controller", "Assigned 192.0.2.7 from pool \"one\""), Row(allocated));

        var waiting = Assert.Single(KubectlTable.DescribedEvents(await DescribeAsync("second")));
        Assert.Equal(("Warning", "AllocationFailed", "lballocator-controller", "no available IPs in pool \"one\" (1 of 1 assigned)"), Row(waiting));

        await _f.Client.CoreV1.DeleteNamespacedServiceAsync("first", _f.ServiceNs);
        await ControllerFixture.Eventually(async () => KubectlTable.DescribedEvents(await DescribeAsync("second")).Count == 2, "second's got its address");
        var second = await DescribeAsync("second");
        Assert.Contains("LoadBalancer Ingress:     192.0.2.7", second, StringComparison.Ordinal);
        Assert.Equal(
            [("Warning", "AllocationFailed", "lballocator-controller", "no available IPs in pool \"one\" (1 of 1 assigned)"), ("Normal", "IPAllocated", "lballocator-controller", "Assigned 192.0.2.7 from pool \"one\"")],
            KubectlTable.DescribedEvents(second).Select(Row).OrderBy(r => r.Reason, StringComparer.Ordinal));
    }

    [RealApiFact]
    public async Task Get_ipaddresspools_shows_each_pools_usage_and_validity_and_describe_says_why()
    {
        // As an operator writes them: autoAssign defaults to true from the schema.
        await _f.ApplyAsync($$"""
            apiVersion: {{Api.GroupVersion}}
            kind: IPAddressPool
            metadata: {name: main}
            spec: {addresses: [192.0.2.0/30, "2001:db8::/126"]}
            ---
            apiVersion: {{Api.GroupVersion}}
            kind: IPAddressPool
            metadata: {name: reserved}
            spec: {addresses: [198.51.100.7], autoAssign: false}
            ---
            apiVersion: {{Api.GroupVersion}}
            kind: IPAddressPool
            metadata: {name: broken}
            spec: {addresses: [203.0.113.5/24]}
            """);
        await _f.StartControllerAsync();
        await _f.CreateServiceAsync("web");
        await _f.CreateServiceAsync("api", annotations: new() { [ServiceAnnotations.AddressPool] = "reserved" });
        var v6 = ControllerFixture.NewService("v6");
        v6.Spec.IpFamilies = ["IPv6"];
        await _f.Client.CoreV1.CreateNamespacedServiceAsync(v6, _f.ServiceNs);

        string[][] expected =
        [
            ["broken", "true", "[\"203.0.113.5/24\"]", "-", "-", "False"],
            ["main", "true", "[\"192.0.2.0/30\",\"2001:db8::/126\"]", "1 IPv4, 1 IPv6", "3 IPv4, 3 IPv6", "True"],
            ["reserved", "false", "[\"198.51.100.7\"]", "1 IPv4", "0 IPv4", "True"],
        ];
        await ControllerFixture.Eventually(async () => Columns(await GetAsync("ipaddresspools"), PoolColumns).SequenceEqual(expected, RowComparer),
            $"kubectl get ipaddresspools shows\n{string.Join('\n', expected.Select(r => string.Join(" | ", r)))}");

        // VALID False: `kubectl describe ipaddresspool` says why, in the condition and in a warning event.
        var described = await KubectlAsync("describe", "ipaddresspool", "broken", "-n", _f.Ns);
        Assert.Contains("spec.addresses[0]: \"203.0.113.5/24\" has host bits set", described, StringComparison.Ordinal);
        var invalid = Assert.Single(KubectlTable.DescribedEvents(described));
        Assert.Equal(("Warning", "InvalidPool", "lballocator-controller"), (invalid["Type"], invalid["Reason"], invalid["From"]));
        Assert.EndsWith("the pool is not used", invalid["Message"], StringComparison.Ordinal);
    }

    [RealApiFact]
    public async Task Get_l2advertisements_shows_which_are_valid_and_changes_when_the_named_pool_comes()
    {
        await _f.CreatePoolAsync("main", "192.0.2.0/30");
        await _f.ApplyAsync($$"""
            apiVersion: {{Api.GroupVersion}}
            kind: L2Advertisement
            metadata: {name: everything}
            ---
            apiVersion: {{Api.GroupVersion}}
            kind: L2Advertisement
            metadata: {name: main-on-eth0}
            spec: {ipAddressPools: [main], interfaces: [eth0]}
            ---
            apiVersion: {{Api.GroupVersion}}
            kind: L2Advertisement
            metadata: {name: later}
            spec: {ipAddressPools: [later]}
            """);
        await _f.StartControllerAsync();

        await ControllerFixture.Eventually(async () => Columns(await GetAsync("l2advertisements"), AdvertisementColumns).SequenceEqual(
            [["everything", "", "", "True"], ["later", "[\"later\"]", "", "False"], ["main-on-eth0", "[\"main\"]", "[\"eth0\"]", "True"]], RowComparer),
            "the advertisement naming a missing pool is VALID False, the others True");
        await ControllerFixture.Eventually(async () => (await _f.EventsAsync("later", _f.Ns)).Any(e => e is { Type: "Warning", Reason: "InvalidAdvertisement" }), "an InvalidAdvertisement warning");

        await _f.CreatePoolAsync("later", "198.51.100.0/30");

        await ControllerFixture.Eventually(async () => Columns(await GetAsync("l2advertisements"), "VALID").All(r => r[0] == "True"), "once its pool exists, every advertisement is VALID True");
    }

    private static readonly IEqualityComparer<string[]> RowComparer = EqualityComparer<string[]>.Create((a, b) => a!.SequenceEqual(b!), r => r.Length);

    private Task<string> DescribeAsync(string service) => KubectlAsync("describe", "svc", service, "-n", _f.ServiceNs);

    private async Task<List<Dictionary<string, string>>> GetAsync(string resource) => KubectlTable.Parse(await KubectlAsync("get", resource, "-n", _f.Ns));

    /// <summary>kubectl's output, also in the test's output: what the user saw when a check failed.</summary>
    private async Task<string> KubectlAsync(params string[] args)
    {
        var text = await _f.Real.KubectlMustAsync(args);
        output.WriteLine($"$ kubectl {string.Join(' ', args)}\n{text}");
        return text;
    }

    // Every column the printer columns of our CRDs declare, but AGE.
    private static readonly string[] PoolColumns = ["NAME", "AUTO ASSIGN", "ADDRESSES", "ASSIGNED", "AVAILABLE", "VALID"];
    private static readonly string[] AdvertisementColumns = ["NAME", "POOLS", "INTERFACES", "VALID"];

    /// <summary>The named columns of each row (kubectl sorts rows by NAME); a column missing from the table fails.</summary>
    private static List<string[]> Columns(List<Dictionary<string, string>> table, params string[] names) =>
        [.. table.Select(row => names.Select(n => row.TryGetValue(n, out var v) ? v : throw new Xunit.Sdk.XunitException($"no column {n}: {string.Join(", ", row.Keys)}")).ToArray())];

    private static (string Type, string Reason, string From, string Message) Row(Dictionary<string, string> e) => (e["Type"], e["Reason"], e["From"], e["Message"]);
}

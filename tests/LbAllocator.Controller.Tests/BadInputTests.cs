using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes.Crds;

namespace LbAllocator.Controller.Tests;

/// <summary>One running controller that every bad input of the corpus is thrown at, in turn.</summary>
public sealed class BadInputCluster : IAsyncLifetime
{
    public ControllerFixture F { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        F = await ControllerFixture.StartAsync();
        await F.CreatePoolAsync("main", "192.0.2.0/25");
        await F.StartControllerAsync();
        await F.CreateServiceAsync("good");
        await ControllerFixture.Eventually(async () => await F.IngressAsync("good") == "192.0.2.0", "good has 192.0.2.0");
    }

    public async Task DisposeAsync() => await F.DisposeAsync();
}

/// <summary>
/// A corpus of malformed pools, advertisements and Services (what an API server without our CRD schemas,
/// or a hurried operator, lets through). Each gets an event, and for pools and advertisements a Valid=False
/// condition, naming the field; no address changes; the controller keeps serving new Services.
/// </summary>
public sealed class BadInputTests(BadInputCluster cluster) : IClassFixture<BadInputCluster>
{
    private const string Ns = ControllerFixture.Ns;
    private const string Ips = ServiceAnnotations.LoadBalancerIPs;
    private const string Pool = ServiceAnnotations.AddressPool;

    private ControllerFixture F => cluster.F;

    [Theory]
    [InlineData("bad-text", """{"addresses": ["not-an-ip"]}""", "spec.addresses[0]")]
    [InlineData("bad-prefix", """{"addresses": ["198.51.100.0/33"]}""", "spec.addresses[0]")]
    [InlineData("bad-host-bits", """{"addresses": ["198.51.100.1/24"]}""", "spec.addresses[0]")]
    [InlineData("bad-reversed", """{"addresses": ["198.51.100.20-198.51.100.10"]}""", "spec.addresses[0]")]
    [InlineData("bad-leading-zero", """{"addresses": ["010.0.0.1"]}""", "spec.addresses[0]")]
    [InlineData("bad-zone", """{"addresses": ["fe80::1%eth0"]}""", "spec.addresses[0]")]
    [InlineData("bad-v4-mapped", """{"addresses": ["::ffff:198.51.100.1"]}""", "spec.addresses[0]")]
    [InlineData("bad-empty", """{"addresses": []}""", "spec.addresses: must list at least one")]
    [InlineData("bad-overlap", """{"addresses": ["192.0.2.0/28"]}""", "of pool \"main\"")]
    [InlineData("bad-self-overlap", """{"addresses": ["203.0.113.0/24", "203.0.113.128/25"]}""", "spec.addresses[1]")]
    [InlineData("bad-one-number", """{"addresses": ["1"]}""", "spec.addresses[0]")]
    [InlineData("bad-octet", """{"addresses": ["198.51.100.300"]}""", "spec.addresses[0]")]
    [InlineData("bad-mixed-range", """{"addresses": ["198.51.100.1-2001:db8::1"]}""", "spec.addresses[0]")]
    [InlineData("bad-ns-name", """{"addresses": ["198.51.100.0/28"], "serviceAllocation": {"namespaces": ["Bad_NS"]}}""", "spec.serviceAllocation.namespaces[0]")]
    [InlineData("bad-ns-duplicate", """{"addresses": ["198.51.100.0/28"], "serviceAllocation": {"namespaces": ["a", "a"]}}""", "spec.serviceAllocation.namespaces[1]")]
    [InlineData("bad-ns-operator", """{"addresses": ["198.51.100.0/28"], "serviceAllocation": {"namespaceSelectors": [{"matchExpressions": [{"key": "team", "operator": "Maybe", "values": ["a"]}]}]}}""", "spec.serviceAllocation.namespaceSelectors[0]")]
    [InlineData("bad-svc-label-key", """{"addresses": ["198.51.100.0/28"], "serviceAllocation": {"serviceSelectors": [{"matchLabels": {"bad key!": "x"}}]}}""", "spec.serviceAllocation.serviceSelectors[0]")]
    [InlineData("bad-svc-in-empty", """{"addresses": ["198.51.100.0/28"], "serviceAllocation": {"serviceSelectors": [{"matchExpressions": [{"key": "app", "operator": "In"}]}]}}""", "spec.serviceAllocation.serviceSelectors[0]")]
    public async Task A_malformed_pool_is_reported_and_disturbs_nothing(string name, string spec, string expected)
    {
        var before = await AddressesAsync();
        await F.Client.CustomObjects.CreateNamespacedCustomObjectAsync(Object("IPAddressPool", name, spec), Api.Group, Api.Version, Ns, "ipaddresspools");

        await ControllerFixture.Eventually(async () => (await F.PoolAsync(name)).Status?.Conditions?.SingleOrDefault(c => c.Type == "Valid") is { Status: "False" } c
            && c.Message.Contains(expected, StringComparison.Ordinal), $"pool {name} has Valid=False naming {expected}");
        await AssertEventAsync(name, Ns, "InvalidPool", expected);
        await AssertUndisturbedAsync(before, name);
    }

    [Theory]
    [InlineData("ad-missing-pool", """{"ipAddressPools": ["missing"]}""", "spec.ipAddressPools[0]: IPAddressPool \"missing\" does not exist")]
    [InlineData("ad-duplicate-pool", """{"ipAddressPools": ["main", "main"]}""", "spec.ipAddressPools[1]: duplicate pool")]
    [InlineData("ad-long-interface", """{"interfaces": ["a-name-far-too-long"]}""", "spec.interfaces[0]")]
    [InlineData("ad-slash-interface", """{"interfaces": ["eth0/1"]}""", "spec.interfaces[0]")]
    [InlineData("ad-node-operator", """{"nodeSelectors": [{"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]}]}""", "spec.nodeSelectors[0]")]
    [InlineData("ad-pool-selector", """{"ipAddressPoolSelectors": [{"matchExpressions": [{"key": "tier", "operator": "Exists", "values": ["x"]}]}]}""", "spec.ipAddressPoolSelectors[0]")]
    [InlineData("ad-service-label", """{"serviceSelectors": [{"matchLabels": {"app": "not a valid value"}}]}""", "spec.serviceSelectors[0]")]
    public async Task A_malformed_advertisement_is_reported_and_disturbs_nothing(string name, string spec, string expected)
    {
        var before = await AddressesAsync();
        await F.Client.CustomObjects.CreateNamespacedCustomObjectAsync(Object("L2Advertisement", name, spec), Api.Group, Api.Version, Ns, "l2advertisements");

        await ControllerFixture.Eventually(async () =>
            (await F.Client.CustomObjects.GetNamespacedCustomObjectAsync<V1Alpha1L2Advertisement>(Api.Group, Api.Version, Ns, "l2advertisements", name))
                .Status?.Conditions?.SingleOrDefault(c => c.Type == "Valid") is { Status: "False" } c && c.Message.Contains(expected, StringComparison.Ordinal),
            $"advertisement {name} has Valid=False naming {expected}");
        await AssertEventAsync(name, Ns, "InvalidAdvertisement", expected);
        await AssertUndisturbedAsync(before, name);
    }

    [Theory]
    [InlineData("svc-bad-octet", Ips, "192.0.2.999", null, "InvalidAnnotation", "annotation lballocator.io/loadBalancerIPs")]
    [InlineData("svc-text", Ips, "banana", null, "InvalidAnnotation", "annotation lballocator.io/loadBalancerIPs")]
    [InlineData("svc-two-v4", Ips, "192.0.2.1,192.0.2.2", null, "InvalidAnnotation", "lists more than one IPv4 address")]
    [InlineData("svc-empty-entry", Ips, "192.0.2.1,,192.0.2.2", null, "InvalidAnnotation", "has an empty entry")]
    [InlineData("svc-zone", Ips, "2001:db8::1%eth0", null, "InvalidAnnotation", "annotation lballocator.io/loadBalancerIPs")]
    [InlineData("svc-wrong-family", Ips, "2001:db8::5", null, "InvalidAnnotation", "is IPv6 but the Service is IPv4 single-stack")]
    [InlineData("svc-empty-pool", Pool, "", null, "InvalidAnnotation", "annotation lballocator.io/address-pool is empty")]
    [InlineData("svc-missing-pool", Pool, "no-such-pool", null, "AllocationFailed", "IPAddressPool \"no-such-pool\" named by annotation")]
    [InlineData("svc-outside-pools", Ips, "203.0.113.77", null, "AllocationFailed", "requested IP 203.0.113.77 is not in any pool")]
    [InlineData("svc-both-requests", Ips, "192.0.2.70", "192.0.2.71", "InvalidAnnotation", "both annotation lballocator.io/loadBalancerIPs and spec.loadBalancerIP are set")]
    [InlineData("svc-bad-spec-ip", null, null, "not-an-ip", "InvalidAnnotation", "spec.loadBalancerIP")]
    [InlineData("svc-bad-policy", "spec.ipFamilyPolicy", "Sometimes", null, "InvalidAnnotation", "spec.ipFamilyPolicy \"Sometimes\"")]
    [InlineData("svc-bad-family", "spec.ipFamilies", "IPv5", null, "InvalidAnnotation", "spec.ipFamilies: \"IPv5\"")]
    public async Task A_malformed_service_gets_a_warning_and_disturbs_nothing(string name, string? field, string? value, string? specIp, string reason, string expected)
    {
        var before = await AddressesAsync();
        var service = new V1Service
        {
            Metadata = new V1ObjectMeta { Name = name },
            Spec = new V1ServiceSpec { Type = "LoadBalancer", Ports = [new V1ServicePort { Port = 80, Protocol = "TCP" }], IpFamilies = ["IPv4"], IpFamilyPolicy = "SingleStack", LoadBalancerIP = specIp },
        };
        switch (field)
        {
            case "spec.ipFamilyPolicy":
                service.Spec.IpFamilyPolicy = value;
                break;
            case "spec.ipFamilies":
                service.Spec.IpFamilies = [value!];
                break;
            case not null:
                service.Metadata.Annotations = new Dictionary<string, string> { [field] = value! };
                break;
        }

        await F.Client.CoreV1.CreateNamespacedServiceAsync(service, "default");

        await AssertEventAsync(name, "default", reason, expected);
        Assert.Null(await F.IngressAsync(name));
        await AssertUndisturbedAsync(before, name);
    }

    private static JsonObject Object(string kind, string name, string spec) => new()
    {
        ["apiVersion"] = Api.GroupVersion,
        ["kind"] = kind,
        ["metadata"] = new JsonObject { ["name"] = name, ["namespace"] = Ns },
        ["spec"] = JsonNode.Parse(spec),
    };

    private async Task AssertEventAsync(string name, string ns, string reason, string expected) =>
        await ControllerFixture.Eventually(async () => (await F.EventsAsync(name, ns)).Any(e => e.Type == "Warning" && e.Reason == reason && e.Message.Contains(expected, StringComparison.Ordinal)),
            $"a {reason} warning on {name} naming {expected}");

    private async Task<Dictionary<string, string?>> AddressesAsync() =>
        (await F.Client.CoreV1.ListNamespacedServiceAsync("default")).Items.ToDictionary(s => s.Metadata.Name, s => s.Status?.LoadBalancer?.Ingress?.FirstOrDefault()?.Ip, StringComparer.Ordinal);

    /// <summary>Every Service keeps its address, nothing else got a warning, and a new Service is still served.</summary>
    private async Task AssertUndisturbedAsync(Dictionary<string, string?> before, string culprit)
    {
        var control = $"ok-{culprit}";
        await F.CreateServiceAsync(control);
        await ControllerFixture.Eventually(async () => await F.IngressAsync(control) is not null, $"{control} gets an address after {culprit}");
        var after = await AddressesAsync();
        foreach (var (service, ip) in before)
        {
            Assert.Equal(ip, after[service]);
        }

        Assert.Equal("192.0.2.0", after["good"]);
        var warnings = (await F.Client.CoreV1.ListNamespacedEventAsync("default")).Items
            .Where(e => e.Type == "Warning" && before.ContainsKey(e.InvolvedObject.Name) && before[e.InvolvedObject.Name] is not null);
        Assert.Empty(warnings.Select(w => $"{w.InvolvedObject.Name}: {w.Reason} {w.Message}"));
    }
}

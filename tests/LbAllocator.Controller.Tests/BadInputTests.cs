using System.Net;
using System.Text.Json.Nodes;
using k8s;
using k8s.Autorest;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.TestApiServer;

namespace LbAllocator.Controller.Tests;

/// <summary>
/// One running controller on the real server that every bad input of the corpus is thrown at, in turn; started by
/// the class's first test (it needs the collection's server) and stopped after its last.
/// </summary>
public sealed class BadInputCluster : IAsyncLifetime
{
    private ControllerFixture? _f;

    /// <summary>The class's tests run one after another, so the first one starts it alone.</summary>
    public async Task<ControllerFixture> StartAsync(RealCluster cluster)
    {
        if (_f is null)
        {
            var f = await ControllerFixture.StartAsync(cluster);
            _f = f;
            await f.CreatePoolAsync("main", "192.0.2.0/25");
            await f.StartControllerAsync();
            await f.CreateServiceAsync("good");
            await ControllerFixture.Eventually(async () => await f.IngressAsync("good") == "192.0.2.0", "good has 192.0.2.0");
        }

        return _f;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (_f is not null)
        {
            await _f.DisposeAsync();
        }
    }
}

/// <summary>
/// A corpus of malformed pools, advertisements and Services. What the real API server judges by our CRD schemas
/// or its own Service validation it refuses, naming the field (422). What it lets through (what a hurried operator
/// writes) gets an event, and for pools and advertisements a Valid=False condition, naming the field; no address
/// changes; the controller keeps serving new Services.
/// </summary>
[Collection(RealClusterCollection.Name)]
public sealed class BadInputTests(RealCluster cluster, BadInputCluster bad) : IClassFixture<BadInputCluster>, IAsyncLifetime
{
    private const string Ips = ServiceAnnotations.LoadBalancerIPs;
    private const string Pool = ServiceAnnotations.AddressPool;

    private ControllerFixture F { get; set; } = null!;

    public async Task InitializeAsync() => F = await bad.StartAsync(cluster);

    public Task DisposeAsync() => Task.CompletedTask;

    [RealApiTheory]
    [InlineData("bad-prefix", """{"addresses": ["198.51.100.0/33"]}""", "spec.addresses[0]")]
    [InlineData("bad-host-bits", """{"addresses": ["198.51.100.1/24"]}""", "spec.addresses[0]")]
    [InlineData("bad-reversed", """{"addresses": ["198.51.100.20-198.51.100.10"]}""", "spec.addresses[0]")]
    [InlineData("bad-leading-zero", """{"addresses": ["010.0.0.1"]}""", "spec.addresses[0]")]
    [InlineData("bad-v4-mapped", """{"addresses": ["::ffff:198.51.100.1"]}""", "spec.addresses[0]")]
    [InlineData("bad-overlap", """{"addresses": ["192.0.2.0/28"]}""", "of pool \"main\"")]
    [InlineData("bad-self-overlap", """{"addresses": ["203.0.113.0/24", "203.0.113.128/25"]}""", "spec.addresses[1]")]
    [InlineData("bad-one-number", """{"addresses": ["1"]}""", "spec.addresses[0]")]
    [InlineData("bad-octet", """{"addresses": ["198.51.100.300"]}""", "spec.addresses[0]")]
    [InlineData("bad-mixed-range", """{"addresses": ["198.51.100.1-2001:db8::1"]}""", "spec.addresses[0]")]
    [InlineData("bad-svc-label-key", """{"addresses": ["198.51.100.0/28"], "serviceAllocation": {"serviceSelectors": [{"matchLabels": {"bad key!": "x"}}]}}""", "spec.serviceAllocation.serviceSelectors[0]")]
    public async Task A_malformed_pool_is_reported_and_disturbs_nothing(string name, string spec, string expected)
    {
        var before = await AddressesAsync();
        await CreateAsync("IPAddressPool", name, spec);

        await ControllerFixture.Eventually(async () => (await F.PoolAsync(name)).Status?.Conditions?.SingleOrDefault(c => c.Type == "Valid") is { Status: "False" } c
            && c.Message.Contains(expected, StringComparison.Ordinal), $"pool {name} has Valid=False naming {expected}");
        await AssertEventAsync(name, F.Ns, "InvalidPool", expected);
        await AssertUndisturbedAsync(before, name);
    }

    [RealApiTheory]
    [InlineData("ad-missing-pool", """{"ipAddressPools": ["missing"]}""", "spec.ipAddressPools[0]: IPAddressPool \"missing\" does not exist")]
    [InlineData("ad-missing-one-pool", """{"ipAddressPools": ["main", "missing"]}""", "spec.ipAddressPools[1]: IPAddressPool \"missing\" does not exist; the advertisement covers only the pools that exist")]
    [InlineData("ad-service-label", """{"serviceSelectors": [{"matchLabels": {"app": "not a valid value"}}]}""", "spec.serviceSelectors[0]")]
    [InlineData("ad-preferred-label", """{"preferredNodeSelectors": [{"matchLabels": {"zone": "a"}}, {"matchLabels": {"zone": "not a valid value"}}]}""", "spec.preferredNodeSelectors[1].matchLabels[zone]: label value \"not a valid value\" is invalid: it must be empty or 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit; the advertisement is used without its preferredNodeSelectors (no node is preferred)")]
    public async Task A_malformed_advertisement_is_reported_and_disturbs_nothing(string name, string spec, string expected)
    {
        var before = await AddressesAsync();
        await CreateAsync("L2Advertisement", name, spec);

        await ControllerFixture.Eventually(async () =>
            (await F.Client.CustomObjects.GetNamespacedCustomObjectAsync<V1Alpha1L2Advertisement>(Api.Group, Api.Version, F.Ns, "l2advertisements", name))
                .Status?.Conditions?.SingleOrDefault(c => c.Type == "Valid") is { Status: "False" } c && c.Message.Contains(expected, StringComparison.Ordinal),
            $"advertisement {name} has Valid=False naming {expected}");
        await AssertEventAsync(name, F.Ns, "InvalidAdvertisement", expected);
        await AssertUndisturbedAsync(before, name);
    }

    /// <summary>What our CRD schemas forbid never reaches the controller: the API server refuses it and names the field.</summary>
    [RealApiTheory]
    [InlineData("IPAddressPool", "bad-empty", """{"addresses": []}""", "spec.addresses: Invalid value: 0: spec.addresses in body should have at least 1 items")]
    [InlineData("IPAddressPool", "bad-ns-duplicate", """{"addresses": ["198.51.100.0/28"], "serviceAllocation": {"namespaces": ["a", "a"]}}""", "spec.serviceAllocation.namespaces[1]: Duplicate value: \"a\"")]
    [InlineData("IPAddressPool", "bad-ns-operator", """{"addresses": ["198.51.100.0/28"], "serviceAllocation": {"namespaceSelectors": [{"matchExpressions": [{"key": "team", "operator": "Maybe", "values": ["a"]}]}]}}""", "spec.serviceAllocation.namespaceSelectors[0].matchExpressions[0].operator: Unsupported value: \"Maybe\"")]
    [InlineData("L2Advertisement", "ad-duplicate-pool", """{"ipAddressPools": ["main", "main"]}""", "spec.ipAddressPools[1]: Duplicate value: \"main\"")]
    [InlineData("L2Advertisement", "ad-long-interface", """{"interfaces": ["a-name-far-too-long"]}""", "spec.interfaces[0]: Too long: may not be longer than 15")]
    [InlineData("L2Advertisement", "ad-slash-interface", """{"interfaces": ["eth0/1"]}""", "spec.interfaces[0]: Invalid value: \"eth0/1\"")]
    [InlineData("L2Advertisement", "ad-preferred-operator", """{"preferredNodeSelectors": [{"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]}]}""", "spec.preferredNodeSelectors[0].matchExpressions[0].operator: Unsupported value: \"Near\"")]
    [InlineData("L2Advertisement", "ad-node-operator", """{"nodeSelectors": [{"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]}]}""", "spec.nodeSelectors[0].matchExpressions[0].operator: Unsupported value: \"Near\"")]
    [InlineData("IPAddressPool", "bad-text", """{"addresses": ["not-an-ip"]}""", "spec.addresses[0]: Invalid value: \"not-an-ip\": spec.addresses[0] in body should match")]
    [InlineData("IPAddressPool", "bad-zone", """{"addresses": ["fe80::1%eth0"]}""", "spec.addresses[0]: Invalid value: \"fe80::1%eth0\": spec.addresses[0] in body should match")]
    [InlineData("IPAddressPool", "bad-ns-name", """{"addresses": ["198.51.100.0/28"], "serviceAllocation": {"namespaces": ["Bad_NS"]}}""", "spec.serviceAllocation.namespaces[0]: Invalid value: \"Bad_NS\"")]
    [InlineData("IPAddressPool", "bad-svc-in-empty", """{"addresses": ["198.51.100.0/28"], "serviceAllocation": {"serviceSelectors": [{"matchExpressions": [{"key": "app", "operator": "In"}]}]}}""", "spec.serviceAllocation.serviceSelectors[0].matchExpressions[0]: Invalid value: \"object\": values must be non-empty for In and NotIn")]
    [InlineData("L2Advertisement", "ad-pool-selector", """{"ipAddressPoolSelectors": [{"matchExpressions": [{"key": "tier", "operator": "Exists", "values": ["x"]}]}]}""", "spec.ipAddressPoolSelectors[0].matchExpressions[0]: Invalid value: \"object\": values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist")]
    public async Task A_pool_or_advertisement_our_schema_forbids_is_refused_naming_the_field(string kind, string name, string spec, string expected) =>
        await AssertRefusedAsync(() => CreateAsync(kind, name, spec), expected);

    [RealApiTheory]
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
    // kube-apiserver 1.28 still accepts a malformed spec.loadBalancerIP (with a warning that a later release will not).
    [InlineData("svc-bad-spec-ip", null, null, "not-an-ip", "InvalidAnnotation", "spec.loadBalancerIP")]
    public async Task A_malformed_service_gets_a_warning_and_disturbs_nothing(string name, string? annotation, string? value, string? specIp, string reason, string expected)
    {
        var before = await AddressesAsync();
        var service = ControllerFixture.NewService(name, annotation is null ? null : new() { [annotation] = value! });
        service.Spec.LoadBalancerIP = specIp;

        await F.Client.CoreV1.CreateNamespacedServiceAsync(service, F.ServiceNs);

        await AssertEventAsync(name, F.ServiceNs, reason, expected);
        Assert.Null(await F.IngressAsync(name));
        await AssertUndisturbedAsync(before, name);
    }

    /// <summary>Service fields the API server validates itself never reach the controller malformed.</summary>
    [RealApiTheory]
    [InlineData("svc-bad-policy", "Sometimes", "IPv4", "spec.ipFamilyPolicy: Unsupported value: \"Sometimes\"")]
    [InlineData("svc-bad-family", "SingleStack", "IPv5", "spec.ipFamilies[0]: Unsupported value: \"IPv5\"")]
    public async Task A_service_the_api_server_forbids_is_refused_naming_the_field(string name, string policy, string family, string expected)
    {
        var service = ControllerFixture.NewService(name);
        service.Spec.IpFamilyPolicy = policy;
        service.Spec.IpFamilies = [family];

        await AssertRefusedAsync(() => F.Client.CoreV1.CreateNamespacedServiceAsync(service, F.ServiceNs), expected);
    }

    /// <summary>The create fails with 422 Unprocessable Entity, its message (what kubectl prints) naming the field.</summary>
    private static async Task AssertRefusedAsync(Func<Task> create, string expected)
    {
        var refused = await Assert.ThrowsAsync<HttpOperationException>(create);

        Assert.Equal(HttpStatusCode.UnprocessableEntity, refused.Response.StatusCode);
        Assert.Contains(expected, KubernetesJson.Deserialize<V1Status>(refused.Response.Content).Message, StringComparison.Ordinal);
    }

    private Task<object> CreateAsync(string kind, string name, string spec)
    {
        var body = new JsonObject
        {
            ["apiVersion"] = Api.GroupVersion,
            ["kind"] = kind,
            ["metadata"] = new JsonObject { ["name"] = name, ["namespace"] = F.Ns },
            ["spec"] = JsonNode.Parse(spec),
        };
        return F.Client.CustomObjects.CreateNamespacedCustomObjectAsync(body, Api.Group, Api.Version, F.Ns, kind == "IPAddressPool" ? "ipaddresspools" : "l2advertisements");
    }

    private async Task AssertEventAsync(string name, string ns, string reason, string expected) =>
        await ControllerFixture.Eventually(async () => (await F.EventsAsync(name, ns)).Any(e => e.Type == "Warning" && e.Reason == reason && e.Message.Contains(expected, StringComparison.Ordinal)),
            $"a {reason} warning on {name} naming {expected}");

    private async Task<Dictionary<string, string?>> AddressesAsync() =>
        (await F.ServicesAsync()).ToDictionary(s => s.Metadata.Name, s => s.Status?.LoadBalancer?.Ingress?.FirstOrDefault()?.Ip, StringComparer.Ordinal);

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
        var warnings = (await F.Client.CoreV1.ListNamespacedEventAsync(F.ServiceNs)).Items
            .Where(e => e.Type == "Warning" && before.ContainsKey(e.InvolvedObject.Name) && before[e.InvolvedObject.Name] is not null);
        Assert.Empty(warnings.Select(w => $"{w.InvolvedObject.Name}: {w.Reason} {w.Message}"));
    }
}

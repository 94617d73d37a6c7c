using System.Text.Json;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.TestApiServer;

namespace LbAllocator.Controller.Tests;

/// <summary>Pools that admit by namespace labels: the namespace decides the pool, and relabelling it re-judges its Services.</summary>
internal static class NamespacePools
{
    /// <summary>"gold" comes first for namespaces labelled tier=gold; "fallback" takes anyone.</summary>
    public static async Task CreateAsync(ControllerFixture f)
    {
        V1Alpha1IPAddressPool[] pools =
        [
            new()
            {
                Metadata = new V1ObjectMeta { Name = "gold" },
                Spec = new IPAddressPoolSpec
                {
                    Addresses = ["192.0.2.0/30"],
                    ServiceAllocation = new ServiceAllocationSpec { Priority = 1, NamespaceSelectors = [new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["tier"] = "gold" } }] },
                },
            },
            new() { Metadata = new V1ObjectMeta { Name = "fallback" }, Spec = new IPAddressPoolSpec { Addresses = ["198.51.100.0/30"] } },
        ];
        foreach (var pool in pools)
        {
            await f.Client.CustomObjects.CreateNamespacedCustomObjectAsync(pool, Api.Group, Api.Version, f.Ns, "ipaddresspools");
        }
    }

    public static Task LabelAsync(IKubernetes client, string ns, string tier) =>
        client.CoreV1.PatchNamespaceAsync(
            new V1Patch(JsonSerializer.Serialize(new { metadata = new { labels = new Dictionary<string, string> { ["tier"] = tier } } }), V1Patch.PatchType.MergePatch), ns);
}

/// <summary>On the real server: a namespace's labels decide its Services' pool, and relabelling re-judges them.</summary>
[Collection(RealClusterCollection.Name)]
public sealed class NamespaceLabelTests(RealCluster cluster) : IAsyncLifetime
{
    private ControllerFixture _f = null!;

    public async Task InitializeAsync() => _f = await ControllerFixture.StartAsync(cluster);

    public async Task DisposeAsync() => await _f.DisposeAsync();

    [RealApiFact]
    public async Task A_relabelled_namespace_moves_services_its_pool_no_longer_admits_and_no_others()
    {
        await NamespacePools.CreateAsync(_f);
        await NamespacePools.LabelAsync(_f.Client, _f.ServiceNs, "gold");
        await _f.StartControllerAsync();

        await _f.CreateServiceAsync("web");
        await ControllerFixture.Eventually(async () => await _f.IngressAsync("web") == "192.0.2.0", "web is served from the gold pool");

        // No longer admitted by "gold": moved, as at a pool edit.
        await NamespacePools.LabelAsync(_f.Client, _f.ServiceNs, "silver");
        await ControllerFixture.Eventually(async () => await _f.IngressAsync("web") == "198.51.100.0", "web moved to the fallback pool");

        // Admitted by "gold" again, but "fallback" still admits it too: it keeps what it has.
        await NamespacePools.LabelAsync(_f.Client, _f.ServiceNs, "gold");
        await _f.CreateServiceAsync("probe"); // served after the relabel was seen (one watch, in order)
        await ControllerFixture.Eventually(async () => await _f.IngressAsync("probe") == "192.0.2.0", "a new Service is served from the gold pool");
        await Task.Delay(300);
        Assert.Equal("198.51.100.0", await _f.IngressAsync("web"));
    }
}

/// <summary>On the double, which stores a Service in a namespace it has never listed: the order "Service before Namespace", deterministically.</summary>
public sealed class NamespaceOrderTests : IAsyncLifetime
{
    private const string Team = "team";
    private ControllerFixture _f = null!;

    public async Task InitializeAsync() => _f = await ControllerFixture.StartDoubleAsync();

    public async Task DisposeAsync() => await _f.DisposeAsync();

    [Fact]
    public async Task A_service_seen_before_its_namespace_waits_for_it_and_is_judged_by_its_labels()
    {
        await _f.Client.CoreV1.CreateNamespacedServiceAsync(ControllerFixture.NewService("web"), Team);
        await NamespacePools.CreateAsync(_f);

        await _f.StartControllerAsync();

        // A Service whose namespace is known is served meanwhile; web is not (it used to get the fallback pool's address, and keep it).
        await _f.CreateServiceAsync("probe");
        await ControllerFixture.Eventually(async () => await _f.IngressAsync("probe") == "198.51.100.0", "probe is served from the fallback pool");
        await Task.Delay(300);
        Assert.Null(await IngressAsync("web"));

        await _f.Client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = Team, Labels = new Dictionary<string, string> { ["tier"] = "gold" } } });
        await ControllerFixture.Eventually(async () => await IngressAsync("web") == "192.0.2.0", "web is served from the gold pool once its namespace is seen");

        // A namespace deleted (its Services' deletion not seen yet) takes nothing from them.
        await _f.Client.CoreV1.DeleteNamespaceAsync(Team);
        await Task.Delay(300);
        Assert.Equal("192.0.2.0", await IngressAsync("web"));
    }

    private async Task<string?> IngressAsync(string name) =>
        (await _f.Client.CoreV1.ReadNamespacedServiceAsync(name, Team)).Status?.LoadBalancer?.Ingress?.FirstOrDefault()?.Ip;
}

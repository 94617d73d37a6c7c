using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Watching;
using LbAllocator.TestApiServer;
using Microsoft.Extensions.Logging.Abstractions;

namespace LbAllocator.Kubernetes.Tests;

/// <summary>
/// The caches keep only what decisions read (issue 14): no managedFields on any object, no image list on Nodes,
/// on the real kube-apiserver, from the list and from the watch alike; and a write made from a cached object
/// leaves the server's managedFields as they were.
/// </summary>
public sealed class CacheTrimTests(KubeApiServerFixture api) : IClassFixture<KubeApiServerFixture>
{
    [RealApiFact]
    public async Task Cached_objects_carry_no_managed_fields_nor_node_images_and_writes_from_them_keep_the_servers()
    {
        using var client = api.Server.CreateClient();
        await client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = "trim" } });
        await client.CoreV1.CreateNamespacedServiceAsync(Service("listed"), "trim");
        var node = await client.CoreV1.CreateNodeAsync(new V1Node { Metadata = new V1ObjectMeta { Name = "worker-1", Labels = new Dictionary<string, string> { ["zone"] = "a" } } });
        node.Status = new V1NodeStatus
        {
            Images = [new V1ContainerImage { Names = ["registry.example/app@sha256:0123"], SizeBytes = 1 }],
            Conditions = [new V1NodeCondition { Type = "NetworkUnavailable", Status = "False" }],
        };
        await client.CoreV1.ReplaceNodeStatusAsync(node, "worker-1");

        using var kube = api.Server.CreateApi();
        var services = new ResourceCache<V1Service>(Sources.Services(kube), NullLogger.Instance);
        var nodes = new ResourceCache<V1Node>(Sources.Nodes(kube), NullLogger.Instance);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var running = Task.WhenAll(services.RunAsync(stop.Token), nodes.RunAsync(stop.Token));
        await services.WaitForSyncAsync(stop.Token);
        await nodes.WaitForSyncAsync(stop.Token);

        // The server has them (so the check below can fail); the cache does not.
        Assert.NotEmpty((await client.CoreV1.ReadNamespacedServiceAsync("listed", "trim")).Metadata.ManagedFields);
        Assert.NotEmpty((await client.CoreV1.ReadNodeAsync("worker-1")).Status.Images);
        Assert.True(services.TryGet("trim/listed", out var listed));
        Assert.Null(listed!.Metadata.ManagedFields);
        Assert.True(nodes.TryGet("worker-1", out var cachedNode));
        Assert.Null(cachedNode!.Status.Images);
        Assert.Equal("a", cachedNode.Metadata.Labels["zone"]); // what the election reads stays
        Assert.Equal("NetworkUnavailable", Assert.Single(cachedNode.Status.Conditions).Type);

        // From the watch too.
        await client.CoreV1.CreateNamespacedServiceAsync(Service("watched"), "trim");
        V1Service? watched = null;
        while (!services.TryGet("trim/watched", out watched))
        {
            await Task.Delay(50, stop.Token);
        }

        Assert.Null(watched!.Metadata.ManagedFields);

        // A status write from the cached object (as the controller makes): the server keeps its managedFields.
        var before = (await client.CoreV1.ReadNamespacedServiceAsync("listed", "trim")).Metadata.ManagedFields.Select(m => m.Manager).ToList();
        listed.Status = new V1ServiceStatus { LoadBalancer = new V1LoadBalancerStatus { Ingress = [new V1LoadBalancerIngress { Ip = "192.0.2.1" }] } };
        await client.CoreV1.ReplaceNamespacedServiceStatusAsync(listed, "listed", "trim", fieldManager: "lballocator-test");
        var after = (await client.CoreV1.ReadNamespacedServiceAsync("listed", "trim")).Metadata.ManagedFields.Select(m => m.Manager).ToList();
        Assert.All(before, manager => Assert.Contains(manager, after));
        Assert.Contains("lballocator-test", after);

        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    private static V1Service Service(string name) => new()
    {
        Metadata = new V1ObjectMeta { Name = name },
        Spec = new V1ServiceSpec { Type = "LoadBalancer", Ports = [new V1ServicePort { Port = 80, Protocol = "TCP" }] },
    };
}

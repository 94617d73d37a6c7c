using System.Net;
using k8s.Models;
using LbAllocator.Kubernetes.Client;

namespace LbAllocator.TestApiServer.Tests;

/// <summary>The real-server harness's own tools: restarting kube-apiserver, and its request counters.</summary>
public sealed class KubeApiServerTests
{
    /// <summary>
    /// A restarted server keeps its address and its data (etcd stays); its watch cache starts afresh, so a watch from a
    /// version before the restart gets 410 Gone; its counters start from zero and count what is asked of it then.
    /// </summary>
    [RealApiFact]
    public async Task A_restarted_server_keeps_its_address_and_data_and_expires_older_watches()
    {
        await using var server = await KubeApiServer.StartAsync();
        using var api = server.CreateApi();
        var node = await api.CreateAsync(KubeResources.Nodes, null, new V1Node { Metadata = new V1ObjectMeta { Name = "kept" } });
        await api.CreateAsync(KubeResources.Namespaces, null, new V1Namespace { Metadata = new V1ObjectMeta { Name = "later" } });
        var url = server.Url;

        await server.RestartAsync();

        Assert.Equal(url, server.Url);
        Assert.Equal(node.Metadata.Uid, (await api.GetAsync(KubeResources.Nodes, null, "kept")).Metadata.Uid);
        var e = await Assert.ThrowsAsync<KubeApiException>(async () =>
        {
            await foreach (var _ in api.WatchAsync(KubeResources.Nodes, null, null, null, node.Metadata.ResourceVersion, 5))
            {
            }
        });
        Assert.Equal(HttpStatusCode.Gone, e.StatusCode);
        await api.ListAsync(KubeResources.Nodes, null);
        var byVerb = await server.RequestsByVerbAsync(["nodes"]);
        Assert.Equal((1, 1, 1), (byVerb.GetValueOrDefault("GET"), byVerb.GetValueOrDefault("WATCH"), byVerb.GetValueOrDefault("LIST")));

        await using var watch = api.WatchAsync(KubeResources.Nodes, null, null, null, "0", 60).GetAsyncEnumerator();
        var watching = watch.MoveNextAsync().AsTask(); // ADDED for "kept"
        Assert.True(await watching);
        Assert.Equal(1, (await server.WatchesByResourceAsync()).GetValueOrDefault("nodes"));
    }
}

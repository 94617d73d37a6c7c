using System.Diagnostics;
using System.Globalization;
using k8s.Models;
using LbAllocator.Controller;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.Kubernetes.Watching;
using LbAllocator.TestApiServer;
using Microsoft.Extensions.Logging.Abstractions;

namespace LbAllocator.ApiRestartBench;

/// <summary>
/// Watch events the API server sends for Nodes, with S speakers watching every Node (before) and with the speakers
/// reading the controller's node digest (after), in the same run on the same server: for a round of kubelet-style
/// status updates of every node, and for one label an advertisement's selector names. The counts are the server's own
/// (<c>apiserver_watch_events_total</c>, bookmarks included). Usage: node-churn [--speakers 100] [--nodes 100]
/// </summary>
internal static class NodeChurn
{
    private const string Ns = "lballocator-system";

    public static async Task<int> RunAsync(KubeApiServer server, int speakers, int nodes)
    {
        using var api = server.CreateApi();
        await api.CreateAsync(KubeResources.Namespaces, null, new V1Namespace { Metadata = new V1ObjectMeta { Name = Ns } });
        await api.CreateAsync(KubeResources.Advertisements, Ns, new V1Alpha1L2Advertisement
        {
            Metadata = new V1ObjectMeta { Name = "bench" },
            Spec = new L2AdvertisementSpec { NodeSelectors = [new V1LabelSelector { MatchExpressions = [new V1LabelSelectorRequirement { Key = "zone", OperatorProperty = "Exists" }] }] },
        });
        await Parallel.ForAsync(0, nodes, async (i, ct) => await api.CreateAsync(KubeResources.Nodes, null, new V1Node { Metadata = new V1ObjectMeta { Name = $"node-{i}", Labels = new Dictionary<string, string> { ["zone"] = "a" } } }, ct));

        Console.WriteLine($"{speakers} speakers, {nodes} nodes; watch events sent by the API server (Node + ConfigMap)");
        Console.WriteLine();
        Console.WriteLine("| speakers read | a status update of every node: to the speakers | to the controller | per node updated | one node relabelled (zone): to the speakers | to the controller |");
        Console.WriteLine("|---|---|---|---|---|---|");
        await RoundAsync("Nodes (before)", server, api, nodes, client => Sources.Nodes(client), speakers, controller: false);
        await RoundAsync("the node digest (after)", server, api, nodes, client => new DigestNodes(Sources.NodeDigest(client, Ns), NullLogger.Instance).Source, speakers, controller: true);
        return 0;
    }

    private static async Task RoundAsync(string what, KubeApiServer server, KubeApi api, int nodes, Func<KubeApi, ResourceSource<V1Node>> speakerSource, int speakers, bool controller)
    {
        using var stop = new CancellationTokenSource();
        var clients = new List<KubeApi>();
        var caches = new List<ResourceCache<V1Node>>();
        var running = new List<Task>();
        KubeApi Client()
        {
            var client = server.CreateApi();
            clients.Add(client);
            return client;
        }

        Reconciler? reconciler = null;
        NodeDigestFeed? feed = null;
        if (controller)
        {
            var client = Client();
            var options = new ControllerOptions { Namespace = Ns, LeaderElection = false };
            reconciler = new Reconciler(client, options, new ControllerMetrics(Prometheus.Metrics.WithCustomRegistry(Prometheus.Metrics.NewCustomRegistry())), NullLoggerFactory.Instance);
            feed = new NodeDigestFeed(client, options, reconciler, TimeProvider.System, NullLoggerFactory.Instance);
            running.Add(reconciler.RunCachesAsync(stop.Token));
            running.Add(feed.RunCachesAsync(stop.Token));
            running.Add(feed.RunAsync(stop.Token));
        }

        for (var i = 0; i < speakers; i++)
        {
            var cache = new ResourceCache<V1Node>(speakerSource(Client()), NullLogger.Instance);
            caches.Add(cache);
            running.Add(cache.RunAsync(stop.Token));
        }

        // Every speaker holds every node (after: once the digest is written).
        await Until(() => caches.All(c => c.Items.Count == nodes));
        await Task.Delay(TimeSpan.FromSeconds(3));

        var (toSpeakers, toController) = await CountAsync(server, controller, async () =>
            await Parallel.ForAsync(0, nodes, async (i, ct) => await api.PatchAsync(KubeResources.Nodes, null, $"node-{i}",
                $"{{\"status\":{{\"conditions\":[{{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"KubeletReady\",\"lastHeartbeatTime\":\"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ssZ}\"}}]}}}}", "status", ct)));
        var (relabelSpeakers, relabelController) = await CountAsync(server, controller, async () =>
        {
            await api.PatchAsync(KubeResources.Nodes, null, "node-0", "{\"metadata\":{\"labels\":{\"zone\":\"b\"}}}");
            await Until(() => caches.All(c => c.TryGet("node-0", out var node) && node!.Metadata.Labels?.TryGetValue("zone", out var zone) == true && zone == "b"));
        });
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {what} | {toSpeakers} | {toController} | {toSpeakers / nodes:F2} to the speakers | {relabelSpeakers} | {relabelController} |"));

        await stop.CancelAsync();
        await Task.WhenAll(running).ContinueWith(_ => { }, TaskScheduler.Default);
        clients.ForEach(c => c.Dispose());
        await api.PatchAsync(KubeResources.Nodes, null, "node-0", "{\"metadata\":{\"labels\":{\"zone\":\"a\"}}}");
    }

    /// <summary>Node and ConfigMap watch events the server sent while the action ran and 3 s after: to the speakers, and to the controller (its Node watch).</summary>
    private static async Task<(double Speakers, double Controller)> CountAsync(KubeApiServer server, bool controller, Func<Task> action)
    {
        var before = await EventsAsync(server);
        await action();
        await Task.Delay(TimeSpan.FromSeconds(3));
        var after = await EventsAsync(server);
        var nodes = after.GetValueOrDefault("Node") - before.GetValueOrDefault("Node");
        var maps = after.GetValueOrDefault("ConfigMap") - before.GetValueOrDefault("ConfigMap");
        // After, Node events go to the controller alone; the ConfigMap's to every speaker and the controller's watch of it.
        return controller ? (maps, nodes) : (nodes, 0);
    }

    private static async Task<Dictionary<string, double>> EventsAsync(KubeApiServer server) =>
        PrometheusText.Sum(await server.MetricsAsync(), "apiserver_watch_events_total", "kind");

    private static async Task Until(Func<bool> condition)
    {
        var started = Stopwatch.GetTimestamp();
        while (!condition())
        {
            if (Stopwatch.GetElapsedTime(started) > TimeSpan.FromMinutes(2))
            {
                throw new TimeoutException("the caches did not converge in 2 minutes");
            }

            await Task.Delay(100);
        }
    }
}

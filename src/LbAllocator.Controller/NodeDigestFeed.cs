using k8s.Models;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Watching;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Controller;

/// <summary>
/// The node digest's inputs and output on the API server: watches of the Nodes and of the digest's ConfigMap, and the
/// reconciler's advertisements, feeding the <see cref="NodeDigestPublisher"/>, which writes through the API. The
/// caches run on every replica (a standby takes over warm); the publisher only on the leader.
/// </summary>
public sealed class NodeDigestFeed
{
    /// <summary>Events the digest may have waiting: it has one kind of trouble.</summary>
    private static readonly EventQueueSettings EventQueue = new(Capacity: 4, DropOldest: true, AttemptTimeout: TimeSpan.FromSeconds(5));

    private readonly Reconciler _reconciler;
    private readonly EventRecorder _events;

    public NodeDigestFeed(KubeApi client, ControllerOptions options, Reconciler reconciler, TimeProvider time, ILoggerFactory loggers)
    {
        _reconciler = reconciler;
        var logger = loggers.CreateLogger<NodeDigestPublisher>();
        _events = new EventRecorder(client, "controller", options.Identity, options.Namespace, EventQueue, time, logger);
        Publisher = new NodeDigestPublisher(new ApiTarget(client, _events), options.Namespace, time, logger);
        Nodes = new ResourceCache<V1Node>(Sources.Nodes(client), loggers.CreateLogger("LbAllocator.Cache.Nodes"));
        Published = new ResourceCache<V1ConfigMap>(Sources.NodeDigest(client, options.Namespace), loggers.CreateLogger("LbAllocator.Cache.NodeDigest"));
        Nodes.Changed += Publisher.NodeChanged;
        Published.Changed += (_, now) => Publisher.Observed(now);
        reconciler.Advertisements.Changed += (_, _) => Publisher.AdvertisementsChanged(reconciler.Advertisements.Items);
    }

    public NodeDigestPublisher Publisher { get; }

    public ResourceCache<V1Node> Nodes { get; }

    /// <summary>The digest as the server holds it.</summary>
    public ResourceCache<V1ConfigMap> Published { get; }

    public Task RunCachesAsync(CancellationToken cancellationToken) => Task.WhenAll(Nodes.RunAsync(cancellationToken), Published.RunAsync(cancellationToken));

    /// <summary>The leader's part: once every input has listed, keeps the digest written (and its events sent).</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        await Task.WhenAll(Nodes.WaitForSyncAsync(cancellationToken), Published.WaitForSyncAsync(cancellationToken), _reconciler.WaitForCachesAsync(cancellationToken));
        await Task.WhenAll(Publisher.RunAsync(cancellationToken), _events.SendQueuedAsync(1, () => false, cancellationToken));
        _events.DiscardQueued();
    }

    private sealed class ApiTarget(KubeApi client, EventRecorder events) : INodeDigestTarget
    {
        public Task<V1ConfigMap> CreateAsync(V1ConfigMap map, CancellationToken cancellationToken) =>
            client.CreateAsync(KubeResources.ConfigMaps, map.Metadata.NamespaceProperty, map, cancellationToken);

        public Task<V1ConfigMap> ReplaceAsync(V1ConfigMap map, CancellationToken cancellationToken) =>
            client.ReplaceAsync(KubeResources.ConfigMaps, map.Metadata.NamespaceProperty, map.Metadata.Name, map, cancellationToken: cancellationToken);

        public void Warn(V1ConfigMap map, string reason, string message) => events.Post(map, $"configmap/{map.Metadata.Name}", "Warning", reason, message);
    }
}

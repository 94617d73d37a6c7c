using System.Text.Json;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Crds;

namespace LbAllocator.Kubernetes.Watching;

/// <summary>List and watch calls for the kinds the controller and the speaker follow.</summary>
public static class Sources
{
    /// <summary>The server ends each watch after this long; the cache then resumes from its last version.</summary>
    private const int WatchTimeoutSeconds = 300;

    public static ResourceSource<V1Service> Services(IKubernetes client) => new(
        "services",
        async ct =>
        {
            var list = await client.CoreV1.ListServiceForAllNamespacesAsync(cancellationToken: ct);
            return (list.Items, list.Metadata.ResourceVersion);
        },
        (version, onError, ct) => client.CoreV1.WatchListServiceForAllNamespacesAsync(
            allowWatchBookmarks: true, resourceVersion: version, timeoutSeconds: WatchTimeoutSeconds, onError: onError, cancellationToken: ct));

    public static ResourceSource<V1Namespace> Namespaces(IKubernetes client) => new(
        "namespaces",
        async ct =>
        {
            var list = await client.CoreV1.ListNamespaceAsync(cancellationToken: ct);
            return (list.Items, list.Metadata.ResourceVersion);
        },
        (version, onError, ct) => client.CoreV1.WatchListNamespaceAsync(
            allowWatchBookmarks: true, resourceVersion: version, timeoutSeconds: WatchTimeoutSeconds, onError: onError, cancellationToken: ct));

    public static ResourceSource<V1Node> Nodes(IKubernetes client) => new(
        "nodes",
        async ct =>
        {
            var list = await client.CoreV1.ListNodeAsync(cancellationToken: ct);
            return (list.Items, list.Metadata.ResourceVersion);
        },
        (version, onError, ct) => client.CoreV1.WatchListNodeAsync(
            allowWatchBookmarks: true, resourceVersion: version, timeoutSeconds: WatchTimeoutSeconds, onError: onError, cancellationToken: ct))
    {
        // The election reads a Node's labels and conditions; its image list (often tens of KB) nothing.
        Trim = node => node.Status?.Images = null,
    };

    public static ResourceSource<V1EndpointSlice> EndpointSlices(IKubernetes client) => new(
        "endpointslices",
        async ct =>
        {
            var list = await client.DiscoveryV1.ListEndpointSliceForAllNamespacesAsync(cancellationToken: ct);
            return (list.Items, list.Metadata.ResourceVersion);
        },
        (version, onError, ct) => client.DiscoveryV1.WatchListEndpointSliceForAllNamespacesAsync(
            allowWatchBookmarks: true, resourceVersion: version, timeoutSeconds: WatchTimeoutSeconds, onError: onError, cancellationToken: ct));

    /// <summary>Leases in one namespace with the given labels (the speakers' liveness leases).</summary>
    public static ResourceSource<V1Lease> Leases(IKubernetes client, string ns, string labelSelector) => new(
        "leases",
        async ct =>
        {
            var list = await client.CoordinationV1.ListNamespacedLeaseAsync(ns, labelSelector: labelSelector, cancellationToken: ct);
            return (list.Items, list.Metadata.ResourceVersion);
        },
        (version, onError, ct) => client.CoordinationV1.WatchListNamespacedLeaseAsync(
            ns, labelSelector: labelSelector, allowWatchBookmarks: true, resourceVersion: version, timeoutSeconds: WatchTimeoutSeconds, onError: onError, cancellationToken: ct));

    public static ResourceSource<V1Alpha1ServiceL2Status> ServiceL2Statuses(IKubernetes client, string ns) => Custom<V1Alpha1ServiceL2Status>(client, ns, "servicel2statuses");

    public static ResourceSource<V1Alpha1IPAddressPool> Pools(IKubernetes client, string ns) => Custom<V1Alpha1IPAddressPool>(client, ns, "ipaddresspools");

    public static ResourceSource<V1Alpha1L2Advertisement> Advertisements(IKubernetes client, string ns) => Custom<V1Alpha1L2Advertisement>(client, ns, "l2advertisements");

    private static ResourceSource<T> Custom<T>(IKubernetes client, string ns, string plural)
        where T : IKubernetesObject<V1ObjectMeta> => new(
        plural,
        async ct =>
        {
            var raw = await client.CustomObjects.ListNamespacedCustomObjectAsync(Api.Group, Api.Version, ns, plural, cancellationToken: ct);
            var list = KubernetesJson.Deserialize<CustomList<T>>((JsonElement)raw);
            return (list.Items ?? [], list.Metadata?.ResourceVersion ?? "");
        },
        // The client has no typed watch for custom objects that takes a resourceVersion, only this one.
#pragma warning disable CS0618
        (version, onError, ct) => client.CustomObjects
            .ListNamespacedCustomObjectWithHttpMessagesAsync(Api.Group, Api.Version, ns, plural, allowWatchBookmarks: true, resourceVersion: version, timeoutSeconds: WatchTimeoutSeconds, watch: true, cancellationToken: ct)
            .WatchAsync<T, object>(onError, ct));
#pragma warning restore CS0618
}

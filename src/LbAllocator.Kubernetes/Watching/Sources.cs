using k8s.Models;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;

namespace LbAllocator.Kubernetes.Watching;

/// <summary>List and watch calls for the kinds the controller and the speaker follow.</summary>
public static class Sources
{
    public static ResourceSource<V1Service> Services(KubeApi api) => Of(api, KubeResources.Services, ns: null);

    public static ResourceSource<V1Namespace> Namespaces(KubeApi api) => Of(api, KubeResources.Namespaces, ns: null);

    public static ResourceSource<V1Node> Nodes(KubeApi api) => Of(api, KubeResources.Nodes, ns: null) with
    {
        // The election reads a Node's labels and conditions; its image list (often tens of KB) nothing.
        Trim = node => node.Status?.Images = null,
    };

    /// <summary>The one ConfigMap holding the node digest (<see cref="NodeDigest"/>), in the components' namespace.</summary>
    public static ResourceSource<V1ConfigMap> NodeDigest(KubeApi api, string ns) =>
        Of(api, KubeResources.ConfigMaps, ns, fieldSelector: $"metadata.name={Kubernetes.NodeDigest.ConfigMapName}");

    public static ResourceSource<V1EndpointSlice> EndpointSlices(KubeApi api) => Of(api, KubeResources.EndpointSlices, ns: null);

    /// <summary>Leases in one namespace with the given labels (the speakers' liveness leases).</summary>
    public static ResourceSource<V1Lease> Leases(KubeApi api, string ns, string labelSelector) => Of(api, KubeResources.Leases, ns, labelSelector);

    public static ResourceSource<V1Alpha1ServiceL2Status> ServiceL2Statuses(KubeApi api, string ns) => Of(api, KubeResources.ServiceL2Statuses, ns);

    public static ResourceSource<V1Alpha1IPAddressPool> Pools(KubeApi api, string ns) => Of(api, KubeResources.Pools, ns);

    public static ResourceSource<V1Alpha1L2Advertisement> Advertisements(KubeApi api, string ns) => Of(api, KubeResources.Advertisements, ns);

    /// <param name="ns">One namespace, or null for all of them.</param>
    private static ResourceSource<T> Of<T>(KubeApi api, KubeResource<T> resource, string? ns, string? labelSelector = null, string? fieldSelector = null)
        where T : class => new(
        resource.Plural,
        async (options, ct) =>
        {
            var list = await api.ListAllAsync(resource, ns, options with { LabelSelector = labelSelector, FieldSelector = fieldSelector }, ct);
            return (list.Items ?? [], list.Metadata?.ResourceVersion ?? "");
        },
        (version, timeoutSeconds, ct) => api.WatchAsync(resource, ns, labelSelector, fieldSelector, version, timeoutSeconds, ct));
}

using System.Text.Json.Serialization.Metadata;
using k8s.Models;
using LbAllocator.Kubernetes.Crds;

namespace LbAllocator.Kubernetes.Client;

/// <summary>One kind of object on the API server: where it lives and how its JSON reads.</summary>
/// <param name="Group">The API group; empty for the core group (/api/v1).</param>
/// <param name="Namespaced">False for cluster-wide kinds (Nodes, Namespaces).</param>
public sealed record KubeResource<T>(
    string Group, string Version, string Plural, bool Namespaced, JsonTypeInfo<T> Item, JsonTypeInfo<KubeList<T>> List, JsonTypeInfo<WatchEvent<T>> Event)
    where T : class
{
    /// <summary>
    /// The collection: in one namespace, or across all of them when <paramref name="ns"/> is null. Relative, so a server
    /// address with a path (an authenticating proxy's, say) keeps it.
    /// </summary>
    public string CollectionPath(string? ns)
    {
        var root = Group.Length == 0 ? $"api/{Version}" : $"apis/{Group}/{Version}";
        return Namespaced && ns is not null ? $"{root}/namespaces/{Uri.EscapeDataString(ns)}/{Plural}" : $"{root}/{Plural}";
    }

    /// <summary>One object, or one of its subresources ("status").</summary>
    public string ItemPath(string? ns, string name, string? subresource = null) =>
        $"{CollectionPath(Namespaced ? ns ?? throw new ArgumentNullException(nameof(ns), $"{Plural} are namespaced") : null)}/{Uri.EscapeDataString(name)}"
        + (subresource is null ? "" : $"/{subresource}");
}

/// <summary>The kinds the controller and the speaker read and write.</summary>
public static class KubeResources
{
    public static readonly KubeResource<V1Service> Services = new("", "v1", "services", true, KubeJson.Default.V1Service, KubeJson.Default.KubeListV1Service, KubeJson.Default.WatchEventV1Service);

    public static readonly KubeResource<V1Namespace> Namespaces = new("", "v1", "namespaces", false, KubeJson.Default.V1Namespace, KubeJson.Default.KubeListV1Namespace, KubeJson.Default.WatchEventV1Namespace);

    public static readonly KubeResource<V1Node> Nodes = new("", "v1", "nodes", false, KubeJson.Default.V1Node, KubeJson.Default.KubeListV1Node, KubeJson.Default.WatchEventV1Node);

    public static readonly KubeResource<Corev1Event> Events = new("", "v1", "events", true, KubeJson.Default.Corev1Event, KubeJson.Default.KubeListCorev1Event, KubeJson.Default.WatchEventCorev1Event);

    public static readonly KubeResource<V1EndpointSlice> EndpointSlices = new(
        "discovery.k8s.io", "v1", "endpointslices", true, KubeJson.Default.V1EndpointSlice, KubeJson.Default.KubeListV1EndpointSlice, KubeJson.Default.WatchEventV1EndpointSlice);

    public static readonly KubeResource<V1Lease> Leases = new(
        "coordination.k8s.io", "v1", "leases", true, KubeJson.Default.V1Lease, KubeJson.Default.KubeListV1Lease, KubeJson.Default.WatchEventV1Lease);

    public static readonly KubeResource<V1ConfigMap> ConfigMaps = new("", "v1", "configmaps", true, KubeJson.Default.V1ConfigMap, KubeJson.Default.KubeListV1ConfigMap, KubeJson.Default.WatchEventV1ConfigMap);

    public static readonly KubeResource<V1Secret> Secrets = new("", "v1", "secrets", true, KubeJson.Default.V1Secret, KubeJson.Default.KubeListV1Secret, KubeJson.Default.WatchEventV1Secret);

    public static readonly KubeResource<V1Alpha1IPAddressPool> Pools = new(
        Api.Group, Api.Version, "ipaddresspools", true, KubeJson.Default.V1Alpha1IPAddressPool, KubeJson.Default.KubeListV1Alpha1IPAddressPool, KubeJson.Default.WatchEventV1Alpha1IPAddressPool);

    public static readonly KubeResource<V1Alpha1L2Advertisement> Advertisements = new(
        Api.Group, Api.Version, "l2advertisements", true, KubeJson.Default.V1Alpha1L2Advertisement, KubeJson.Default.KubeListV1Alpha1L2Advertisement, KubeJson.Default.WatchEventV1Alpha1L2Advertisement);

    public static readonly KubeResource<V1Alpha1ServiceL2Status> ServiceL2Statuses = new(
        Api.Group, Api.Version, "servicel2statuses", true, KubeJson.Default.V1Alpha1ServiceL2Status, KubeJson.Default.KubeListV1Alpha1ServiceL2Status, KubeJson.Default.WatchEventV1Alpha1ServiceL2Status);
}

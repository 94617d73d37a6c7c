using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes.Crds;

namespace LbAllocator.Kubernetes;

/// <summary>
/// Maps API objects to the core's plain data. The one place that knows both shapes. Objects from files may
/// lack what the API server would have filled in (metadata, spec, map values written as null): absent reads
/// as empty, as in Kubernetes, and the validators report what that leaves missing.
/// </summary>
public static class ObjectMapper
{
    public static PoolSpec ToPoolSpec(V1Alpha1IPAddressPool pool) => new(
        pool.Metadata?.Name ?? "",
        pool.Spec?.Addresses?.ToList(),
        pool.Spec?.AutoAssign,
        pool.Spec?.AvoidBuggyIPs,
        pool.Spec?.ServiceAllocation is { } sa
            ? new Core.ServiceAllocationSpec(sa.Priority, sa.Namespaces?.ToList(), Selectors(sa.NamespaceSelectors), Selectors(sa.ServiceSelectors))
            : null,
        Dictionary(pool.Metadata?.Labels));

    /// <summary>Pools and advertisements read from files, validated as the controller validates them; each problem with where its object is.</summary>
    public static (ValidatedConfig Config, List<Located<ConfigProblem>> Problems) Validate(
        IReadOnlyList<Located<V1Alpha1IPAddressPool>> pools, IReadOnlyList<Located<V1Alpha1L2Advertisement>> advertisements)
    {
        var config = ConfigValidator.Validate([.. pools.Select(p => ToPoolSpec(p.Value))], [.. advertisements.Select(a => ToAdvertisementSpec(a.Value))]);
        return (config, [.. config.Problems.Select(p => new Located<ConfigProblem>(p.Kind == ConfigValidator.PoolKind ? pools[p.Index].Position : advertisements[p.Index].Position, p))]);
    }

    /// <summary>The pools in the order that settles overlaps (the oldest keeps working), the same for controller and speaker.</summary>
    public static List<PoolSpec> ToPoolSpecs(IEnumerable<V1Alpha1IPAddressPool> pools) =>
        [.. pools
            .OrderBy(p => p.Metadata?.CreationTimestamp ?? DateTime.MaxValue)
            .ThenBy(p => p.Metadata?.Name, StringComparer.Ordinal)
            .Select(ToPoolSpec)];

    /// <summary>The advertisements by name, the same for controller and speaker.</summary>
    public static List<Core.L2AdvertisementSpec> ToAdvertisementSpecs(IEnumerable<V1Alpha1L2Advertisement> advertisements) =>
        [.. advertisements.OrderBy(a => a.Metadata?.Name, StringComparer.Ordinal).Select(ToAdvertisementSpec)];

    /// <summary>An EndpointSlice's endpoints with their node and conditions.</summary>
    public static IEnumerable<EndpointState> ToEndpointStates(V1EndpointSlice slice) =>
        (slice.Endpoints ?? []).Select(e => new EndpointState(e.NodeName, e.Conditions?.Ready, e.Conditions?.Serving, e.Conditions?.Terminating));

    public static Core.L2AdvertisementSpec ToAdvertisementSpec(V1Alpha1L2Advertisement ad) => new(
        ad.Metadata?.Name ?? "",
        ad.Spec?.IpAddressPools?.ToList(),
        Selectors(ad.Spec?.IpAddressPoolSelectors),
        Selectors(ad.Spec?.NodeSelectors),
        ad.Spec?.Interfaces?.ToList(),
        Selectors(ad.Spec?.ServiceSelectors),
        Selectors(ad.Spec?.PreferredNodeSelectors));

    /// <summary>
    /// The Service as the allocator sees it; namespace labels feed pools' namespaceSelectors, and null ones
    /// say its namespace is not known (yet), which the allocator will not serve.
    /// </summary>
    public static ServiceInfo ToServiceInfo(V1Service service, IDictionary<string, string>? namespaceLabels) => new()
    {
        Namespace = string.IsNullOrEmpty(service.Metadata?.NamespaceProperty) ? "default" : service.Metadata.NamespaceProperty,
        Name = service.Metadata?.Name ?? "",
        Type = service.Spec?.Type ?? "ClusterIP",
        LoadBalancerClass = service.Spec?.LoadBalancerClass,
        Labels = Dictionary(service.Metadata?.Labels),
        Annotations = Dictionary(service.Metadata?.Annotations),
        NamespaceLabels = namespaceLabels is null ? null : Dictionary(namespaceLabels),
        LoadBalancerIP = service.Spec?.LoadBalancerIP,
        IpFamilyPolicy = service.Spec?.IpFamilyPolicy,
        IpFamilies = service.Spec?.IpFamilies?.ToList() ?? [],
        Ports = service.Spec?.Ports?.Select(p => new ServicePort(p.Protocol ?? "TCP", p.Port)).ToList() ?? [],
        ExternalTrafficPolicy = service.Spec?.ExternalTrafficPolicy,
        Selector = Dictionary(service.Spec?.Selector),
        IngressIps = IngressIps(service),
    };

    /// <summary>The addresses in a Service's status.loadBalancer.ingress, as written (hostnames skipped).</summary>
    public static IReadOnlyList<string> IngressIps(V1Service service) =>
        service.Status?.LoadBalancer?.Ingress?.Where(i => !string.IsNullOrEmpty(i.Ip)).Select(i => i.Ip).ToList() ?? [];

    private static List<LabelSelectorSpec>? Selectors(IList<V1LabelSelector>? selectors) =>
        selectors?.Select(s => new LabelSelectorSpec(
            s?.MatchLabels is null ? null : Dictionary(s.MatchLabels),
            s?.MatchExpressions?.Select(e => new LabelRequirementSpec(e.Key, e.OperatorProperty, e.Values?.ToList())).ToList())).ToList();

    /// <summary>A null value (a label written "app:") is "" as the API server reads it.</summary>
    private static Dictionary<string, string> Dictionary(IDictionary<string, string>? source) =>
        source is null ? [] : source.ToDictionary(p => p.Key, p => p.Value ?? "", StringComparer.Ordinal);
}

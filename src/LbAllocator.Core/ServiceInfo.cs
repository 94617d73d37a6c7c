namespace LbAllocator.Core;

/// <summary>The annotations users and the controller put on Services.</summary>
public static class ServiceAnnotations
{
    public const string LoadBalancerIPs = "lballocator.io/loadBalancerIPs";
    public const string AddressPool = "lballocator.io/address-pool";
    public const string AllowSharedIp = "lballocator.io/allow-shared-ip";
    public const string AllocatedFromPool = "lballocator.io/ip-allocated-from-pool";
}

public sealed record ServicePort(string Protocol, int Port)
{
    public override string ToString() => $"{Port}/{Protocol}";
}

/// <summary>
/// What the allocator needs to know of a Service, as plain data: raw strings as written, so that the
/// allocator itself reports what is wrong with them. Built from a V1Service by the Kubernetes layer.
/// </summary>
public sealed record ServiceInfo
{
    private readonly string _namespace = "";
    private readonly string _name = "";
    private string? _key;

    public required string Namespace
    {
        get => _namespace;
        init => (_namespace, _key) = (value, null);
    }

    public required string Name
    {
        get => _name;
        init => (_name, _key) = (value, null);
    }
    public string? Type { get; init; } = "LoadBalancer";
    public string? LoadBalancerClass { get; init; }
    public IReadOnlyDictionary<string, string> Labels { get; init; } = Empty;
    public IReadOnlyDictionary<string, string> Annotations { get; init; } = Empty;
    /// <summary>
    /// Labels of the Service's namespace, for pools' namespaceSelectors; null while the namespace is not known
    /// (the Services and Namespaces watches deliver in any order): such a Service is not served until it is.
    /// </summary>
    public IReadOnlyDictionary<string, string>? NamespaceLabels { get; init; } = Empty;

    public bool NamespaceKnown => NamespaceLabels is not null;
    /// <summary>The deprecated spec.loadBalancerIP.</summary>
    public string? LoadBalancerIP { get; init; }
    public string? IpFamilyPolicy { get; init; }
    public IReadOnlyList<string> IpFamilies { get; init; } = [];
    public IReadOnlyList<ServicePort> Ports { get; init; } = [];
    public string? ExternalTrafficPolicy { get; init; }
    public IReadOnlyDictionary<string, string> Selector { get; init; } = Empty;
    /// <summary>The addresses in status.loadBalancer.ingress, claimed back after a restart.</summary>
    public IReadOnlyList<string> IngressIps { get; init; } = [];

    /// <summary>The status addresses that parse, in order, without repeats (whatever wrote them).</summary>
    public IReadOnlyList<Ip> IngressAddresses =>
        [.. IngressIps.Select(text => Ip.TryParse(text, out var ip, out _) ? ip : (Ip?)null).OfType<Ip>().Distinct()];

    /// <summary>Our annotation to the MetalLB one it was read from (<see cref="MetalLbAnnotations"/>), for messages.</summary>
    public IReadOnlyDictionary<string, string> AdoptedFrom { get; init; } = Empty;

    /// <summary>The annotation as the user wrote it: ours, or the MetalLB one it was read from.</summary>
    public string AnnotationName(string ours) => AdoptedFrom.TryGetValue(ours, out var written) ? written : ours;

    /// <summary>"namespace/name", built once: the allocator looks Services up by it on every call.</summary>
    public string Key => _key ??= $"{Namespace}/{Name}";

    /// <summary>The allow-shared-ip key, or null when the Service does not want to share.</summary>
    public string? SharingKey =>
        Annotations.TryGetValue(ServiceAnnotations.AllowSharedIp, out var key) && !string.IsNullOrWhiteSpace(key) ? key.Trim() : null;

    /// <summary>
    /// Whether an implementation for <paramref name="loadBalancerClass"/> (null or empty: the default one,
    /// for Services without a class) handles this Service.
    /// </summary>
    public bool IsLoadBalancerFor(string? loadBalancerClass) =>
        Type == "LoadBalancer" && (LoadBalancerClass ?? "") == (loadBalancerClass ?? "");

    /// <summary>externalTrafficPolicy with the API server's default.</summary>
    public string TrafficPolicy => string.IsNullOrEmpty(ExternalTrafficPolicy) ? "Cluster" : ExternalTrafficPolicy;

    private static readonly IReadOnlyDictionary<string, string> Empty = new Dictionary<string, string>();
}

namespace LbAllocator.TestApiServer;

/// <summary>One kind of object the double serves.</summary>
public sealed record ResourceType(string Group, string Version, string Plural, string Kind, bool Namespaced, bool HasStatus, bool AllowUnconditionalUpdate = true)
{
    public string ApiVersion => Group.Length == 0 ? Version : $"{Group}/{Version}";

    /// <summary>
    /// Everything served, in one place. Custom resources refuse a PUT without resourceVersion, as
    /// kube-apiserver does; most built-in kinds allow such unconditional updates.
    /// </summary>
    public static readonly IReadOnlyList<ResourceType> All =
    [
        new("", "v1", "services", "Service", Namespaced: true, HasStatus: true),
        new("", "v1", "namespaces", "Namespace", Namespaced: false, HasStatus: true),
        new("", "v1", "nodes", "Node", Namespaced: false, HasStatus: true),
        new("", "v1", "configmaps", "ConfigMap", Namespaced: true, HasStatus: false),
        new("", "v1", "events", "Event", Namespaced: true, HasStatus: false),
        new("events.k8s.io", "v1", "events", "Event", Namespaced: true, HasStatus: false),
        new("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", Namespaced: true, HasStatus: false),
        new("coordination.k8s.io", "v1", "leases", "Lease", Namespaced: true, HasStatus: false),
        new("lballocator.io", "v1alpha1", "ipaddresspools", "IPAddressPool", Namespaced: true, HasStatus: true, AllowUnconditionalUpdate: false),
        new("lballocator.io", "v1alpha1", "l2advertisements", "L2Advertisement", Namespaced: true, HasStatus: true, AllowUnconditionalUpdate: false),
        new("lballocator.io", "v1alpha1", "servicel2statuses", "ServiceL2Status", Namespaced: true, HasStatus: true, AllowUnconditionalUpdate: false),
    ];

    public static ResourceType? Find(string group, string version, string plural) =>
        All.FirstOrDefault(r => r.Group == group && r.Version == version && r.Plural == plural);
}

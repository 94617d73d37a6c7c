using System.Text.Json.Serialization;
using k8s;
using k8s.Models;

namespace LbAllocator.Kubernetes.Crds;

/// <summary>lballocator.io/v1alpha1 IPAddressPool: addresses the controller may give to Services.</summary>
[KubernetesEntity(Group = Api.Group, ApiVersion = Api.Version, Kind = "IPAddressPool", PluralName = "ipaddresspools")]
public sealed class V1Alpha1IPAddressPool : IKubernetesObject<V1ObjectMeta>, ISpec<IPAddressPoolSpec>, IStatus<IPAddressPoolStatus?>
{
    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = Api.GroupVersion;

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = "IPAddressPool";

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    [JsonPropertyName("spec")]
    public IPAddressPoolSpec Spec { get; set; } = new();

    [JsonPropertyName("status")]
    public IPAddressPoolStatus? Status { get; set; }
}

public sealed class IPAddressPoolSpec
{
    /// <summary>CIDRs, "a-b" ranges or single addresses, IPv4 or IPv6.</summary>
    [JsonPropertyName("addresses")]
    public IList<string>? Addresses { get; set; }

    /// <summary>Whether Services that do not ask for this pool by name may get addresses from it (default true).</summary>
    [JsonPropertyName("autoAssign")]
    public bool? AutoAssign { get; set; }

    /// <summary>Skip IPv4 addresses ending in .0 and .255.</summary>
    [JsonPropertyName("avoidBuggyIPs")]
    public bool? AvoidBuggyIPs { get; set; }

    [JsonPropertyName("serviceAllocation")]
    public ServiceAllocationSpec? ServiceAllocation { get; set; }
}

public sealed class ServiceAllocationSpec
{
    /// <summary>Lower values are tried first; pools without a priority come after those with one.</summary>
    [JsonPropertyName("priority")]
    public int? Priority { get; set; }

    [JsonPropertyName("namespaces")]
    public IList<string>? Namespaces { get; set; }

    [JsonPropertyName("namespaceSelectors")]
    public IList<V1LabelSelector>? NamespaceSelectors { get; set; }

    [JsonPropertyName("serviceSelectors")]
    public IList<V1LabelSelector>? ServiceSelectors { get; set; }
}

/// <summary>Written by the controller: usage per family, and whether the spec is valid.</summary>
public sealed class IPAddressPoolStatus
{
    // Counts saturate at long.MaxValue: an IPv6 /64 holds 2^64 addresses, more than an int64.
    [JsonPropertyName("assignedIPv4")]
    public long? AssignedIPv4 { get; set; }

    [JsonPropertyName("availableIPv4")]
    public long? AvailableIPv4 { get; set; }

    [JsonPropertyName("assignedIPv6")]
    public long? AssignedIPv6 { get; set; }

    [JsonPropertyName("availableIPv6")]
    public long? AvailableIPv6 { get; set; }

    /// <summary>Assigned addresses per family as text, for the ASSIGNED printer column.</summary>
    [JsonPropertyName("assigned")]
    public string? Assigned { get; set; }

    /// <summary>Available addresses per family as text, for the AVAILABLE printer column.</summary>
    [JsonPropertyName("available")]
    public string? Available { get; set; }

    [JsonPropertyName("conditions")]
    public IList<V1Condition>? Conditions { get; set; }
}

using System.Text.Json.Serialization;
using k8s;
using k8s.Models;

namespace LbAllocator.Kubernetes.Crds;

/// <summary>lballocator.io/v1alpha1 L2Advertisement: which pools are announced by ARP/NDP, from which nodes and interfaces.</summary>
[KubernetesEntity(Group = Api.Group, ApiVersion = Api.Version, Kind = "L2Advertisement", PluralName = "l2advertisements")]
public sealed class V1Alpha1L2Advertisement : IKubernetesObject<V1ObjectMeta>, ISpec<L2AdvertisementSpec>
{
    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = Api.GroupVersion;

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = "L2Advertisement";

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    [JsonPropertyName("spec")]
    public L2AdvertisementSpec Spec { get; set; } = new();

    [JsonPropertyName("status")]
    public L2AdvertisementStatus? Status { get; set; }
}

/// <summary>Written by the controller: a Valid condition saying whether the advertisement is used, and why not.</summary>
public sealed class L2AdvertisementStatus
{
    [JsonPropertyName("conditions")]
    public IList<V1Condition>? Conditions { get; set; }
}

public sealed class L2AdvertisementSpec
{
    [JsonPropertyName("ipAddressPools")]
    public IList<string>? IpAddressPools { get; set; }

    [JsonPropertyName("ipAddressPoolSelectors")]
    public IList<V1LabelSelector>? IpAddressPoolSelectors { get; set; }

    [JsonPropertyName("nodeSelectors")]
    public IList<V1LabelSelector>? NodeSelectors { get; set; }

    [JsonPropertyName("interfaces")]
    public IList<string>? Interfaces { get; set; }

    [JsonPropertyName("serviceSelectors")]
    public IList<V1LabelSelector>? ServiceSelectors { get; set; }

    /// <summary>Preference tiers among the selected nodes, most preferred first; nodes matching none stand last.</summary>
    [JsonPropertyName("preferredNodeSelectors")]
    public IList<V1LabelSelector>? PreferredNodeSelectors { get; set; }
}

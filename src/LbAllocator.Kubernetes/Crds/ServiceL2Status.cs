using System.Text.Json.Serialization;
using k8s;
using k8s.Models;

namespace LbAllocator.Kubernetes.Crds;

/// <summary>lballocator.io/v1alpha1 ServiceL2Status: which node announces a Service, written by the speaker.</summary>
[KubernetesEntity(Group = Api.Group, ApiVersion = Api.Version, Kind = "ServiceL2Status", PluralName = "servicel2statuses")]
public sealed class V1Alpha1ServiceL2Status : IKubernetesObject<V1ObjectMeta>, ISpec<ServiceL2StatusSpec>, IStatus<ServiceL2StatusStatus?>
{
    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = Api.GroupVersion;

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = "ServiceL2Status";

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    [JsonPropertyName("spec")]
    public ServiceL2StatusSpec Spec { get; set; } = new();

    [JsonPropertyName("status")]
    public ServiceL2StatusStatus? Status { get; set; }
}

/// <summary>Empty: everything is status, observed by the speaker.</summary>
public sealed class ServiceL2StatusSpec;

public sealed class ServiceL2StatusStatus
{
    [JsonPropertyName("node")]
    public string? Node { get; set; }

    [JsonPropertyName("serviceName")]
    public string? ServiceName { get; set; }

    [JsonPropertyName("serviceNamespace")]
    public string? ServiceNamespace { get; set; }

    [JsonPropertyName("interfaces")]
    public IList<InterfaceInfo>? Interfaces { get; set; }
}

public sealed class InterfaceInfo
{
    [JsonPropertyName("name")]
    public string? Name { get; set; }
}

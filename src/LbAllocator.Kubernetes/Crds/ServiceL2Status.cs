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

    /// <summary>
    /// Two writers share these: the announcing node (<see cref="L2Conditions.AddressConflict"/>) and, later, a
    /// verifier on another node. Each changes only its own types, by read-modify-write on the resourceVersion.
    /// </summary>
    [JsonPropertyName("conditions")]
    public IList<V1Condition>? Conditions { get; set; }
}

/// <summary>The condition types of a ServiceL2Status.</summary>
public static class L2Conditions
{
    /// <summary>True while another host (not a speaker) claims one of the Service's addresses, which is then not announced.</summary>
    public const string AddressConflict = "AddressConflict";

    /// <summary>Written by another node's speaker: whether the owner's MAC answers ARP / NDP for every address, checked every 10 s.</summary>
    public const string Verified = "Verified";

    /// <summary>
    /// Replaces the condition of <paramref name="wanted"/>'s type in <paramref name="conditions"/>, keeping the others
    /// (another writer's) untouched; the transition time moves only when the status flips.
    /// </summary>
    public static List<V1Condition> Set(IEnumerable<V1Condition>? conditions, V1Condition wanted)
    {
        var list = conditions?.ToList() ?? [];
        var old = list.FindIndex(c => c.Type == wanted.Type);
        if (old >= 0 && list[old].Status == wanted.Status)
        {
            wanted.LastTransitionTime = list[old].LastTransitionTime;
        }

        if (old >= 0)
        {
            list[old] = wanted;
        }
        else
        {
            list.Add(wanted);
        }

        return list;
    }
}

public sealed class InterfaceInfo
{
    [JsonPropertyName("name")]
    public string? Name { get; set; }

    /// <summary>The interface's MAC, which answers for the Service there: what a verifier expects, and what an operator looks for on the wire.</summary>
    [JsonPropertyName("mac")]
    public string? Mac { get; set; }
}

using System.Text.Json.Serialization;
using k8s;
using k8s.Models;

namespace LbAllocator.Kubernetes.Crds;

/// <summary>
/// JSON metadata generated at build time for what KubernetesClient's own source-generated context does not cover: our
/// kinds, their lists and watch events, and the watch events of the built-in kinds we watch. The published binary is
/// NativeAOT, where the client's reflection fallback cannot see these types; registered into the client's options
/// (<see cref="KubernetesJson"/>) by <see cref="Register"/>, so every call of the client uses it.
/// </summary>
[JsonSerializable(typeof(V1Alpha1IPAddressPool))]
[JsonSerializable(typeof(V1Alpha1L2Advertisement))]
[JsonSerializable(typeof(V1Alpha1ServiceL2Status))]
[JsonSerializable(typeof(CustomList<V1Alpha1IPAddressPool>))]
[JsonSerializable(typeof(CustomList<V1Alpha1L2Advertisement>))]
[JsonSerializable(typeof(CustomList<V1Alpha1ServiceL2Status>))]
[JsonSerializable(typeof(Watcher<V1Alpha1IPAddressPool>.WatchEvent))]
[JsonSerializable(typeof(Watcher<V1Alpha1L2Advertisement>.WatchEvent))]
[JsonSerializable(typeof(Watcher<V1Alpha1ServiceL2Status>.WatchEvent))]
[JsonSerializable(typeof(Watcher<V1Service>.WatchEvent))]
[JsonSerializable(typeof(Watcher<V1Namespace>.WatchEvent))]
[JsonSerializable(typeof(Watcher<V1Node>.WatchEvent))]
[JsonSerializable(typeof(Watcher<V1EndpointSlice>.WatchEvent))]
[JsonSerializable(typeof(Watcher<V1Lease>.WatchEvent))]
[JsonSerializable(typeof(Watcher<KubernetesObject>.WatchEvent))]
[JsonSerializable(typeof(Watcher<V1Status>.WatchEvent))]
[JsonSerializable(typeof(Dictionary<string, object>))]
[JsonSerializable(typeof(Dictionary<string, string?>))]
public sealed partial class CrdJson : JsonSerializerContext
{
    private static int _registered;

    /// <summary>
    /// Puts this context first in the client's options. Call before the client serializes anything (its options
    /// freeze on first use): the binary does at the top of Main. Under the JIT the client's reflection fallback covers
    /// these types anyway.
    /// </summary>
    public static void Register()
    {
        if (Interlocked.Exchange(ref _registered, 1) == 1)
        {
            return;
        }

        KubernetesJson.AddJsonOptions(options =>
        {
            options.TypeInfoResolverChain.Insert(0, Default);
            // The client's enum converter is the reflection-based factory; the generic one needs no runtime code.
            options.Converters.Insert(0, new JsonStringEnumConverter<WatchEventType>());
        });
    }
}

/// <summary>The body of a list of custom objects.</summary>
public sealed class CustomList<T>
{
    [JsonPropertyName("metadata")]
    public V1ListMeta? Metadata { get; set; }

    [JsonPropertyName("items")]
    public IList<T>? Items { get; set; }
}

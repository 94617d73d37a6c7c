using System.Text.Json;
using System.Text.Json.Serialization;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Crds;

namespace LbAllocator.Kubernetes.Client;

/// <summary>
/// The JSON of every object the components exchange with the API server, generated at build time: the published
/// binary is NativeAOT. Only these kinds are compiled in; KubernetesClient's own context names every Kubernetes model,
/// which made up most of the binary and of its memory (README, "Why our own API client").
/// The options are those of KubernetesClient's serializer: nulls left out, times as RFC 3339.
/// </summary>
[JsonSourceGenerationOptions(
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    Converters = [typeof(JsonStringEnumConverter<WatchEventType>), typeof(KubernetesJson.KubernetesDateTimeConverter), typeof(KubernetesJson.KubernetesDateTimeOffsetConverter)])]
[JsonSerializable(typeof(V1Service))]
[JsonSerializable(typeof(V1Namespace))]
[JsonSerializable(typeof(V1Node))]
[JsonSerializable(typeof(V1EndpointSlice))]
[JsonSerializable(typeof(V1Lease))]
[JsonSerializable(typeof(V1ConfigMap))]
[JsonSerializable(typeof(V1Secret))]
[JsonSerializable(typeof(Corev1Event))]
[JsonSerializable(typeof(V1Status))]
[JsonSerializable(typeof(V1ObjectMeta))]
// The models' untyped fields (managedFields[].fieldsV1) hold what was read as JsonElement, and are written back so.
[JsonSerializable(typeof(JsonElement))]
[JsonSerializable(typeof(V1Alpha1IPAddressPool))]
[JsonSerializable(typeof(V1Alpha1L2Advertisement))]
[JsonSerializable(typeof(V1Alpha1ServiceL2Status))]
[JsonSerializable(typeof(KubeList<V1Service>))]
[JsonSerializable(typeof(KubeList<V1Namespace>))]
[JsonSerializable(typeof(KubeList<V1Node>))]
[JsonSerializable(typeof(KubeList<V1EndpointSlice>))]
[JsonSerializable(typeof(KubeList<V1Lease>))]
[JsonSerializable(typeof(KubeList<V1ConfigMap>))]
[JsonSerializable(typeof(KubeList<V1Secret>))]
[JsonSerializable(typeof(KubeList<Corev1Event>))]
[JsonSerializable(typeof(KubeList<V1Alpha1IPAddressPool>))]
[JsonSerializable(typeof(KubeList<V1Alpha1L2Advertisement>))]
[JsonSerializable(typeof(KubeList<V1Alpha1ServiceL2Status>))]
[JsonSerializable(typeof(WatchEvent<V1Service>))]
[JsonSerializable(typeof(WatchEvent<V1Namespace>))]
[JsonSerializable(typeof(WatchEvent<V1Node>))]
[JsonSerializable(typeof(WatchEvent<V1EndpointSlice>))]
[JsonSerializable(typeof(WatchEvent<V1Lease>))]
[JsonSerializable(typeof(WatchEvent<V1ConfigMap>))]
[JsonSerializable(typeof(WatchEvent<V1Secret>))]
[JsonSerializable(typeof(WatchEvent<Corev1Event>))]
[JsonSerializable(typeof(WatchEvent<V1Status>))]
[JsonSerializable(typeof(WatchEvent<V1Alpha1IPAddressPool>))]
[JsonSerializable(typeof(WatchEvent<V1Alpha1L2Advertisement>))]
[JsonSerializable(typeof(WatchEvent<V1Alpha1ServiceL2Status>))]
public sealed partial class KubeJson : JsonSerializerContext
{
    /// <summary>A deep copy, through JSON: for objects the caches hold, which a write must not change.</summary>
    public static T Clone<T>(T value)
        where T : class => (T)JsonSerializer.Deserialize(JsonSerializer.SerializeToUtf8Bytes(value, typeof(T), Default), typeof(T), Default)!;
}

/// <summary>The body of a list of any kind: its resourceVersion and items.</summary>
public sealed class KubeList<T>
{
    [JsonPropertyName("metadata")]
    public V1ListMeta? Metadata { get; set; }

    [JsonPropertyName("items")]
    public IList<T>? Items { get; set; }
}

/// <summary>One line of a watch stream. For ERROR the object is a Status, read again as such (<see cref="KubeApi"/>).</summary>
public sealed class WatchEvent<T>
{
    [JsonPropertyName("type")]
    public WatchEventType Type { get; set; }

    [JsonPropertyName("object")]
    public T? Item { get; set; }
}

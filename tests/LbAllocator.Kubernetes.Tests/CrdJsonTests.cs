using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Crds;
using Xunit;

namespace LbAllocator.Kubernetes.Tests;

/// <summary>
/// The JSON metadata generated for our kinds (what the NativeAOT binary serializes them with) writes and reads what
/// the reflection serializer does, and covers every type the code hands to the client.
/// </summary>
public sealed class CrdJsonTests
{
    private static JsonSerializerOptions Options(IJsonTypeInfoResolver resolver) => new()
    {
        TypeInfoResolver = resolver,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter<WatchEventType>(), new KubernetesJson.KubernetesDateTimeConverter(), new KubernetesJson.KubernetesDateTimeOffsetConverter() },
    };

    private static readonly JsonSerializerOptions Generated = Options(CrdJson.Default);
    private static readonly JsonSerializerOptions Reflection = Options(new DefaultJsonTypeInfoResolver());

    public static TheoryData<object> Objects() => new()
    {
        new V1Alpha1IPAddressPool
        {
            Metadata = new V1ObjectMeta { Name = "lan", NamespaceProperty = "lballocator-system", Labels = new Dictionary<string, string> { ["tier"] = "a" } },
            Spec = new IPAddressPoolSpec
            {
                Addresses = ["192.0.2.0/28", "2001:db8::1-2001:db8::9"], AutoAssign = false, AvoidBuggyIPs = true,
                ServiceAllocation = new ServiceAllocationSpec { Priority = 3, Namespaces = ["web"], ServiceSelectors = [new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["app"] = "x" } }] },
            },
            Status = new IPAddressPoolStatus
            {
                AssignedIPv4 = 2, AvailableIPv4 = 14, Assigned = "2 IPv4",
                Conditions = [new V1Condition { Type = "Valid", Status = "True", Reason = "Valid", Message = "ok", LastTransitionTime = new DateTime(2026, 11, 27, 9, 0, 0, DateTimeKind.Utc), ObservedGeneration = 4 }],
            },
        },
        new V1Alpha1L2Advertisement
        {
            Metadata = new V1ObjectMeta { Name = "all" },
            Spec = new L2AdvertisementSpec { IpAddressPools = ["lan"], Interfaces = ["eth0"] },
        },
        new V1Alpha1ServiceL2Status
        {
            Metadata = new V1ObjectMeta { Name = "web-x", ResourceVersion = "12" },
            Status = new ServiceL2StatusStatus { Node = "node1", ServiceName = "x", ServiceNamespace = "web", Interfaces = [new InterfaceInfo { Name = "eth0", Mac = "02:00:00:00:00:01" }] },
        },
    };

    [Theory]
    [MemberData(nameof(Objects))]
    public void WritesAndReadsWhatReflectionDoes(object item)
    {
        var generated = JsonSerializer.Serialize(item, item.GetType(), Generated);
        Assert.Equal(JsonSerializer.Serialize(item, item.GetType(), Reflection), generated);

        var back = JsonSerializer.Deserialize(generated, item.GetType(), Generated);
        Assert.Equal(generated, JsonSerializer.Serialize(back, item.GetType(), Generated));
    }

    [Fact]
    public void ReadsWatchEventsAndLists()
    {
        var line = """{"type":"MODIFIED","object":{"apiVersion":"lballocator.io/v1alpha1","kind":"IPAddressPool","metadata":{"name":"lan","resourceVersion":"7"},"spec":{"addresses":["192.0.2.0/28"]}}}""";
        var watched = JsonSerializer.Deserialize<Watcher<V1Alpha1IPAddressPool>.WatchEvent>(line, Generated)!;
        Assert.Equal(WatchEventType.Modified, watched.Type);
        Assert.Equal(["192.0.2.0/28"], watched.Object.Spec.Addresses!);

        var list = JsonSerializer.Deserialize<CustomList<V1Alpha1L2Advertisement>>("""{"metadata":{"resourceVersion":"9"},"items":[{"metadata":{"name":"all"},"spec":{}}]}""", Generated)!;
        Assert.Equal("9", list.Metadata!.ResourceVersion);
        Assert.Equal("all", Assert.Single(list.Items!).Metadata.Name);
    }

    /// <summary>Every type the code gives the client to (de)serialize: a missing one fails only in the NativeAOT binary.</summary>
    [Theory]
    [InlineData(typeof(V1Alpha1IPAddressPool))]
    [InlineData(typeof(V1Alpha1L2Advertisement))]
    [InlineData(typeof(V1Alpha1ServiceL2Status))]
    [InlineData(typeof(IPAddressPoolStatus))]
    [InlineData(typeof(L2AdvertisementStatus))]
    [InlineData(typeof(ServiceL2StatusStatus))]
    [InlineData(typeof(CustomList<V1Alpha1IPAddressPool>))]
    [InlineData(typeof(CustomList<V1Alpha1L2Advertisement>))]
    [InlineData(typeof(CustomList<V1Alpha1ServiceL2Status>))]
    [InlineData(typeof(Watcher<V1Alpha1IPAddressPool>.WatchEvent))]
    [InlineData(typeof(Watcher<V1Alpha1L2Advertisement>.WatchEvent))]
    [InlineData(typeof(Watcher<V1Alpha1ServiceL2Status>.WatchEvent))]
    [InlineData(typeof(Watcher<V1Service>.WatchEvent))]
    [InlineData(typeof(Watcher<V1Namespace>.WatchEvent))]
    [InlineData(typeof(Watcher<V1Node>.WatchEvent))]
    [InlineData(typeof(Watcher<V1EndpointSlice>.WatchEvent))]
    [InlineData(typeof(Watcher<V1Lease>.WatchEvent))]
    [InlineData(typeof(Dictionary<string, object>))]
    public void CoversType(Type type) => Assert.NotNull(CrdJson.Default.GetTypeInfo(type));
}

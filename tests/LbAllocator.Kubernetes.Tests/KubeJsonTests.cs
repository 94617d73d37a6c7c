using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using Xunit;

namespace LbAllocator.Kubernetes.Tests;

/// <summary>
/// The JSON metadata generated for the kinds the components exchange (what the NativeAOT binary serializes them with)
/// writes and reads what the reflection serializer does, and covers every type the code hands to the client.
/// </summary>
public sealed class KubeJsonTests
{
    private static JsonSerializerOptions Options(IJsonTypeInfoResolver resolver) => new()
    {
        TypeInfoResolver = resolver,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter<WatchEventType>(), new KubernetesJson.KubernetesDateTimeConverter(), new KubernetesJson.KubernetesDateTimeOffsetConverter() },
    };

    private static readonly JsonSerializerOptions Generated = Options(KubeJson.Default);
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
        // Times as the API server writes them: MicroTime with microseconds, Time in whole seconds.
        new V1Lease
        {
            Metadata = new V1ObjectMeta { Name = "lballocator-speaker-node1", CreationTimestamp = new DateTime(2026, 11, 27, 9, 0, 0, DateTimeKind.Utc) },
            Spec = new V1LeaseSpec { HolderIdentity = "node1", LeaseDurationSeconds = 4, RenewTime = new DateTime(2026, 11, 27, 9, 0, 1, DateTimeKind.Utc).AddTicks(1234560), LeaseTransitions = 2 },
        },
        new V1Service
        {
            Metadata = new V1ObjectMeta { Name = "web", NamespaceProperty = "default", Annotations = new Dictionary<string, string> { ["lballocator.io/pool"] = "lan" } },
            Spec = new V1ServiceSpec { Type = "LoadBalancer", Ports = [new V1ServicePort { Port = 80, TargetPort = 8080, Protocol = "TCP" }], IpFamilies = ["IPv4"] },
            Status = new V1ServiceStatus { LoadBalancer = new V1LoadBalancerStatus { Ingress = [new V1LoadBalancerIngress { Ip = "192.0.2.10", IpMode = "VIP" }] } },
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
        var watched = JsonSerializer.Deserialize<WatchEvent<V1Alpha1IPAddressPool>>(line, Generated)!;
        Assert.Equal(WatchEventType.Modified, watched.Type);
        Assert.Equal(["192.0.2.0/28"], watched.Item!.Spec.Addresses!);

        var list = JsonSerializer.Deserialize<KubeList<V1Alpha1L2Advertisement>>("""{"metadata":{"resourceVersion":"9"},"items":[{"metadata":{"name":"all"},"spec":{}}]}""", Generated)!;
        Assert.Equal("9", list.Metadata!.ResourceVersion);
        Assert.Equal("all", Assert.Single(list.Items!).Metadata.Name);
    }

    /// <summary>Every kind the client reads and writes: a type missing from the context fails only in the NativeAOT binary.</summary>
    [Fact]
    public void CoversEveryKindTheClientUses()
    {
        var kinds = typeof(KubeResources).GetFields().Select(f => f.GetValue(null)!).ToList();
        Assert.Equal(11, kinds.Count);
        foreach (var kind in kinds)
        {
            var item = kind.GetType().GetGenericArguments()[0];
            Assert.NotNull(KubeJson.Default.GetTypeInfo(item));
            Assert.NotNull(KubeJson.Default.GetTypeInfo(typeof(KubeList<>).MakeGenericType(item)));
            Assert.NotNull(KubeJson.Default.GetTypeInfo(typeof(WatchEvent<>).MakeGenericType(item)));
        }

        // The ERROR event's object, the failures' body, and the status patches.
        Assert.NotNull(KubeJson.Default.GetTypeInfo(typeof(WatchEvent<V1Status>)));
        Assert.NotNull(KubeJson.Default.GetTypeInfo(typeof(IPAddressPoolStatus)));
        Assert.NotNull(KubeJson.Default.GetTypeInfo(typeof(L2AdvertisementStatus)));
    }

    /// <summary>An object as the server sends it, managedFields and all, is written back as it was read (a lease renewal, a status write).</summary>
    [Fact]
    public void Writes_back_what_the_server_sent()
    {
        var sent = """{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"l","resourceVersion":"5","managedFields":[{"apiVersion":"coordination.k8s.io/v1","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:holderIdentity":{}}},"manager":"lballocator","operation":"Update","time":"2026-11-27T09:00:00Z"}]},"spec":{"holderIdentity":"a","renewTime":"2026-11-27T09:00:01.500000Z"}}""";

        var lease = JsonSerializer.Deserialize(sent, KubeJson.Default.V1Lease)!;

        var written = JsonSerializer.Serialize(lease, KubeJson.Default.V1Lease);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(sent), JsonNode.Parse(written)), written);
    }

    [Fact]
    public void Writes_times_as_the_API_server_reads_them()
    {
        var lease = new V1LeaseSpec { RenewTime = new DateTime(2026, 11, 27, 9, 0, 1, DateTimeKind.Utc).AddTicks(1234567), AcquireTime = new DateTime(2026, 11, 27, 9, 0, 0, DateTimeKind.Utc) };

        var json = JsonSerializer.Serialize(lease, KubeJson.Default.V1LeaseSpec);

        Assert.Contains("\"renewTime\":\"2026-11-27T09:00:01.123456Z\"", json, StringComparison.Ordinal);
        Assert.Contains("\"acquireTime\":\"2026-11-27T09:00:00Z\"", json, StringComparison.Ordinal);
        Assert.DoesNotContain("null", json, StringComparison.Ordinal);
    }
}

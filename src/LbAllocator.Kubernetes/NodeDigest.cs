using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes.Crds;

namespace LbAllocator.Kubernetes;

/// <summary>
/// The node digest: what the speakers' election reads from Nodes, in one ConfigMap the controller writes, so that the
/// speakers watch one object that changes when a decision could, instead of every Node, which kubelet rewrites every
/// few minutes (N speakers × N Nodes). One data entry per node: key the node's name, value a compact JSON object
/// with its uid (the speaker's events on its Node name it), the labels the election can read (the keys the
/// advertisements' node selectors name, and <see cref="Election.ExcludeLabel"/>), and NetworkUnavailable when true.
/// </summary>
public static class NodeDigest
{
    public const string ConfigMapName = "lballocator-nodes";

    /// <summary>kube-apiserver refuses a ConfigMap whose keys and values together exceed 1 MiB.</summary>
    public const int MaxDataBytes = 1024 * 1024;

    private const string NetworkUnavailable = "NetworkUnavailable";

    /// <summary>The label keys a decision can read: those the advertisements' nodeSelectors and preferredNodeSelectors name, and the exclusion label.</summary>
    public static IReadOnlySet<string> LabelKeys(IEnumerable<V1Alpha1L2Advertisement> advertisements)
    {
        var keys = new HashSet<string>(StringComparer.Ordinal) { Election.ExcludeLabel };
        foreach (var selector in advertisements.SelectMany(ad => (ad.Spec?.NodeSelectors ?? []).Concat(ad.Spec?.PreferredNodeSelectors ?? [])))
        {
            keys.UnionWith(selector?.MatchLabels?.Keys ?? []);
            keys.UnionWith((selector?.MatchExpressions ?? []).Select(e => e?.Key).OfType<string>());
        }

        return keys;
    }

    /// <summary>A node's entry: the same text for the same uid, condition and labels under <paramref name="labelKeys"/>, so a change in anything else writes nothing.</summary>
    public static string Entry(V1Node node, IReadOnlySet<string> labelKeys)
    {
        var labels = node.Metadata.Labels?
            .Where(label => labelKeys.Contains(label.Key))
            .OrderBy(label => label.Key, StringComparer.Ordinal)
            .ToDictionary(label => label.Key, label => label.Value, StringComparer.Ordinal);
        var unavailable = node.Status?.Conditions?.Any(c => c.Type == NetworkUnavailable && c.Status == "True") == true;
        var entry = new DigestEntry(node.Metadata.Uid, labels is { Count: > 0 } ? labels : null, unavailable ? true : null);
        return JsonSerializer.Serialize(entry, NodeDigestJson.Default.DigestEntry);
    }

    /// <summary>The Node an entry stands for, with what the speaker reads of one (name, uid, labels, the NetworkUnavailable condition).</summary>
    /// <exception cref="JsonException">The entry is not a digest entry.</exception>
    public static V1Node Node(string name, string entry, string? resourceVersion)
    {
        var read = JsonSerializer.Deserialize(entry, NodeDigestJson.Default.DigestEntry) ?? throw new JsonException("the entry is null");
        return new V1Node
        {
            ApiVersion = "v1",
            Kind = V1Node.KubeKind,
            Metadata = new V1ObjectMeta { Name = name, Uid = read.Uid, Labels = read.Labels, ResourceVersion = resourceVersion },
            Status = read.NetworkUnavailable == true ? new V1NodeStatus { Conditions = [new V1NodeCondition { Type = NetworkUnavailable, Status = "True" }] } : null,
        };
    }

    /// <summary>The size kube-apiserver checks against <see cref="MaxDataBytes"/>: every key and value, in UTF-8.</summary>
    public static long DataBytes(IEnumerable<KeyValuePair<string, string>> data) =>
        data.Sum(entry => (long)Encoding.UTF8.GetByteCount(entry.Key) + Encoding.UTF8.GetByteCount(entry.Value));

    /// <summary>Whether two digests hold the same entries.</summary>
    public static bool Same(IDictionary<string, string>? a, IReadOnlyDictionary<string, string> b) =>
        (a?.Count ?? 0) == b.Count && b.All(entry => a!.TryGetValue(entry.Key, out var value) && value == entry.Value);

    internal sealed record DigestEntry(
        [property: JsonPropertyName("uid")] string? Uid,
        [property: JsonPropertyName("labels")] Dictionary<string, string>? Labels,
        [property: JsonPropertyName("networkUnavailable")] bool? NetworkUnavailable);
}

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(NodeDigest.DigestEntry))]
internal sealed partial class NodeDigestJson : JsonSerializerContext;

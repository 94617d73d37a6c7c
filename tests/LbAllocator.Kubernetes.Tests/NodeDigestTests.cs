using System.Text.Json;
using k8s.Models;
using Election = LbAllocator.Core.Election;
using LbAllocator.Kubernetes.Crds;

namespace LbAllocator.Kubernetes.Tests;

/// <summary>The node digest's codec: what an entry keeps of a Node, and what a speaker reads back.</summary>
public sealed class NodeDigestTests
{
    private static V1Alpha1L2Advertisement Ad(IList<V1LabelSelector>? nodeSelectors = null, IList<V1LabelSelector>? preferred = null) =>
        new() { Spec = new L2AdvertisementSpec { NodeSelectors = nodeSelectors, PreferredNodeSelectors = preferred } };

    private static V1Node NewNode(string name, Dictionary<string, string> labels, params V1NodeCondition[] conditions) => new()
    {
        Metadata = new V1ObjectMeta { Name = name, Uid = $"uid-{name}", Labels = labels, ResourceVersion = "7" },
        Status = new V1NodeStatus { Conditions = conditions, Images = [new V1ContainerImage { Names = ["registry.example.com/big:1"] }] },
    };

    [Fact]
    public void Label_keys_are_those_the_node_selectors_name_and_the_exclusion_label()
    {
        var keys = NodeDigest.LabelKeys([
            Ad(nodeSelectors: [new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["zone"] = "a" } }]),
            Ad(preferred: [new V1LabelSelector { MatchExpressions = [new V1LabelSelectorRequirement { Key = "edge", OperatorProperty = "Exists" }] }]),
            Ad(),
        ]);

        Assert.Equal(["edge", Election.ExcludeLabel, "zone"], keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void An_entry_keeps_uid_the_named_labels_and_NetworkUnavailable_and_reads_back_as_the_node_the_election_sees()
    {
        var keys = NodeDigest.LabelKeys([Ad(nodeSelectors: [new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["zone"] = "a" } }])]);
        var node = NewNode(
            "worker-1",
            new() { ["zone"] = "a", [Election.ExcludeLabel] = "", ["kubernetes.io/hostname"] = "worker-1" },
            new V1NodeCondition { Type = "Ready", Status = "True" },
            new V1NodeCondition { Type = "NetworkUnavailable", Status = "True" });

        var entry = NodeDigest.Entry(node, keys);
        var read = NodeDigest.Node("worker-1", entry, "42");

        Assert.Equal("{\"uid\":\"uid-worker-1\",\"labels\":{\"node.kubernetes.io/exclude-from-external-load-balancers\":\"\",\"zone\":\"a\"},\"networkUnavailable\":true}", entry);
        Assert.Equal(("worker-1", "uid-worker-1", "42"), (read.Metadata.Name, read.Metadata.Uid, read.Metadata.ResourceVersion));
        Assert.Equal(new Dictionary<string, string> { ["zone"] = "a", [Election.ExcludeLabel] = "" }, read.Metadata.Labels);
        Assert.Equal(("NetworkUnavailable", "True"), (read.Status.Conditions.Single().Type, read.Status.Conditions.Single().Status));
    }

    [Fact]
    public void What_no_decision_reads_does_not_change_an_entry()
    {
        var keys = NodeDigest.LabelKeys([]);
        var before = NewNode("worker-1", new() { ["kubernetes.io/hostname"] = "worker-1" }, new V1NodeCondition { Type = "Ready", Status = "True" });
        // kubelet's status update: heartbeats, another condition, images; a label no selector names.
        var after = NewNode("worker-1", new() { ["kubernetes.io/hostname"] = "other", ["team"] = "x" }, new V1NodeCondition { Type = "Ready", Status = "False" });
        after.Metadata.ResourceVersion = "8";

        Assert.Equal(NodeDigest.Entry(before, keys), NodeDigest.Entry(after, keys));
        Assert.Equal("{\"uid\":\"uid-worker-1\"}", NodeDigest.Entry(after, keys));
        var read = NodeDigest.Node("worker-1", NodeDigest.Entry(after, keys), "1");
        Assert.Null(read.Metadata.Labels);
        Assert.Null(read.Status);
    }

    [Fact]
    public void A_malformed_entry_is_an_error_naming_the_problem()
    {
        Assert.Throws<JsonException>(() => NodeDigest.Node("worker-1", "{\"uid\":", null));
        Assert.Throws<JsonException>(() => NodeDigest.Node("worker-1", "null", null));
    }

    /// <summary>The size the API server checks: keys and values in UTF-8 bytes; about 15,000 nodes of plain entries fit.</summary>
    [Fact]
    public void Data_bytes_count_keys_and_values_in_utf8_against_the_limit()
    {
        Assert.Equal(3 + 3 + 2 + 1, NodeDigest.DataBytes(new Dictionary<string, string> { ["abc"] = "dé", ["é"] = "x" }));

        var keys = NodeDigest.LabelKeys([]);
        Dictionary<string, string> Digest(int nodes) => Enumerable.Range(0, nodes).ToDictionary(
            i => $"worker-{i:D5}.example.com",
            i => NodeDigest.Entry(new V1Node { Metadata = new V1ObjectMeta { Uid = Guid.NewGuid().ToString() } }, keys));
        Assert.True(NodeDigest.DataBytes(Digest(5_000)) < NodeDigest.MaxDataBytes);
        Assert.True(NodeDigest.DataBytes(Digest(20_000)) > NodeDigest.MaxDataBytes);
    }
}

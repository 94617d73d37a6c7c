using System.Text.Json;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.Speaker;
using LbAllocator.TestApiServer;
using Microsoft.Extensions.Logging.Abstractions;

namespace LbAllocator.Controller.Tests;

/// <summary>
/// On the real server: the controller's node digest carries a Node's change that a decision reads to the speakers'
/// inputs, and a kubelet-style status update (or a label no selector names) writes nothing.
/// </summary>
[Collection(RealClusterCollection.Name)]
public sealed class NodeDigestTests(RealCluster cluster)
{
    [RealApiFact]
    public async Task A_named_label_reaches_the_speakers_inputs_through_the_ConfigMap_and_a_status_update_writes_nothing()
    {
        await using var f = await ControllerFixture.StartAsync(cluster);
        string a = $"{f.Ns}-a", b = $"{f.Ns}-b";
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await f.Client.CoreV1.CreateNodeAsync(NewNode(a, "a"));
            await f.Client.CoreV1.CreateNodeAsync(NewNode(b, "b"));
            await f.Client.CustomObjects.CreateNamespacedCustomObjectAsync(
                new V1Alpha1L2Advertisement
                {
                    Metadata = new V1ObjectMeta { Name = "zone-a" },
                    Spec = new L2AdvertisementSpec { NodeSelectors = [new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["zone"] = "a" } }] },
                },
                Api.Group, Api.Version, f.Ns, "l2advertisements");
            var controller = await f.StartControllerAsync();

            using var api = new KubeApi(KubeClientConfiguration.Load(f.Kubeconfig));
            var inputs = new SpeakerInputs(SpeakerSources.Of(api, f.Ns, NullLogger.Instance), new SpeakerOptions { Namespace = f.Ns, NodeName = a }, NullLogger.Instance);
            var running = inputs.RunAsync(stop.Token);
            await inputs.WaitForSyncAsync(stop.Token);
            await ControllerFixture.Eventually(() => Task.FromResult(inputs.Node(b)?.Metadata.Labels?.TryGetValue("zone", out var zone) == true && zone == "b"), "the speaker sees node b in zone b");
            var seen = inputs.Node(a)!;
            Assert.Equal((await f.Client.CoreV1.ReadNodeAsync(a)).Metadata.Uid, seen.Metadata.Uid);
            Assert.False(seen.Metadata.Labels.ContainsKey("kubernetes.io/hostname")); // no selector names it
            inputs.TakeChanges();

            // A label the advertisement's selector names: it reaches the speaker's inputs as a change of that node.
            await PatchLabelsAsync(f.Client, b, new() { ["zone"] = "a" });
            await ControllerFixture.Eventually(() => Task.FromResult(inputs.Node(b)?.Metadata.Labels?.TryGetValue("zone", out var zone) == true && zone == "a"), "the speaker sees node b in zone a");
            Assert.Contains(b, inputs.TakeChanges().Nodes);

            // kubelet's status update and a label nobody selects on: the controller sees them, the ConfigMap does not change.
            var before = await f.Client.CoreV1.ReadNamespacedConfigMapAsync(NodeDigest.ConfigMapName, f.Ns);
            var updated = await PatchStatusAsync(f.Client, a, new V1NodeCondition { Type = "Ready", Status = "True", Reason = "KubeletReady", LastHeartbeatTime = DateTime.UtcNow });
            updated = await PatchLabelsAsync(f.Client, a, new() { ["kubernetes.io/hostname"] = "renamed" });
            await ControllerFixture.Eventually(
                () => Task.FromResult(controller.NodeDigest.Nodes.TryGet(a, out var node) && node!.Metadata.ResourceVersion == updated.Metadata.ResourceVersion),
                "the controller sees node a's updates");
            await Task.Delay(NodeDigestPublisher.MinWriteInterval * 2);
            var after = await f.Client.CoreV1.ReadNamespacedConfigMapAsync(NodeDigest.ConfigMapName, f.Ns);
            Assert.Equal(before.Metadata.ResourceVersion, after.Metadata.ResourceVersion);
            Assert.Empty(inputs.TakeChanges().Nodes);

            // NetworkUnavailable is what the election reads of the status: that does reach the speaker.
            await PatchStatusAsync(f.Client, a, new V1NodeCondition { Type = "NetworkUnavailable", Status = "True", Reason = "NoRouteCreated" });
            await ControllerFixture.Eventually(
                () => Task.FromResult(inputs.Node(a)?.Status?.Conditions?.Any(c => c.Type == "NetworkUnavailable" && c.Status == "True") == true), "the speaker sees node a's network unavailable");

            await stop.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
        }
        finally
        {
            foreach (var node in new[] { a, b })
            {
                await f.Client.CoreV1.DeleteNodeAsync(node);
            }
        }
    }

    private static V1Node NewNode(string name, string zone) =>
        new() { Metadata = new V1ObjectMeta { Name = name, Labels = new Dictionary<string, string> { ["zone"] = zone, ["kubernetes.io/hostname"] = name } } };

    private static Task<V1Node> PatchLabelsAsync(k8s.Kubernetes client, string node, Dictionary<string, string> labels) =>
        client.CoreV1.PatchNodeAsync(new V1Patch(JsonSerializer.Serialize(new { metadata = new { labels } }), V1Patch.PatchType.MergePatch), node);

    private static Task<V1Node> PatchStatusAsync(k8s.Kubernetes client, string node, V1NodeCondition condition) =>
        client.CoreV1.PatchNodeStatusAsync(
            new V1Patch(JsonSerializer.Serialize(new { status = new { conditions = new[] { new { type = condition.Type, status = condition.Status, reason = condition.Reason, lastHeartbeatTime = condition.LastHeartbeatTime } } } }), V1Patch.PatchType.MergePatch),
            node);
}

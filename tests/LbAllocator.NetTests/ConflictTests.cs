using k8s;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.TestApiServer;

namespace LbAllocator.NetTests;

/// <summary>Address conflicts (RFC 5227, and duplicate address detection for IPv6) against a real host that already uses the address.</summary>
[Collection(LabCollection.Name)]
public class ConflictTests(Lab lab) : IAsyncLifetime
{
    private const string V4 = "192.0.2.226";
    private const string V6 = "2001:db8::220";

    private readonly Lab.RefusalCheck _rbac = lab.CheckRefusals();

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _rbac.AssertNoneAsync();

    [RealApiFact]
    public async Task An_address_another_host_uses_is_not_announced_is_reported_and_is_announced_once_that_host_is_gone()
    {
        var squatter = await lab.AddForeignHostAsync("squat", $"{V4}/24", $"{V6}/64");
        string owner;
        try
        {
            await lab.CreateServiceAsync("conflict", ip: $"{V4},{V6}", families: ["IPv4", "IPv6"]);
            var status = await ConditionAsync("True", squatter.Mac);
            owner = status.Status!.Node!;

            // Only the other host answers, for either address: no speaker does, the owner included.
            for (var i = 0; i < 2; i++)
            {
                Assert.Equal([squatter.Mac], await lab.ArpAnswerersAsync(V4));
                Assert.Equal([squatter.Mac], await lab.NeighborAnswerersAsync(V6));
            }

            var warnings = (await lab.Client.CoreV1.ListNamespacedEventAsync("default")).Items
                .Where(e => e.InvolvedObject.Name == "conflict" && e.Reason == "AddressConflict" && e.Type == "Warning").Select(e => e.Message).ToList();
            Assert.Contains(warnings, m => m.StartsWith($"{V4} is already in use by {squatter.Mac}", StringComparison.Ordinal));
            Assert.Contains(warnings, m => m.StartsWith($"{V6} is already in use by {squatter.Mac}", StringComparison.Ordinal));
            var (_, metrics) = await lab.SpeakerStatusAsync(owner, "/metrics");
            Assert.InRange(PrometheusText.Parse(metrics)["lballocator_speaker_address_conflicts_total"], 2, 1000);
        }
        finally
        {
            await squatter.DisposeAsync();
        }

        // The other host is gone: the owner's next probe goes unanswered (backoff 1 s, doubling), and it announces both.
        Assert.Equal(owner, await lab.WaitForArpOwnerAsync(V4, timeout: TimeSpan.FromSeconds(40)));
        await Eventually.HoldsAsync(async () => await lab.NdpAsync(V6) is var mac && mac == lab.Macs[owner] ? null : $"{V6} answered by {mac ?? "nobody"}", TimeSpan.FromSeconds(40));
        await ConditionAsync("False", null);
        Assert.Equal([lab.Macs[owner]], await lab.ArpAnswerersAsync(V4));
        var resolved = (await lab.Client.CoreV1.ListNamespacedEventAsync("default")).Items
            .Where(e => e.InvolvedObject.Name == "conflict" && e.Reason == "AddressConflictResolved" && e.Type == "Normal").Select(e => e.Message).ToList();
        Assert.Contains(resolved, m => m.StartsWith($"{V4} is no longer claimed by another host: announcing it from node {owner}", StringComparison.Ordinal));
    }

    /// <summary>Waits until the Service's ServiceL2Status has its AddressConflict condition at this status (True: naming both addresses and the MAC).</summary>
    private async Task<V1Alpha1ServiceL2Status> ConditionAsync(string wanted, string? mac)
    {
        V1Alpha1ServiceL2Status? status = null;
        await Eventually.HoldsAsync(async () =>
        {
            status = await lab.L2StatusAsync("conflict");
            var condition = status?.Status?.Conditions?.SingleOrDefault(c => c.Type == L2Conditions.AddressConflict);
            return condition?.Status == wanted && condition.LastTransitionTime != default
                && (mac is null || (condition.Reason == "AddressInUse" && condition.Message.Contains($"{V4} is in use by {mac}", StringComparison.Ordinal)
                    && condition.Message.Contains($"{V6} is in use by {mac}", StringComparison.Ordinal)))
                ? null
                : $"AddressConflict condition: {condition?.Status} {condition?.Reason} {condition?.Message}";
        }, TimeSpan.FromSeconds(30));
        return status!;
    }
}

using k8s;
using LbAllocator.Kubernetes.Crds;

namespace LbAllocator.NetTests;

/// <summary>Self-verified announcements: another node checks the owner's answers on the real LAN.</summary>
[Collection(LabCollection.Name)]
public class VerifiedTests(Lab lab) : IAsyncLifetime
{
    private const string Ip = "192.0.2.227";

    private readonly Lab.RefusalCheck _rbac = lab.CheckRefusals();

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _rbac.AssertNoneAsync();

    [RealApiFact]
    public async Task Verified_turns_true_once_the_owner_answers_and_false_while_its_answers_are_dropped()
    {
        await lab.CreateServiceAsync("verified", ip: Ip);
        var owner = await lab.WaitForArpOwnerAsync(Ip);
        var mac = lab.Macs[owner];

        var status = await VerifiedAsync("True", "Answered", $"{Ip} answered by node {owner} ({mac})");
        Assert.Equal(mac, Assert.Single(status.Status!.Interfaces!).Mac);
        var verifier = VerifierIn(status);
        Assert.NotEqual(owner, verifier);
        Assert.Contains(verifier, Lab.Nodes);

        // The owner still holds the address (its heartbeats go out), but its ARP replies never reach the others.
        await using (await lab.DropArpRepliesAsync(owner))
        {
            Assert.Null(await lab.ArpingAsync(Ip));
            await VerifiedAsync("False", "NoAnswer", $"{Ip} not answered (the owner is node {owner} ({mac}))");
            var expected = $"checked by node {verifier}: {Ip} not answered (the owner is node {owner} ({mac}))";
            await Eventually.HoldsAsync(async () => (await lab.Client.CoreV1.ListNamespacedEventAsync("default")).Items
                .Any(e => e.InvolvedObject.Name == "verified" && e.Reason == "NotVerified" && e.Type == "Warning" && e.Message == expected) ? null : "no NotVerified event", TimeSpan.FromSeconds(10));
        }

        Assert.Equal(mac, await lab.ArpingAsync(Ip));
        await VerifiedAsync("True", "Answered", $"{Ip} answered by node {owner} ({mac})");
    }

    /// <summary>Waits until the Service's Verified condition has this status and reason and its message starts so (then "; last checked TIME by node NODE").</summary>
    private async Task<V1Alpha1ServiceL2Status> VerifiedAsync(string wanted, string reason, string message)
    {
        V1Alpha1ServiceL2Status? status = null;
        await Eventually.HoldsAsync(async () =>
        {
            status = await lab.L2StatusAsync("verified");
            var condition = status?.Status?.Conditions?.SingleOrDefault(c => c.Type == L2Conditions.Verified);
            return condition?.Status == wanted && condition.Reason == reason && condition.Message.StartsWith(message + "; last checked ", StringComparison.Ordinal)
                ? null
                : $"Verified condition: {condition?.Status} {condition?.Reason} {condition?.Message}";
        }, TimeSpan.FromSeconds(30));
        return status!;
    }

    private static string VerifierIn(V1Alpha1ServiceL2Status status)
    {
        var message = status.Status!.Conditions!.Single(c => c.Type == L2Conditions.Verified).Message;
        return message[(message.LastIndexOf("by node ", StringComparison.Ordinal) + "by node ".Length)..];
    }
}

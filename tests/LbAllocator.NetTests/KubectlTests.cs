using LbAllocator.TestApiServer;

namespace LbAllocator.NetTests;

/// <summary>What a user sees with kubectl, read by its column headers, against what happens on the LAN.</summary>
[Collection(LabCollection.Name)]
public class KubectlTests(Lab lab) : IAsyncLifetime
{
    private readonly Lab.RefusalCheck _rbac = lab.CheckRefusals();

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _rbac.AssertNoneAsync();

    private const string Ip = "192.0.2.208";

    [RealApiFact]
    public async Task Get_servicel2statuses_names_the_node_that_answers_arp_and_follows_a_handover()
    {
        await lab.CreateServiceAsync("shown", ip: Ip);
        var owner = await lab.WaitForArpOwnerAsync(Ip);
        await ShowsAsync(owner);

        await lab.Speaker(owner).SignalAsync("TERM");
        var successor = await lab.WaitForArpOwnerAsync(Ip, not: owner);
        await ShowsAsync(successor);

        lab.StartSpeaker(owner);
        await lab.WaitForSpeakersAsync([owner]);
    }

    /// <summary>Waits until `kubectl get servicel2statuses` shows exactly one row for the Service, naming the node.</summary>
    private async Task ShowsAsync(string node)
    {
        await Eventually.HoldsAsync(async () =>
        {
            var text = await lab.Server.KubectlMustAsync("get", "servicel2statuses", "-n", Lab.InstallNamespace);
            Assert.Equal(["NAME", "SERVICE NAMESPACE", "SERVICE", "NODE", "INTERFACES", "CONFLICT", "VERIFIED", "AGE"], KubectlTable.Header(text));
            var rows = KubectlTable.Parse(text).Where(r => r["SERVICE"] == "shown").ToList();
            return rows is [var row] && row["SERVICE NAMESPACE"] == "default" && row["NODE"] == node && row["INTERFACES"] == "eth0" && row["CONFLICT"] == "False" && row["VERIFIED"] == "True"
                && row["NAME"].Length > 0 && row["AGE"].Length > 0
                ? null
                : $"ARP is answered by {node}, but kubectl shows:\n{text}";
        }, TimeSpan.FromSeconds(10));
    }
}

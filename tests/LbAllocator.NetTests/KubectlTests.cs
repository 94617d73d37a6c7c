using System.Text.RegularExpressions;

namespace LbAllocator.NetTests;

/// <summary>What a user sees with kubectl, read by its column headers, against what happens on the LAN.</summary>
[Collection(LabCollection.Name)]
public partial class KubectlTests(Lab lab) : IAsyncLifetime
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
            var table = Table(text);
            Assert.Equal(["NAME", "SERVICE NAMESPACE", "SERVICE", "NODE", "AGE"], table.Header);
            var rows = table.Rows.Where(r => r["SERVICE"] == "shown").ToList();
            return rows is [var row] && row["SERVICE NAMESPACE"] == "default" && row["NODE"] == node && row["NAME"].Length > 0 && row["AGE"].Length > 0
                ? null
                : $"ARP is answered by {node}, but kubectl shows:\n{text}";
        }, TimeSpan.FromSeconds(10));
    }

    /// <summary>kubectl's table cut at its header's columns (names may hold single spaces; columns are three apart).</summary>
    private static (string[] Header, List<Dictionary<string, string>> Rows) Table(string text)
    {
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var columns = ColumnName().Matches(lines[0]).ToList();
        var rows = lines.Skip(1).Select(line => columns.Select((c, i) =>
        {
            var end = i + 1 < columns.Count ? columns[i + 1].Index : line.Length;
            return (c.Value, Cell: c.Index < line.Length ? line[c.Index..Math.Min(end, line.Length)].Trim() : "");
        }).ToDictionary(c => c.Value, c => c.Cell)).ToList();
        return ([.. columns.Select(c => c.Value)], rows);
    }

    [GeneratedRegex(@"\S+(?: \S+)*")]
    private static partial Regex ColumnName();
}

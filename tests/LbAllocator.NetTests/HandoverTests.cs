using k8s;
using Xunit.Abstractions;

namespace LbAllocator.NetTests;

/// <summary>
/// Handovers, planned or not, counted in requests answered by two nodes (none) and in the longest silence at the
/// handback (break before make: the node coming back probes until the one standing in has let go): SIGTERM, the LAN
/// link down and up, a killed speaker's return; speakers of different timings side by side; a restart while another
/// node is down; a running speaker's lease deleted. Questions every 20 ms (<see cref="ArpWatch"/>).
/// </summary>
[Collection(LabCollection.Name)]
public class HandoverTests(Lab lab, ITestOutputHelper output) : IAsyncLifetime
{
    private const int Trials = 5;
    private const double HandbackSilence = 0.3;

    private readonly Lab.RefusalCheck _rbac = lab.CheckRefusals();

    public Task InitializeAsync() => lab.RestoreNodesAsync();

    public Task DisposeAsync() => _rbac.AssertNoneAsync();

    public static TheoryData<string> Faults() => ["SIGTERM", "link down and up", "SIGKILL and return"];

    [RealApiTheory]
    [MemberData(nameof(Faults))]
    public async Task A_handover_never_answers_twice_and_a_handback_pauses_at_most_three_tenths_of_a_second(string fault)
    {
        var ip = fault switch { "SIGTERM" => "192.0.2.233", "link down and up" => "192.0.2.234", _ => "192.0.2.235" };
        await lab.CreateServiceAsync($"handover-{Array.IndexOf(["SIGTERM", "link down and up", "SIGKILL and return"], fault)}", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        using var watch = await ArpWatch.StartAsync(lab, ip);
        await Task.Delay(500);
        var handbacks = new List<double>();
        var failovers = new List<double>();
        for (var trial = 0; trial < Trials; trial++)
        {
            var at = DateTimeOffset.UtcNow;
            await Inflict(fault, owner);
            failovers.Add(await watch.TakeoverAsync(lab.Macs[owner], at, TimeSpan.FromSeconds(5)));
            await Task.Delay(TimeSpan.FromSeconds(1));
            var back = DateTimeOffset.UtcNow;
            await Repair(fault, owner);
            await Eventually.HoldsAsync(async () => await lab.ArpingAsync(ip) == lab.Macs[owner] ? null : $"{owner} has not taken {ip} back", TimeSpan.FromSeconds(20));
            await Task.Delay(500);
            handbacks.Add(watch.LongestSilence(from: back));
        }

        output.WriteLine($"{fault}, {Trials} trials: answered twice {watch.AnsweredTwice()} of {watch.Tally().Asked} requests; failover {string.Join(" ", failovers.Select(f => $"{f:F2}"))} s; "
            + $"longest silence at the handback {string.Join(" ", handbacks.Select(h => $"{h:F2}"))} s");
        Assert.Equal(0, watch.AnsweredTwice());
        Assert.All(failovers, f => Assert.True(f <= 1.0, $"a failover took {f:F2} s"));
        Assert.All(handbacks, h => Assert.True(h <= HandbackSilence, $"a handback was silent for {h:F2} s"));
    }

    [RealApiFact]
    public async Task Speakers_with_different_timings_side_by_side_never_answer_twice()
    {
        const string ip = "192.0.2.236";
        await lab.CreateServiceAsync("timings", ip: ip);
        string[] fast = ["--heartbeat-interval", "0.05", "--dead-interval", "0.2"];
        string[] slow = ["--heartbeat-interval", "0.5", "--dead-interval", "3"];
        var timings = new Dictionary<string, string[]> { [Lab.Nodes[0]] = fast, [Lab.Nodes[1]] = slow, [Lab.Nodes[2]] = [] };
        var defaults = lab.SpeakerOptions;
        using var watch = await ArpWatch.StartAsync(lab, ip);
        try
        {
            // A rollout that changes the timings: each speaker restarted in turn (SIGTERM) with its own.
            foreach (var node in Lab.Nodes)
            {
                await RestartAsync(node, [.. defaults, .. timings[node]]);
            }

            // The owner killed and back, twice, whatever its timings are.
            for (var i = 0; i < 2; i++)
            {
                var owner = await lab.WaitForArpOwnerAsync(ip);
                await lab.Speaker(owner).SignalAsync("KILL");
                await lab.WaitForArpOwnerAsync(ip, not: owner, timeout: TimeSpan.FromSeconds(10));
                lab.SpeakerOptions = [.. defaults, .. timings[owner]];
                lab.StartSpeaker(owner);
                await lab.WaitForSpeakersAsync([owner]);
                await Eventually.HoldsAsync(async () => await lab.ArpingAsync(ip) == lab.Macs[owner] ? null : $"{owner} has not taken {ip} back", TimeSpan.FromSeconds(20));
            }
        }
        finally
        {
            lab.SpeakerOptions = defaults;
            foreach (var node in Lab.Nodes)
            {
                await RestartAsync(node, defaults);
            }
        }

        output.WriteLine($"speakers at 0.05/0.2 s, 0.5/3 s and the defaults side by side (restarts and kills): answered twice {watch.AnsweredTwice()} of {watch.Tally().Asked} requests");
        Assert.Equal(0, watch.AnsweredTwice());
    }

    [RealApiFact]
    public async Task A_restart_while_another_node_is_down_costs_no_silence_beyond_one_dead_interval()
    {
        const string ip = "192.0.2.237";
        await lab.CreateServiceAsync("beside-dead", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        var other = Lab.Nodes.First(n => n != owner);
        using var watch = await ArpWatch.StartAsync(lab, ip);
        await Task.Delay(500);

        // A node whose address it is not goes down for good; then the owner restarts (SIGKILL and back), so the
        // address's next owner may be a node that has only just learnt the down node is gone, or the restarted one.
        var down = Lab.Nodes.First(n => n != owner && n != other);
        await lab.Speaker(down).SignalAsync("KILL");
        await Task.Delay(TimeSpan.FromMilliseconds(200));
        var at = DateTimeOffset.UtcNow;
        await lab.Speaker(owner).SignalAsync("KILL");
        lab.StartSpeaker(owner);
        await lab.WaitForSpeakersAsync([owner]);
        await Task.Delay(TimeSpan.FromSeconds(3));
        var longest = watch.LongestSilence(from: at);
        output.WriteLine($"owner restarted 0.2 s after {down} went down: longest silence {longest:F2} s; answered twice {watch.AnsweredTwice()}");
        lab.StartSpeaker(down);
        await lab.WaitForSpeakersAsync([down]);
        Assert.Equal(0, watch.AnsweredTwice());
        Assert.True(longest <= 1.0, $"silent for {longest:F2} s");
    }

    [RealApiFact]
    public async Task Deleting_a_running_speakers_lease_changes_nothing_on_the_wire()
    {
        const string ip = "192.0.2.238";
        await lab.CreateServiceAsync("lease-deleted", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        using var watch = await ArpWatch.StartAsync(lab, ip);
        await Task.Delay(500);
        foreach (var node in Lab.Nodes)
        {
            await lab.Client.CoordinationV1.DeleteNamespacedLeaseAsync(LbAllocator.Speaker.SpeakerLease.NameFor(node), Lab.InstallNamespace);
        }

        await Task.Delay(TimeSpan.FromSeconds(12)); // past a renewal, which creates each lease anew
        Assert.Equal(0, watch.AnsweredTwice());
        Assert.Equal([lab.Macs[owner]], watch.Answerers());
        Assert.Equal(0, watch.LongestSilence());
        var leases = await lab.Client.CoordinationV1.ListNamespacedLeaseAsync(Lab.InstallNamespace);
        Assert.All(Lab.Nodes, n => Assert.Contains(leases.Items, l => l.Spec?.HolderIdentity == n));
    }

    private async Task RestartAsync(string node, IReadOnlyList<string> options)
    {
        await lab.Speaker(node).SignalAsync("TERM");
        Assert.True(await lab.Speaker(node).WaitForExitAsync(TimeSpan.FromSeconds(10)));
        lab.SpeakerOptions = options;
        lab.StartSpeaker(node);
        await lab.WaitForSpeakersAsync([node]);
    }

    private async Task Inflict(string fault, string owner)
    {
        switch (fault)
        {
            case "SIGTERM":
                await lab.Speaker(owner).SignalAsync("TERM");
                Assert.True(await lab.Speaker(owner).WaitForExitAsync(TimeSpan.FromSeconds(10)));
                break;
            case "link down and up":
                await lab.SetLanLinkAsync(owner, up: false);
                break;
            default:
                await lab.Speaker(owner).SignalAsync("KILL");
                break;
        }
    }

    private async Task Repair(string fault, string owner)
    {
        if (fault == "link down and up")
        {
            await lab.SetLanLinkAsync(owner, up: true);
        }
        else
        {
            lab.StartSpeaker(owner);
        }
    }
}

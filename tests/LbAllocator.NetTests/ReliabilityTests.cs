using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using Xunit.Abstractions;

namespace LbAllocator.NetTests;

/// <summary>
/// The speakers under trouble: owners killed ten times, an owner cut off from the API server, an owner's LAN
/// link down or its interface deleted, an owner restarted without NET_RAW, API connections reset and nodes cut
/// in turn, a flood of random and broken frames. Figures go to the test output.
/// </summary>
[Collection(LabCollection.Name)]
public partial class ReliabilityTests(Lab lab, ITestOutputHelper output) : IAsyncLifetime
{
    private readonly Lab.RefusalCheck _rbac = lab.CheckRefusals();

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _rbac.AssertNoneAsync();

    [RealApiFact]
    public async Task Ten_owner_kills_fail_over_within_a_second_and_never_have_two_nodes_answering()
    {
        const string ip = "192.0.2.212";
        await lab.CreateServiceAsync("flap", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        using var watch = await ArpWatch.StartAsync(lab, ip);
        await Task.Delay(500);
        var failovers = new List<double>();
        for (var kill = 0; kill < 10; kill++)
        {
            var killed = DateTimeOffset.UtcNow;
            await lab.Speaker(owner).SignalAsync("KILL");
            // Nothing tells the others: they stop hearing its heartbeats (dead interval 0.5 s).
            failovers.Add(await watch.TakeoverAsync(lab.Macs[owner], killed, TimeSpan.FromSeconds(10)));
            // The killed node comes back and, being the address's first choice, takes it back after listening;
            // the next kill is of the same node, once it answers again.
            lab.StartSpeaker(owner);
            await lab.WaitForSpeakersAsync([owner]);
            await Eventually.HoldsAsync(async () => await lab.ArpingAsync(ip) == lab.Macs[owner] ? null : $"{owner} has not taken {ip} back", TimeSpan.FromSeconds(20));
            await Task.Delay(500);
        }

        await Task.Delay(500);
        var (doubled, silent, asked) = watch.Tally();
        failovers.Sort();
        output.WriteLine($"10 SIGKILLs of the owner (each followed by the node's return): {asked} ARP requests every 20 ms; "
            + $"two nodes answering: {doubled * 1000:F0} ms in all; nobody answering: {silent:F2} s in all; "
            + $"failover min/median/max {failovers[0]:F2}/{failovers[5]:F2}/{failovers[^1]:F2} s ({string.Join(" ", failovers.Select(f => f.ToString("F2", CultureInfo.InvariantCulture)))})");
        if (doubled > 0)
        {
            // When, and who took over and let go around then: what it takes to tell a false expiry from a race.
            output.WriteLine(string.Join("\n", watch.Doubles()));
            output.WriteLine(string.Join("\n", Lab.Nodes.SelectMany(n => lab.SpeakerLog(n).Where(l => l.Contains("Taking over", StringComparison.Ordinal) || l.Contains("No longer", StringComparison.Ordinal)).Select(l => $"{n} {l}"))));
        }

        Assert.True(asked > 500, $"only {asked} questions were seen");
        Assert.Equal(0, doubled);
        Assert.True(failovers[^1] <= 1.0, $"the slowest failover took {failovers[^1]:F2} s");
    }

    [RealApiFact]
    public async Task An_owner_cut_off_from_the_api_for_a_minute_keeps_answering_without_a_gap()
    {
        const string ip = "192.0.2.213";
        await lab.CreateServiceAsync("partition", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        await Eventually.HoldsAsync(async () => (await lab.L2StatusAsync("partition"))?.Status?.Node == owner ? null : "no status yet", TimeSpan.FromSeconds(10));
        using var watch = await ArpWatch.StartAsync(lab, ip);
        await Task.Delay(1000);
        // Requests hang, nothing is refused; the LAN is fine, and the LAN alone decides who answers.
        await lab.CutApiAsync(owner);
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(60));
            var (code, body) = await lab.SpeakerStatusAsync(owner, "/readyz");
            Assert.True(code == 200, body);
            Assert.Contains("ok lan: member of the segment, answering; 2 of 2 ring neighbours heard", body, StringComparison.Ordinal);
        }
        finally
        {
            await lab.RestoreApiAsync(owner);
        }

        // Caught up: a Service created now, for which the cut node is the only candidate (the others excluded), is
        // answered by it, so its watches are back (after a minute, TCP alone may take another minute to retry).
        var restored = Stopwatch.StartNew();
        var others = Lab.Nodes.Where(n => n != owner).ToList();
        foreach (var other in others)
        {
            await lab.SetExcludedAsync(other, true);
        }

        try
        {
            // IPv6: the lab pool's IPv4 addresses all have a test of their own.
            await lab.CreateServiceAsync("after-cut", ip: "2001:db8::213", families: ["IPv6"]);
            await Eventually.HoldsAsync(async () => await lab.NdpAsync("2001:db8::213") is var mac && mac == lab.Macs[owner] ? null : $"2001:db8::213 answered by {mac ?? "nobody"}",
                TimeSpan.FromSeconds(20));
        }
        finally
        {
            foreach (var other in others)
            {
                await lab.SetExcludedAsync(other, false);
            }
        }

        var caughtUp = restored.Elapsed.TotalSeconds;
        var (doubled, silent, asked) = watch.Tally();
        var longest = watch.LongestSilence();
        output.WriteLine($"owner cut off from the API server for 60 s and back (a new Service answered by it {caughtUp:F1} s after): {asked} ARP requests; answered by {string.Join(", ", watch.Answerers())} (owner {lab.Macs[owner]}); "
            + $"two nodes answering {doubled * 1000:F0} ms; nobody answering {silent:F2} s in all, longest {longest:F2} s");
        Assert.True(asked > 2500, $"only {asked} questions were seen");
        Assert.Equal(0, doubled);
        Assert.True(longest <= 0.2, $"a silence of {longest:F2} s");
        Assert.Equal([lab.Macs[owner]], watch.Answerers());
    }

    [RealApiFact]
    public async Task An_owner_whose_lan_link_goes_down_is_replaced_after_its_dead_interval_and_takes_over_again_after()
    {
        const string ip = "192.0.2.209";
        await lab.CreateServiceAsync("linkdown", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        using var watch = await ArpWatch.StartAsync(lab, ip);
        await Task.Delay(1000);
        var down = DateTimeOffset.UtcNow;
        await lab.SetLanLinkAsync(owner, up: false);
        double failover;
        try
        {
            failover = await watch.TakeoverAsync(lab.Macs[owner], down, TimeSpan.FromSeconds(10));
            await AssertCannotAnswerAsync(owner, "eth0: down");
            await Task.Delay(1000);
        }
        finally
        {
            await lab.SetLanLinkAsync(owner, up: true);
        }

        // Back: it listens for a dead interval, and the node answering meanwhile lets go when it hears it.
        await Eventually.HoldsAsync(async () => await lab.ArpingAsync(ip) == lab.Macs[owner] ? null : "the owner has not taken it back", TimeSpan.FromSeconds(15));
        await Eventually.HoldsAsync(async () => (await lab.SpeakerStatusAsync(owner, "/readyz")).Code == 200 ? null : "not ready again", TimeSpan.FromSeconds(10));
        await Task.Delay(1000);
        var (doubled, silent, asked) = watch.Tally();
        var longest = watch.LongestSilence();
        output.WriteLine($"owner's LAN link down and up: failover {failover:F2} s; {asked} ARP requests; two nodes answering {doubled * 1000:F0} ms; nobody answering {silent:F2} s in all, longest {longest:F2} s");
        AssertDeadIntervalSilences(failover, longest);
        Assert.Equal(0, doubled);
    }

    [RealApiFact]
    public async Task An_owner_whose_lan_interface_is_deleted_is_replaced_after_its_dead_interval_and_takes_part_again_on_a_new_one()
    {
        const string ip = "192.0.2.218";
        await lab.CreateServiceAsync("nic", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        var oldMac = lab.Macs[owner];
        using var watch = await ArpWatch.StartAsync(lab, ip);
        await Task.Delay(1000);
        var deleted = DateTimeOffset.UtcNow;
        // Gone, not down: the capture's interface index no longer exists.
        await lab.DeleteLanLinkAsync(owner);
        double failover;
        try
        {
            failover = await watch.TakeoverAsync(oldMac, deleted, TimeSpan.FromSeconds(10));
            await AssertCannotAnswerAsync(owner, "eth0: not found");
            await Task.Delay(1000);
        }
        finally
        {
            // A new eth0: another MAC and interface index, which the speaker must find and open by itself.
            await lab.AddLanLinkAsync(owner);
        }

        Assert.NotEqual(oldMac, lab.Macs[owner]);
        await Eventually.HoldsAsync(async () =>
        {
            var mac = await lab.ArpingAsync(ip);
            return mac == lab.Macs[owner] ? null : $"{ip} answered by {mac ?? "nobody"}, not by {owner}'s new eth0 ({lab.Macs[owner]})";
        }, TimeSpan.FromSeconds(15));
        await AssertReadyAgainAsync(owner);
        await Task.Delay(1000);
        var (doubled, silent, asked) = watch.Tally();
        var longest = watch.LongestSilence();
        output.WriteLine($"owner's LAN interface deleted and re-created: failover {failover:F2} s; {asked} ARP requests; answered by {string.Join(", ", watch.Answerers())} "
            + $"(owner {oldMac}, then {lab.Macs[owner]}); two nodes answering {doubled * 1000:F0} ms; nobody answering {silent:F2} s in all, longest {longest:F2} s");
        if (failover > 1.0)
        {
            output.WriteLine($"deleted at {deleted:HH:mm:ss.fff}");
            output.WriteLine(string.Join("\n", Lab.Nodes.SelectMany(n => lab.SpeakerLog(n).TakeLast(60).Select(l => $"{n} {l}"))));
        }

        AssertDeadIntervalSilences(failover, longest);
        Assert.Equal(0, doubled);
        Assert.Contains(lab.Macs[owner], watch.Answerers());
    }

    [RealApiFact]
    public async Task An_owner_restarted_without_net_raw_holds_nothing_says_why_and_takes_part_again_with_it()
    {
        const string ip = "192.0.2.219";
        await lab.CreateServiceAsync("noraw", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        var ownerMac = lab.Macs[owner];
        using var watch = await ArpWatch.StartAsync(lab, ip);
        await Task.Delay(1000);
        // As a DaemonSet rollout that lost NET_RAW does it: SIGTERM (the lease is deleted, the others take over),
        // then a new speaker that reaches the API server but cannot open a capture, so no peer ever hears it.
        await lab.Speaker(owner).SignalAsync("TERM");
        Assert.True(await lab.Speaker(owner).WaitForExitAsync(TimeSpan.FromSeconds(10)), "the speaker did not exit on SIGTERM");
        lab.StartSpeaker(owner, netRaw: false);
        await lab.WaitForSpeakersAsync([owner], ready: false);
        await AssertCannotAnswerAsync(owner, "NET_RAW");
        var successor = await lab.WaitForArpOwnerAsync(ip, not: owner);
        // Long past the point where the others have seen its lease (and renewals) and judged it: it must stay out
        // of the election, so the address keeps being answered and the status names who answers.
        await Task.Delay(TimeSpan.FromSeconds(5));
        await AssertStatusNamesAsync("noraw", successor);
        Assert.Equal(lab.Macs[successor], await lab.ArpingAsync(ip));
        var (doubledWithout, silentWithout, askedWithout) = watch.Tally();
        var longestWithout = watch.LongestSilence();
        var answerersWithout = watch.Answerers();
        var metrics = LbAllocator.TestApiServer.PrometheusText.Parse((await lab.SpeakerStatusAsync(owner, "/metrics")).Body);
        Assert.Equal(0, metrics["lballocator_speaker_alive"]);

        // NET_RAW back: it listens, is heard, and takes back what it wins.
        lab.StartSpeaker(owner);
        await Eventually.HoldsAsync(async () =>
        {
            var mac = await lab.ArpingAsync(ip);
            return mac == ownerMac ? null : $"{ip} answered by {mac ?? "nobody"}, not by {owner} ({ownerMac})";
        }, TimeSpan.FromSeconds(20));
        await AssertReadyAgainAsync(owner);
        await AssertStatusNamesAsync("noraw", owner);
        await Task.Delay(1000);
        var (doubled, silent, asked) = watch.Tally();
        output.WriteLine($"owner restarted without NET_RAW: {askedWithout} ARP requests meanwhile, answered by {string.Join(", ", answerersWithout)} (owner {ownerMac}); "
            + $"two nodes answering {doubledWithout * 1000:F0} ms; nobody answering {silentWithout:F2} s in all, longest {longestWithout:F2} s; "
            + $"with NET_RAW again: {asked} ARP requests in all, two nodes answering {doubled * 1000:F0} ms, nobody answering {silent:F2} s in all, longest {watch.LongestSilence():F2} s");
        // Never a black hole: the SIGTERM handover is the only silence (at most 0.3 s), whatever the new speaker does.
        Assert.True(longestWithout <= 0.3, $"a silence of {longestWithout:F2} s while {owner} had no NET_RAW");
        Assert.Equal(0, doubled);
    }

    private async Task AssertReadyAgainAsync(string node) =>
        await Eventually.HoldsAsync(async () =>
        {
            var (code, body) = await lab.SpeakerStatusAsync(node, "/readyz");
            return code == 200 ? null : $"{node} not ready again: {body}";
        }, TimeSpan.FromSeconds(10));

    private async Task AssertStatusNamesAsync(string service, string node) =>
        await Eventually.HoldsAsync(async () =>
        {
            var named = (await lab.L2StatusAsync(service))?.Status?.Node;
            return named == node ? null : $"the ServiceL2Status of {service} names {named ?? "nobody"}, not {node}";
        }, TimeSpan.FromSeconds(10));

    /// <summary>
    /// The node knows it cannot answer: not ready, with the reason (containing <paramref name="why"/>), and a
    /// Warning CannotAnswer event on its Node saying the same.
    /// </summary>
    /// <summary>
    /// Each silence is the 0.5 s dead interval plus slack for a busy machine: at the fault, until the others count the
    /// owner dead; at its return, while it listens before answering and the node answering meanwhile has let go. A
    /// probe before a takeover (the taker finding no ServiceL2Status, because the one letting go deleted it) made
    /// both 0.8 s.
    /// </summary>
    private static void AssertDeadIntervalSilences(double failover, double longest)
    {
        Assert.True(failover <= 0.7, $"failover took {failover:F2} s");
        Assert.True(longest <= 0.7, $"a silence of {longest:F2} s");
    }

    private async Task AssertCannotAnswerAsync(string node, string why)
    {
        await Eventually.HoldsAsync(async () =>
        {
            var (code, body) = await lab.SpeakerStatusAsync(node, "/readyz");
            return code == 503 && body.Contains("FAIL lan: cannot answer on ", StringComparison.Ordinal) && body.Contains(why, StringComparison.Ordinal)
                ? null : $"readyz: {code} {body}";
        }, TimeSpan.FromSeconds(10));
        await Eventually.HoldsAsync(async () => (await lab.Client.CoreV1.ListEventForAllNamespacesAsync()).Items
            .Any(e => e.InvolvedObject.Kind == "Node" && e.InvolvedObject.Name == node && e.Type == "Warning" && e.Reason == "CannotAnswer" && e.Message.Contains(why, StringComparison.Ordinal))
                ? null : $"no Warning CannotAnswer event on {node} mentioning \"{why}\"", TimeSpan.FromSeconds(10));
    }

    [RealApiFact]
    public async Task Reset_watches_and_nodes_cut_in_turn_converge_to_one_announcer_per_address()
    {
        string[] ips = ["192.0.2.214", "192.0.2.215", "192.0.2.216"];
        using var chaos = new CancellationTokenSource();
        var resets = 0;
        var trouble = Task.Run(async () =>
        {
            // Every 2 s one node in turn: its API connections reset (watches end mid-stream), and every
            // other round it is also cut off for a second (requests hang, then resume).
            for (var round = 0; !chaos.IsCancellationRequested; round++)
            {
                await Task.Delay(2000, CancellationToken.None);
                var node = Lab.Nodes[round % Lab.Nodes.Length];
                resets += await lab.ResetApiConnectionsAsync(node);
                if (round % 2 == 1)
                {
                    await lab.CutApiAsync(node);
                    await Task.Delay(1000, CancellationToken.None);
                    await lab.RestoreApiAsync(node);
                }
            }
        }, CancellationToken.None);
        try
        {
            for (var i = 0; i < ips.Length; i++)
            {
                await lab.CreateServiceAsync($"chaos{i}", ip: ips[i]);
                await Task.Delay(3000);
            }
        }
        finally
        {
            await chaos.CancelAsync();
            await trouble;
        }

        Assert.True(resets > 0, "no API connection was reset: the fault did not happen");
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < ips.Length; i++)
        {
            var owner = await lab.WaitForArpOwnerAsync(ips[i]);
            await Eventually.HoldsAsync(async () => (await lab.L2StatusAsync($"chaos{i}"))?.Status?.Node == owner ? null : $"status of chaos{i} does not name {owner}", TimeSpan.FromSeconds(15));
            await AssertOneAnswerAsync(ips[i]);
        }

        output.WriteLine($"services created during 9 s of reset API connections ({resets}) and one-second cuts; all announced once, statuses right, {clock.Elapsed.TotalSeconds:F1} s after the trouble stopped");
    }

    [RealApiFact]
    public async Task A_million_random_and_broken_frames_neither_crash_nor_mislead_the_speakers()
    {
        const string ip = "192.0.2.217";
        await lab.CreateServiceAsync("flood", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        // What the nodes may answer for: the Services' addresses (speakers) and their own (the kernel).
        var owned = (await lab.Client.CoreV1.ListNamespacedServiceAsync("default")).Items
            .SelectMany(s => s.Status?.LoadBalancer?.Ingress?.Select(i => i.Ip) ?? [])
            .Concat(Lab.Nodes.Select((_, i) => $"192.0.2.{11 + i}"))
            .ToHashSet(StringComparer.Ordinal);
        var pcap = Path.Combine(Path.GetTempPath(), $"lbt{Environment.ProcessId}-flood.pcap");
        var replies = Path.Combine(Path.GetTempPath(), $"lbt{Environment.ProcessId}-replies.pcap");
        const int count = 1_000_000;
        WriteFlood(pcap, count, new Random(7));
        try
        {
            var macs = string.Join(" or ", lab.Macs.Values.Select(m => $"ether src {m}"));
            using (await Shell.CaptureAsync(lab.ClientNs, "-n", "-w", replies, "-U",
                $"({macs}) and ((arp and arp[6:2] = 2) or (icmp6 and ip6[40] = 136))"))
            {
                var clock = Stopwatch.StartNew();
                var sent = await Shell.MustAsync("ip", "netns", "exec", lab.ClientNs, "tcpreplay", "--topspeed", "-i", "eth0", pcap);
                output.WriteLine($"{count:N0} frames replayed in {clock.Elapsed.TotalSeconds:F1} s: {Regex.Match(sent, @"Actual: .*").Value}");
                await Task.Delay(1000);
            }

            // Every reply and advertisement the nodes sent during the flood was for an address they hold.
            var (_, text) = await Shell.RunAsync("tcpdump", "-r", replies, "-n");
            var answered = Answered().Matches(text).Select(m => m.Groups["address"].Value).ToList();
            var foreign = answered.Where(a => !owned.Contains(a)).Distinct().ToList();
            output.WriteLine($"{answered.Count:N0} replies and advertisements from the nodes, for {answered.Distinct().Count()} addresses; for addresses nobody holds: {foreign.Count}");
            Assert.True(foreign.Count == 0, "answered for " + string.Join(", ", foreign));
            Assert.Contains(ip, answered);
        }
        finally
        {
            File.Delete(pcap);
            File.Delete(replies);
        }

        // Still running, still answering.
        Assert.All(Lab.Nodes, n => Assert.False(lab.Speaker(n).HasExited, $"speaker {n} exited"));
        Assert.Equal(lab.Macs[owner], await lab.ArpingAsync(ip));
    }

    private async Task AssertOneAnswerAsync(string ip) => Assert.Single(await lab.ArpAnswerersAsync(ip));

    /// <summary>
    /// A pcap file of questions for addresses in the lab's ranges (most held by nobody), mutated and cut
    /// short, and plain noise, from random senders.
    /// </summary>
    private static void WriteFlood(string path, int count, Random random)
    {
        var frame = new byte[128];
        Pcap.Write(path, Enumerable.Range(0, count).Select(_ => frame[..Build(frame, random)]));
    }

    private static int Build(byte[] frame, Random random)
    {
        random.NextBytes(frame);
        frame[6] = (byte)((frame[6] & 0xfe) | 0x02); // a unicast, locally administered sender: never a node
        var kind = random.Next(4);
        int length;
        if (kind == 0)
        {
            // ARP request for 192.0.2.x, broadcast.
            frame.AsSpan(0, 6).Fill(0xff);
            BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), 0x0806);
            Convert.FromHexString("0001080006040001").CopyTo(frame, 14);
            frame.AsSpan(6, 6).CopyTo(frame.AsSpan(22));
            Convert.FromHexString("c00002").CopyTo(frame, 28);
            frame[31] = (byte)random.Next(150, 190); // senders nobody else uses
            Convert.FromHexString("c00002").CopyTo(frame, 38);
            length = 42;
        }
        else if (kind == 1)
        {
            // Neighbor Solicitation for 2001:db8::2xx to its solicited-node group (checksum usually wrong after mutation).
            Convert.FromHexString("3333ff000200").CopyTo(frame, 0);
            BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), 0x86dd);
            Convert.FromHexString("6000000000183aff" + "20010db8000000000000000000000100" + "ff0200000000000000000001ff000200"
                + "87000000" + "00000000" + "20010db8000000000000000000000200").CopyTo(frame, 14);
            frame[77] = (byte)random.Next(0x00, 0x30);
            frame[53] = frame[77];
            BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(56), Speaker.Frames.IcmpV6Checksum(frame.AsSpan(22, 16), frame.AsSpan(38, 16), frame.AsSpan(54, 24)));
            length = 78;
        }
        else
        {
            // Noise with an ARP or IPv6 type, or none.
            length = random.Next(14, frame.Length);
            if (kind == 2)
            {
                BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), random.Next(2) == 0 ? (ushort)0x0806 : (ushort)0x86dd);
            }

            return length;
        }

        // Mutate: a few bytes changed, sometimes cut short.
        for (var m = random.Next(0, 3); m > 0; m--)
        {
            frame[random.Next(12, length)] = (byte)random.Next(256);
        }

        return random.Next(6) == 0 ? random.Next(14, length) : length;
    }

    // "ARP, Reply 192.0.2.217 is-at ..." and "ICMP6, neighbor advertisement, tgt is 2001:db8::200, ..."
    [GeneratedRegex(@"(?:Reply (?<address>\S+) is-at|tgt is (?<address>[0-9a-f:]+),)")]
    private static partial Regex Answered();
}

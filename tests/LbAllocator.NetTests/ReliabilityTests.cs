using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using k8s;
using Xunit.Abstractions;

namespace LbAllocator.NetTests;

/// <summary>
/// The speakers under trouble: owners killed twenty times, an owner cut off from the API server, API
/// connections reset and nodes cut in turn, a flood of random and broken frames. Figures go to the test output.
/// </summary>
[Collection(LabCollection.Name)]
public partial class ReliabilityTests(Lab lab, ITestOutputHelper output) : IAsyncLifetime
{
    private readonly Lab.RefusalCheck _rbac = lab.CheckRefusals();

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _rbac.AssertNoneAsync();

    [RealApiFact]
    public async Task Twenty_owner_kills_never_have_two_nodes_answering()
    {
        const string ip = "192.0.2.212";
        await lab.CreateServiceAsync("flap", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        using var watch = await ArpWatch.StartAsync(lab, ip);
        var failovers = new List<double>();
        for (var kill = 0; kill < 20; kill++)
        {
            var clock = Stopwatch.StartNew();
            await lab.Speaker(owner).SignalAsync("KILL");
            var successor = await lab.WaitForArpOwnerAsync(ip, not: owner, timeout: TimeSpan.FromSeconds(10));
            failovers.Add(clock.Elapsed.TotalSeconds);
            // The killed node comes back (and, being the address's first choice, takes it back).
            lab.StartSpeaker(owner);
            await lab.WaitForSpeakersAsync([owner]);
            owner = await lab.WaitForArpOwnerAsync(ip);
            await Task.Delay(500);
        }

        await Task.Delay(500);
        var (doubled, silent, asked) = watch.Tally();
        failovers.Sort();
        output.WriteLine($"20 SIGKILLs of the owner (each followed by the node's return): {asked} ARP requests every 20 ms; "
            + $"two nodes answering: {doubled * 1000:F0} ms in all; nobody answering: {silent:F2} s in all; "
            + $"failover min/median/max {failovers[0]:F2}/{failovers[10]:F2}/{failovers[^1]:F2} s");
        Assert.True(asked > 1000, $"only {asked} questions were seen");
        Assert.Equal(0, doubled);
    }

    [RealApiFact]
    public async Task An_owner_cut_off_from_the_api_falls_silent_before_another_answers()
    {
        const string ip = "192.0.2.213";
        await lab.CreateServiceAsync("partition", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        using var watch = await ArpWatch.StartAsync(lab, ip);
        await Task.Delay(1000);
        await lab.CutApiAsync(owner);
        try
        {
            // The others see its lease expire; it must have stopped answering by then.
            await lab.WaitForArpOwnerAsync(ip, not: owner, timeout: TimeSpan.FromSeconds(10));
            await Task.Delay(2000);
        }
        finally
        {
            await lab.RestoreApiAsync(owner);
        }

        await lab.WaitForArpOwnerAsync(ip);
        await Task.Delay(1000);
        var (doubled, silent, asked) = watch.Tally();
        output.WriteLine($"owner cut off from the API server and back: {asked} ARP requests; two nodes answering {doubled * 1000:F0} ms; nobody answering {silent:F2} s");
        Assert.True(asked > 200, $"only {asked} questions were seen");
        Assert.Equal(0, doubled);
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

    private async Task AssertOneAnswerAsync(string ip)
    {
        var (_, text) = await Shell.RunAsync("ip", "netns", "exec", lab.ClientNs, "arping", "-b", "-c", "3", "-w", "3", "-I", "eth0", ip);
        var macs = Regex.Matches(text, @"\[([0-9A-Fa-f:]{17})\]").Select(m => m.Groups[1].Value.ToLowerInvariant()).Distinct().ToList();
        Assert.Single(macs);
    }

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

using System.Buffers.Binary;
using System.Globalization;
using k8s;
using Xunit.Abstractions;

namespace LbAllocator.NetTests;

/// <summary>
/// A segment with an intruder on it, or a switch that drops the speakers' messages: replayed and forged speaker
/// messages, a flood of them, a node deaf to them, a forged ARP claim. Whatever a frame does, no address is answered
/// twice, none moves, and a failover stays under a second. Questions every 20 ms (<see cref="ArpWatch"/>).
/// </summary>
[Collection(LabCollection.Name)]
public class HostileLanTests(Lab lab, ITestOutputHelper output) : IAsyncLifetime
{
    private readonly Lab.RefusalCheck _rbac = lab.CheckRefusals();

    public Task InitializeAsync() => lab.RestoreNodesAsync();

    public Task DisposeAsync() => _rbac.AssertNoneAsync();

    [RealApiFact]
    public async Task A_killed_owner_fails_over_within_a_second_while_an_intruder_replays_its_captured_messages()
    {
        const string ip = "192.0.2.228";
        await lab.CreateServiceAsync("replayed", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        var captured = await lab.CaptureSpeakerFramesAsync(owner, TimeSpan.FromSeconds(2));
        var frames = Pcap.Read(captured);
        Assert.True(frames.Count > 20, $"only {frames.Count} of {owner}'s messages captured: " + string.Join(", ", frames.GroupBy(f => Convert.ToHexString(f, 0, 6) + "/" + f[19]).Select(g => $"{g.Key} x{g.Count()}")));
        await using var intruder = await lab.AddIntruderAsync("replay");
        using var watch = await ArpWatch.StartAsync(lab, ip);
        await Task.Delay(500);

        var killed = DateTimeOffset.UtcNow;
        await lab.Speaker(owner).SignalAsync("KILL");
        // Its beats to its neighbours, again and again: ten times their rate, from the moment it died.
        using (Lab.Replay(intruder, captured, pps: 400))
        {
            var failover = await watch.TakeoverAsync(lab.Macs[owner], killed, TimeSpan.FromSeconds(5));
            await Task.Delay(TimeSpan.FromSeconds(3));
            output.WriteLine($"owner SIGKILLed while its {frames.Count} captured messages were replayed at 400/s: failover {failover:F2} s; answered twice {watch.AnsweredTwice()} requests");
            Assert.True(failover <= 1.0, $"failover took {failover:F2} s");
        }

        Assert.Equal(0, watch.AnsweredTwice());
        lab.StartSpeaker(owner);
        await lab.WaitForSpeakersAsync([owner]);
    }

    [RealApiFact]
    public async Task Forged_leave_messages_for_a_live_owner_and_a_replay_of_its_old_one_move_nothing()
    {
        const string ip = "192.0.2.229";
        await lab.CreateServiceAsync("forged", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);

        // A genuine Leave of the owner, from its last SIGTERM; then the owner back, with a new epoch.
        var leaving = lab.CaptureSpeakerFramesAsync(owner, TimeSpan.FromSeconds(3));
        await Task.Delay(500);
        await lab.Speaker(owner).SignalAsync("TERM");
        Assert.True(await lab.Speaker(owner).WaitForExitAsync(TimeSpan.FromSeconds(10)));
        var genuine = Pcap.Read(await leaving).Where(f => f.Length > 19 && f[19] == 3).ToList(); // kind 3: Leave
        Assert.NotEmpty(genuine);
        lab.StartSpeaker(owner);
        await lab.WaitForSpeakersAsync([owner]);
        Assert.Equal(owner, await lab.WaitForArpOwnerAsync(ip));

        // Forged: the owner's current name and epoch (from one of its beats) in a Leave the forger cannot sign.
        var beat = Pcap.Read(await lab.CaptureSpeakerFramesAsync(owner, TimeSpan.FromMilliseconds(500))).First(f => f[19] == 1);
        var forged = Forge(beat, kind: 3, bodyLength: 0);
        var file = Path.Combine(Path.GetTempPath(), $"lbt{Environment.ProcessId}-leave.pcap");
        Pcap.Write(file, [.. genuine, forged]);
        var rejected = await RejectedAsync();
        await using var intruder = await lab.AddIntruderAsync("forge");
        using var watch = await ArpWatch.StartAsync(lab, ip);
        using (Lab.Replay(intruder, file, pps: 20)) // a frame every 50 ms
        {
            await Task.Delay(TimeSpan.FromSeconds(10));
        }

        var (doubled, silent, asked) = watch.Tally();
        output.WriteLine($"forged and replayed Leave messages every 50 ms for 10 s: {asked} requests; answered by {string.Join(", ", watch.Answerers())} (owner {lab.Macs[owner]}); nobody answering {silent:F2} s; rejected by the others {await RejectedAsync() - rejected}");
        Assert.Equal(0, watch.AnsweredTwice());
        Assert.Equal([lab.Macs[owner]], watch.Answerers());
        Assert.Equal(0, watch.LongestSilence());
        Assert.True(await RejectedAsync() - rejected >= 50, "the forged ones are counted as rejected");
        File.Delete(file);
    }

    [RealApiFact]
    public async Task A_flood_of_speaker_frames_from_random_macs_moves_nothing_and_memory_stays_flat()
    {
        const string ip = "192.0.2.230";
        await lab.CreateServiceAsync("flooded", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        var beat = Pcap.Read(await lab.CaptureSpeakerFramesAsync(owner, TimeSpan.FromMilliseconds(500))).First(f => f[19] == 1);
        // Every kind, from random MACs, broadcast and to each node: each one authenticated before it is dropped.
        var random = new Random(25);
        var frames = Enumerable.Range(0, 20_000).Select(i => Flood(beat, random, i % 7 == 0 ? Lab.Nodes[i % 3] : null)).ToList();
        var file = Path.Combine(Path.GetTempPath(), $"lbt{Environment.ProcessId}-flood.pcap");
        Pcap.Write(file, frames);
        var rss = Lab.Nodes.ToDictionary(n => n, lab.SpeakerRssKb);
        var rejected = await RejectedAsync();
        await using var intruder = await lab.AddIntruderAsync("flood");
        using var watch = await ArpWatch.StartAsync(lab, ip);
        var sent = await PacketsAsync(intruder);
        using (Lab.Replay(intruder, file, pps: 50_000))
        {
            await Task.Delay(TimeSpan.FromSeconds(60));
        }

        var rate = (await PacketsAsync(intruder) - sent) / 60.0;
        await Task.Delay(TimeSpan.FromSeconds(2));
        var after = Lab.Nodes.ToDictionary(n => n, lab.SpeakerRssKb);
        var (_, silent, asked) = watch.Tally();
        output.WriteLine($"flood of 0x88B5 from random MACs for 60 s at {rate:N0} frames/s: {asked} requests; answered twice {watch.AnsweredTwice()}; answered by {string.Join(", ", watch.Answerers())} (owner {lab.Macs[owner]}); "
            + $"nobody answering {silent:F2} s in all, longest {watch.LongestSilence():F2} s; rejected {await RejectedAsync() - rejected}; RSS KiB "
            + string.Join(", ", Lab.Nodes.Select(n => $"{n} {rss[n]} -> {after[n]}")));
        Assert.True(rate > 10_000, $"the flood reached only {rate:N0} frames/s");
        Assert.Equal(0, watch.AnsweredTwice());
        Assert.Equal([lab.Macs[owner]], watch.Answerers());
        Assert.All(Lab.Nodes, n => Assert.True(after[n] - rss[n] < 16 * 1024 && after[n] < 128 * 1024, $"{n}: RSS {rss[n]} KiB before, {after[n]} KiB after"));
        File.Delete(file);
    }

    [RealApiFact]
    public async Task A_node_deaf_to_the_speakers_at_its_switch_port_takes_nothing_and_moves_nothing()
    {
        const string ip = "192.0.2.231";
        await lab.CreateServiceAsync("deaf", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        var deaf = Lab.Nodes.First(n => n != owner);
        using var watch = await ArpWatch.StartAsync(lab, ip);
        await Task.Delay(500);
        await using (await lab.DropSpeakerFramesTowardsAsync(deaf))
        {
            await Task.Delay(TimeSpan.FromSeconds(20));
            var (code, body) = await lab.SpeakerStatusAsync(deaf, "/readyz");
            output.WriteLine($"{deaf} deaf to the speakers for 20 s: readyz {code} {body}");
            Assert.Equal(503, code); // it says it is not answering, and why
        }

        var (_, silent, asked) = watch.Tally();
        output.WriteLine($"{deaf} deaf to the speakers at its switch port for 20 s: {asked} requests for {owner}'s address; answered twice {watch.AnsweredTwice()}; nobody answering {silent:F2} s");
        Assert.Equal(0, watch.AnsweredTwice());
        Assert.Equal([lab.Macs[owner]], watch.Answerers());
        Assert.Equal(0, watch.LongestSilence());
        await lab.WaitForSpeakersAsync([deaf]); // it hears again, and joins again
    }

    [RealApiFact]
    public async Task A_forged_arp_claim_costs_the_owner_no_silence_and_the_clients_entry_points_back_within_a_second()
    {
        const string ip = "192.0.2.232";
        await lab.CreateServiceAsync("claimed", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        await using var intruder = await lab.AddIntruderAsync("claim");
        await lab.SendFromClientAsync(ip); // the client has the owner in its neighbour table
        Assert.Equal(lab.Macs[owner], await ClientEntryAsync(ip));
        var claim = Claim(intruder.Mac, ip);
        var file = Path.Combine(Path.GetTempPath(), $"lbt{Environment.ProcessId}-claim.pcap");
        Pcap.Write(file, [claim, claim, claim]);
        using var watch = await ArpWatch.StartAsync(lab, ip);
        await Task.Delay(500);

        var claimed = DateTimeOffset.UtcNow;
        await Shell.MustAsync("ip", "netns", "exec", intruder.Namespace, "tcpreplay", "-q", "-i", "eth0", file);
        string? entry = null;
        while (DateTimeOffset.UtcNow - claimed < TimeSpan.FromSeconds(1) && (entry = await ClientEntryAsync(ip)) != lab.Macs[owner])
        {
            await Task.Delay(20);
        }

        var back = DateTimeOffset.UtcNow - claimed;
        await Task.Delay(TimeSpan.FromSeconds(3));
        output.WriteLine($"forged ARP claim of {ip} (three frames): client's entry back on the owner after {back.TotalSeconds:F2} s; answered twice {watch.AnsweredTwice()}; nobody answering {watch.LongestSilence():F2} s");
        Assert.Equal(lab.Macs[owner], entry);
        Assert.Equal(lab.Macs[owner], await ClientEntryAsync(ip));
        Assert.Equal(0, watch.AnsweredTwice());
        Assert.Equal(0, watch.LongestSilence());
        Assert.True((await lab.SpeakerMetricsAsync(owner))["lballocator_speaker_addresses_defended_total"] >= 1);
        File.Delete(file);
    }

    /// <summary>A frame copied from a genuine one (its name, epoch, key id), of another kind, that the forger cannot sign.</summary>
    private static byte[] Forge(byte[] genuine, byte kind, int bodyLength)
    {
        var nameLength = genuine[14 + 28];
        var length = 28 + 1 + nameLength + bodyLength + 16;
        var frame = new byte[Math.Max(60, 14 + length)];
        genuine.AsSpan(0, 14 + 29 + nameLength).CopyTo(frame);
        frame.AsSpan(0, 6).Fill(0xff);
        frame[19] = kind;
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(20), (ushort)length);
        BinaryPrimitives.WriteUInt64BigEndian(frame.AsSpan(14 + 20), ulong.MaxValue - 1); // a sequence nobody has seen
        Random.Shared.NextBytes(frame.AsSpan(14 + length - 16, 16));
        return frame;
    }

    /// <summary>A flood frame: a genuine beat's header with a random source MAC, kind, sequence and tag, broadcast or to a node.</summary>
    private byte[] Flood(byte[] beat, Random random, string? to)
    {
        var frame = (byte[])beat.Clone();
        var mac = new byte[6];
        random.NextBytes(mac);
        mac[0] = (byte)((mac[0] & 0xfe) | 0x02); // unicast, locally administered
        mac.CopyTo(frame, 6);
        if (to is null)
        {
            frame.AsSpan(0, 6).Fill(0xff);
            frame[19] = (byte)random.Next(2, 7);
        }
        else
        {
            Convert.FromHexString(lab.Macs[to].Replace(":", "", StringComparison.Ordinal)).CopyTo(frame, 0);
        }

        random.NextBytes(frame.AsSpan(14 + 20, 8));
        random.NextBytes(frame.AsSpan(frame.Length - 16, 16));
        return frame;
    }

    /// <summary>A gratuitous ARP reply from <paramref name="mac"/> saying it holds <paramref name="ip"/>.</summary>
    private static byte[] Claim(string mac, string ip)
    {
        var from = Convert.FromHexString(mac.Replace(":", "", StringComparison.Ordinal));
        var address = System.Net.IPAddress.Parse(ip).GetAddressBytes();
        var frame = new byte[42];
        frame.AsSpan(0, 6).Fill(0xff);
        from.CopyTo(frame, 6);
        Convert.FromHexString("0806" + "0001080006040002").CopyTo(frame, 12);
        from.CopyTo(frame, 22);
        address.CopyTo(frame, 28);
        frame.AsSpan(32, 6).Fill(0xff);
        address.CopyTo(frame, 38);
        return frame;
    }

    private async Task<string?> ClientEntryAsync(string ip)
    {
        var (_, entry) = await Shell.RunAsync("ip", "-n", lab.ClientNs, "neigh", "show", "to", ip, "dev", "eth0");
        var at = entry.IndexOf("lladdr ", StringComparison.Ordinal);
        return at < 0 ? null : entry.Substring(at + 7, 17).ToLowerInvariant();
    }

    private async Task<double> RejectedAsync()
    {
        var total = 0.0;
        foreach (var node in Lab.Nodes)
        {
            total += (await lab.SpeakerMetricsAsync(node)).Where(m => m.Key.StartsWith("lballocator_speaker_heartbeats_rejected_total", StringComparison.Ordinal)).Sum(m => m.Value);
        }

        return total;
    }

    private static async Task<long> PacketsAsync(Lab.ForeignHost host) =>
        long.Parse((await Shell.MustAsync("ip", "netns", "exec", host.Namespace, "cat", "/sys/class/net/eth0/statistics/tx_packets")).Trim(), CultureInfo.InvariantCulture);
}

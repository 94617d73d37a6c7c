using System.Globalization;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace LbAllocator.NetTests;

/// <summary>
/// What keeps an address reachable beyond answering: the periodic refresh, and IPv6 as real switches and hosts do it
/// (solicited-node group membership for switches that snoop MLD, advertisements from the link-local address that a
/// neighbour's kernel takes into its table, unicast solicitations that re-check a cached entry).
/// </summary>
[Collection(LabCollection.Name)]
public partial class NeighborDiscoveryTests(Lab lab, ITestOutputHelper output) : IAsyncLifetime
{
    private readonly Lab.RefusalCheck _rbac = lab.CheckRefusals();

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _rbac.AssertNoneAsync();

    [RealApiFact]
    public async Task The_owner_announces_its_address_again_every_refresh_interval_from_its_link_local_address()
    {
        const string ip = "2001:db8::21a";
        await lab.CreateServiceAsync("refresh", ip: ip, families: ["IPv6"]);
        var owner = await lab.WaitForNdpOwnerAsync(ip);
        var linkLocal = await lab.LinkLocalAsync(owner);
        // Past the takeover burst (5 rounds a second apart): what is left is the refresh.
        await Task.Delay(TimeSpan.FromSeconds(6));
        using var capture = await Shell.CaptureAsync(lab.ClientNs, "-n", "-e", "-l", "-tt", "icmp6 and (ip6[40] = 135 or ip6[40] = 136)");
        await Task.Delay(Lab.RefreshInterval * 4.5);

        // Answers to a solicitation (the verifier's probes, every 10 s and after a takeover) are not refreshes.
        var asked = capture.Lines.Select(l => SolicitationLine().Match(l)).Where(m => m.Success && m.Groups["tgt"].Value == ip)
            .Select(m => double.Parse(m.Groups["at"].Value, CultureInfo.InvariantCulture)).ToList();
        var sent = Advertisements(capture.Lines).Where(a => a.Target == ip && !asked.Any(at => a.At - at is >= 0 and < 0.1)).ToList();
        output.WriteLine(string.Join("\n", sent));
        Assert.All(sent, a => Assert.Equal((lab.Macs[owner], "33:33:00:00:00:01", linkLocal, "ff02::1"), (a.FromMac, a.ToMac, a.Source, a.Destination)));
        Assert.InRange(sent.Count, 4, 5);
        var gaps = sent.Zip(sent.Skip(1), (a, b) => b.At - a.At).ToList();
        Assert.All(gaps, gap => Assert.InRange(gap, Lab.RefreshInterval.TotalSeconds - 0.5, Lab.RefreshInterval.TotalSeconds + 0.5));
    }

    [RealApiFact]
    public async Task The_owner_joins_the_solicited_node_group_of_its_address_and_leaves_it_when_the_address_moves()
    {
        const string ip = "2001:db8::21b";
        const string group = "ff02::1:ff00:21b";
        await lab.CreateServiceAsync("mld", ip: ip, families: ["IPv6"]);
        var owner = await lab.WaitForNdpOwnerAsync(ip);
        await JoinedAsync(owner, group, true);
        foreach (var other in Lab.Nodes.Where(n => n != owner))
        {
            Assert.DoesNotContain(group, await lab.MulticastGroupsAsync(other));
        }

        // The owner is excluded, its speaker runs on: it must leave the group itself, and the successor join it.
        await lab.SetExcludedAsync(owner, true);
        try
        {
            var successor = await lab.WaitForNdpOwnerAsync(ip, not: owner);
            await JoinedAsync(successor, group, true);
            await JoinedAsync(owner, group, false);
        }
        finally
        {
            await lab.SetExcludedAsync(owner, false);
        }
    }

    [RealApiFact]
    public async Task A_switch_that_snoops_mld_forwards_the_solicitation_to_the_owner_alone_and_it_answers()
    {
        const string ip = "2001:db8::21c";
        const string group = "ff02::1:ff00:21c";
        await lab.CreateServiceAsync("snooping", ip: ip, families: ["IPv6"]);
        var owner = await lab.WaitForNdpOwnerAsync(ip);
        var other = Lab.Nodes.First(n => n != owner);
        await lab.SetMldSnoopingAsync(true);
        try
        {
            // The bridge learnt the owner's membership from the MLD report its kernel sent on the join.
            await Eventually.HoldsAsync(async () =>
            {
                var groups = await lab.BridgeGroupsAsync();
                return Regex.IsMatch(groups, $@"port {Lab.NodePort(owner)} grp {group}\b") ? null : $"the bridge has no member port for {group}: {groups}";
            }, TimeSpan.FromSeconds(10));

            using var elsewhere = await Shell.CaptureAsync(lab.NodeNs(other), "-n", "-l", "icmp6 and ip6[40] = 135");
            // Switching snooping on can take a moment to settle on the bridge; every attempt counts for the check below.
            await Eventually.HoldsAsync(async () => await lab.NdpAsync(ip) is var mac && mac == lab.Macs[owner] ? null : $"{ip} answered by {mac ?? "nobody"}", TimeSpan.FromSeconds(10));
            await Task.Delay(500);
            // Snooping is in force: the solicitation reached the owner's port and no other node's.
            Assert.DoesNotContain(elsewhere.Lines, l => l.Contains($"who has {ip}", StringComparison.Ordinal));
        }
        finally
        {
            await lab.SetMldSnoopingAsync(false);
        }
    }

    [RealApiFact]
    public async Task A_neighbours_kernel_takes_the_answers_into_its_table_and_its_unicast_recheck_is_answered()
    {
        const string ip = "2001:db8::21d";
        await lab.CreateServiceAsync("unicast-ns", ip: ip, families: ["IPv6"]);
        var owner = await lab.WaitForNdpOwnerAsync(ip);
        var (mac, linkLocal) = (lab.Macs[owner], await lab.LinkLocalAsync(owner));
        using var capture = await Shell.CaptureAsync(lab.ClientNs, "-n", "-e", "-l", "-tt", "icmp6 and (ip6[40] = 135 or ip6[40] = 136)");

        // The client's kernel resolves the address (a multicast solicitation) and keeps the answer: an
        // advertisement from the owner's link-local address is one it accepts. The entry finding the owner left
        // may have gone stale meanwhile (re-checked only after 5 s), so it starts from none.
        await Shell.MustAsync("ip", "-n", lab.ClientNs, "-6", "neigh", "flush", "to", ip, "dev", "eth0");
        await lab.SendFromClientAsync(ip);
        await NeighborAsync(ip, mac, "REACHABLE");

        // A stale entry is re-checked with a unicast solicitation to the cached MAC (after delay_first_probe_time,
        // 5 s): answered, the entry is reachable again; unanswered, it would fail after three probes.
        // The kernel skips the probe when the entry was confirmed lately, so this is repeated until it has re-checked.
        for (var attempt = 0; attempt < 3 && !capture.Lines.Any(l => IsUnicastSolicitation(l, ip, mac)); attempt++)
        {
            await Shell.MustAsync("ip", "-n", lab.ClientNs, "-6", "neigh", "change", ip, "lladdr", mac, "dev", "eth0", "nud", "stale");
            await lab.SendFromClientAsync(ip);
            await NeighborAsync(ip, mac, "REACHABLE", TimeSpan.FromSeconds(15));
            await Task.Delay(100); // tcpdump prints what it saw
        }

        Assert.Contains(capture.Lines, l => IsUnicastSolicitation(l, ip, mac));
        Assert.Contains(Advertisements(capture.Lines), a => a.Target == ip && a.FromMac == mac && a.ToMac == lab.ClientMac && a.Source == linkLocal && a.Destination != "ff02::1");
    }

    [RealApiFact]
    public async Task Without_a_link_local_address_the_owner_advertises_from_the_address_itself_and_says_so_once()
    {
        const string ip = "2001:db8::21e";
        const string warning = "eth0 has no IPv6 link-local address";
        await lab.CreateServiceAsync("no-link-local", ip: ip, families: ["IPv6"]);
        var owner = await lab.WaitForNdpOwnerAsync(ip);
        var linkLocal = await lab.LinkLocalAsync(owner);
        var warnedBefore = lab.SpeakerLog(owner).Count(l => l.Contains(warning, StringComparison.Ordinal));
        using var capture = await Shell.CaptureAsync(lab.ClientNs, "-n", "-e", "-l", "-tt", "icmp6 and ip6[40] = 136");
        await Shell.MustAsync("ip", "-n", lab.NodeNs(owner), "-6", "addr", "del", $"{linkLocal}/64", "dev", "eth0");
        try
        {
            // The speaker reads the address again at its next pass or gratuitous round (every 2 s here, at the latest).
            await Eventually.HoldsAsync(async () =>
                await lab.NdpAsync(ip) == lab.Macs[owner] && Advertisements(capture.Lines).Any(a => a.Target == ip && a.Source == ip)
                    ? null : "no advertisement from the address itself: " + string.Join(" | ", capture.Lines), TimeSpan.FromSeconds(10));
            await Task.Delay(Lab.RefreshInterval * 2); // more rounds that find no link-local address
            Assert.Equal(warnedBefore + 1, lab.SpeakerLog(owner).Count(l => l.Contains(warning, StringComparison.Ordinal)));
        }
        finally
        {
            await Shell.MustAsync("ip", "-n", lab.NodeNs(owner), "-6", "addr", "add", $"{linkLocal}/64", "dev", "eth0");
        }

        // Back: from the link-local address again.
        var back = capture.Lines.Count;
        await Eventually.HoldsAsync(async () =>
            await lab.NdpAsync(ip) == lab.Macs[owner] && Advertisements(capture.Lines.Skip(back)).Any(a => a.Target == ip && a.Source == linkLocal)
                ? null : "no advertisement from the link-local address again", TimeSpan.FromSeconds(10));
    }

    private async Task JoinedAsync(string node, string group, bool joined) =>
        await Eventually.HoldsAsync(async () =>
        {
            var groups = await lab.MulticastGroupsAsync(node);
            return groups.Contains(group) == joined ? null : $"{node}'s eth0 {(joined ? "has not joined" : "is still in")} {group}: {string.Join(", ", groups)}";
        }, TimeSpan.FromSeconds(10));

    private async Task NeighborAsync(string ip, string mac, string state, TimeSpan? timeout = null) =>
        await Eventually.HoldsAsync(async () =>
        {
            var entry = (await Shell.MustAsync("ip", "-n", lab.ClientNs, "-6", "neigh", "show", ip, "dev", "eth0")).Trim();
            return entry.Contains($"lladdr {mac}", StringComparison.Ordinal) && entry.Contains(state, StringComparison.Ordinal) ? null : $"the client's entry for {ip}: \"{entry}\"";
        }, timeout ?? TimeSpan.FromSeconds(5));

    private bool IsUnicastSolicitation(string line, string ip, string mac) =>
        line.Contains($"{lab.ClientMac} > {mac}", StringComparison.Ordinal) && line.Contains($"> {ip}: ICMP6, neighbor solicitation, who has {ip}", StringComparison.Ordinal);

    private static IEnumerable<Advertisement> Advertisements(IEnumerable<string> tcpdump) =>
        tcpdump.Select(l => AdvertisementLine().Match(l)).Where(m => m.Success).Select(m => new Advertisement(
            double.Parse(m.Groups["at"].Value, CultureInfo.InvariantCulture), m.Groups["from"].Value, m.Groups["to"].Value,
            m.Groups["src"].Value, m.Groups["dst"].Value, m.Groups["tgt"].Value));

    private sealed record Advertisement(double At, string FromMac, string ToMac, string Source, string Destination, string Target);

    // tcpdump -n -e -tt: "1764223456.123456 02:..:01 > 33:33:00:00:00:01, ethertype IPv6 (0x86dd), length 86:
    // fe80::1 > ff02::1: ICMP6, neighbor advertisement, tgt is 2001:db8::21a, length 32"
    [GeneratedRegex(@"^(?<at>\d+\.\d+) (?<from>[0-9a-f:]{17}) > (?<to>[0-9a-f:]{17}), .*?: (?<src>[0-9a-f:]+) > (?<dst>[0-9a-f:]+): ICMP6, neighbor advertisement, tgt is (?<tgt>[0-9a-f:]+),")]
    private static partial Regex AdvertisementLine();

    // "1764223456.123456 02:..:09 > 33:33:ff:00:02:1a, ethertype IPv6 (0x86dd), length 78: :: > ff02::1:ff00:21a: ICMP6, neighbor solicitation, who has 2001:db8::21a, length 24"
    [GeneratedRegex(@"^(?<at>\d+\.\d+) .*: ICMP6, neighbor solicitation, who has (?<tgt>[0-9a-f:]+),")]
    private static partial Regex SolicitationLine();
}

using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.Speaker.Lan;

namespace LbAllocator.Speaker.Tests;

/// <summary>
/// The whole speaker loop of node-a in memory on a fake clock (<see cref="SpeakerRig"/>): its objects in memory, its
/// peers real memberships on a simulated segment, what it does on the wire and to the API recorded.
/// </summary>
public class SpeakerReconcilerTests
{
    private static readonly TimeSpan Second = TimeSpan.FromSeconds(1);

    private static string[] Addresses(int count) => [.. Enumerable.Range(10, count).Select(i => $"192.0.2.{i}")];

    [Fact]
    public async Task Speakers_share_the_addresses_and_a_dead_peers_are_taken_at_once_within_a_second_without_a_probe()
    {
        await using var rig = await SpeakerRig.StartAsync(["node-b", "node-c"]);
        var ips = Addresses(12);
        foreach (var ip in ips)
        {
            rig.AddService($"web{ip.Split('.')[^1]}", ip);
        }

        await rig.UntilAsync(() => ips.Count(rig.Answers) is > 0 and < 12, Second, "node-a answers its share");
        var ours = ips.Where(rig.Answers).ToList();
        var winners = ips.ToDictionary(ip => ip, ip => SpeakerPlanWinner(ip, ["node-a", "node-b", "node-c"]));
        Assert.Equal(ips.Where(ip => winners[ip] == "node-a"), ours);
        var probes = rig.Watch.Probes.Count;

        rig.Lan.Nodes["node-b"].Crash();
        var failover = await rig.UntilAsync(() => ips.Where(ip => winners[ip] == "node-b").All(ip => SpeakerPlanWinner(ip, ["node-a", "node-c"]) != "node-a" || rig.Answers(ip)),
            2 * Second, "node-b's share that node-a now wins is answered");
        Assert.True(failover < TimeSpan.FromMilliseconds(800), $"taken over after {failover}");
        Assert.Equal(probes, rig.Watch.Probes.Count); // taken from a dead speaker: no probe
        Assert.Contains("ok lan: member of the segment, answering; 1 of 1 ring neighbours heard", rig.Readiness, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_peer_joining_gets_what_it_wins_back_at_once_and_this_node_takes_from_a_live_peer_only_after_a_probe()
    {
        await using var rig = await SpeakerRig.StartAsync(["node-c"]);
        rig.Nodes.Put(new V1Node { Metadata = new V1ObjectMeta { Name = "node-b" } });
        var ips = Addresses(12);
        foreach (var ip in ips)
        {
            rig.AddService($"web{ip.Split('.')[^1]}", ip);
        }

        string[] withoutB = ["node-a", "node-c"], withB = ["node-a", "node-b", "node-c"];
        var ours = ips.Where(ip => SpeakerPlanWinner(ip, withoutB) == "node-a").ToList();
        await rig.UntilAsync(() => ours.All(rig.Answers), Second, "node-a answers its share");

        rig.Lan.Add("node-b");
        await rig.UntilAsync(() => rig.Membership.View().Alive.Contains("node-b"), 3 * Second, "node-b joins");
        // node-a lets go at once of what node-b wins (node-b probes before it answers: break before make).
        var theirs = ours.Where(ip => SpeakerPlanWinner(ip, withB) == "node-b").ToList();
        Assert.NotEmpty(theirs);
        await rig.IdleAsync();
        Assert.All(theirs, ip => Assert.False(rig.Answers(ip)));
        Assert.All(ours.Except(theirs), ip => Assert.True(rig.Answers(ip)));

        // node-b stops (SIGTERM): node-a takes back its share of node-b's at once, without a probe.
        var probes = rig.Watch.Probes.Count;
        rig.Lan.Nodes["node-b"].Terminate();
        await rig.UntilAsync(() => ours.All(rig.Answers), TimeSpan.FromMilliseconds(20), "node-a takes its share back");
        Assert.Equal(probes, rig.Watch.Probes.Count);
    }

    [Fact]
    public async Task An_api_server_gone_quiet_changes_nothing_on_the_wire()
    {
        await using var rig = await SpeakerRig.StartAsync(["node-b"]);
        var ips = Addresses(6);
        foreach (var ip in ips)
        {
            rig.AddService($"web{ip.Split('.')[^1]}", ip);
        }

        await rig.UntilAsync(() => ips.Any(rig.Answers), Second, "node-a answers its share");
        var ours = ips.Where(rig.Answers).ToList();

        foreach (var source in new Action<bool>[] { h => rig.Services.Hang = h, h => rig.Nodes.Hang = h, h => rig.Statuses.Hang = h })
        {
            source(true);
        }

        await rig.RunAsync(30 * Second);
        Assert.Equal(ours, ips.Where(rig.Answers));
        Assert.True(rig.Membership.View().Alive.SetEquals(["node-a", "node-b"]));
    }

    [Fact]
    public async Task A_node_whose_capture_cannot_open_leaves_says_why_and_joins_again_when_it_can()
    {
        await using var rig = await SpeakerRig.StartAsync(["node-b"]);
        rig.AddService("web", "192.0.2.10");
        await rig.UntilAsync(() => rig.Answers("192.0.2.10") || rig.Lan.Nodes["node-b"].Membership.View().Alive.Contains("node-a"), Second, "settled");
        Assert.Null(rig.CannotAnswer);

        rig.Captures.Broken["eth0"] = "cannot capture: permission denied";
        rig.Captures.Trouble();
        await rig.UntilAsync(() => !rig.Lan.Nodes["node-b"].Membership.View().Alive.Contains("node-a"), Second, "node-b counts node-a gone (it left)");
        Assert.Empty(rig.Answerer.Owned);
        Assert.Contains("FAIL lan: cannot answer on eth0: cannot capture: permission denied; cannot answer: no capture open on an interface it announces on", rig.Readiness, StringComparison.Ordinal);
        Assert.Equal("eth0: cannot capture: permission denied", rig.CannotAnswer);
        Assert.Single(rig.Writer.EventsOf("CannotAnswer"));

        rig.Captures.Broken.Clear();
        await rig.UntilAsync(() => rig.Lan.Nodes["node-b"].Membership.View().Alive.Contains("node-a"), 3 * Second, "node-a joins again");
        await rig.RunAsync(Second);
        Assert.Null(rig.CannotAnswer);
        Assert.Contains("ok lan: member of the segment, answering", rig.Readiness, StringComparison.Ordinal);
        Assert.Single(rig.Writer.EventsOf("Answering"));
    }

    [Fact]
    public async Task A_joiner_nobody_answers_stays_silent_while_the_api_shows_another_speaker_renewing_and_answers_alone_once_not()
    {
        await using var rig = await SpeakerRig.StartAsync(["node-b"]);
        rig.AddService("web", "192.0.2.10");
        await rig.RunAsync(Second);

        // node-a hears nobody any more (deaf to the speakers): it leaves, asks again, and nobody answers.
        rig.OthersRenewing = true;
        rig.Lan.Nodes["node-a"].Deaf = true;
        await rig.RunAsync(5 * Second);
        Assert.False(rig.Answers("192.0.2.10"));
        Assert.Contains("the API shows others renewing their leases", rig.Readiness, StringComparison.Ordinal);

        // The other speaker's lease runs out: alone, node-a answers everything.
        rig.Lan.Nodes["node-b"].Crash();
        rig.OthersRenewing = false;
        await rig.UntilAsync(() => rig.Answers("192.0.2.10"), Membership.AloneCheckInterval + Second, "node-a answers alone");
    }

    [Fact]
    public async Task A_forged_claim_of_an_answered_address_is_defended_and_the_address_kept()
    {
        await using var rig = await SpeakerRig.StartAsync([]);
        rig.AddService("web", "192.0.2.10");
        await rig.UntilAsync(() => rig.Answers("192.0.2.10"), Second, "answered");
        var gratuitous = rig.Answerer.Gratuitous.Count;

        rig.Watch.Claim(Ip.Parse("192.0.2.10"), new MacAddress(0x02_00_00_00_00_66));
        Assert.Equal(gratuitous + 1, rig.Answerer.Gratuitous.Count); // announced again at once, on the capture thread
        await rig.RunAsync(Second);

        Assert.True(rig.Answers("192.0.2.10"));
        Assert.Single(rig.Writer.EventsOf("AddressDefended"));
    }

    [Fact]
    public async Task Nothing_changing_makes_no_pass_however_long_the_speakers_beat()
    {
        await using var rig = await SpeakerRig.StartAsync(["node-b", "node-c"]);
        rig.AddService("web", "192.0.2.10");
        await rig.RunAsync(Second);

        var passes = rig.Captures.Listens;
        await rig.RunAsync(10 * Second);
        Assert.Equal(passes, rig.Captures.Listens);
    }

    [Fact]
    public async Task The_preferred_node_answers_everything_and_relabelling_moves_it()
    {
        await using var rig = await SpeakerRig.StartAsync(["node-b"], new Kubernetes.Crds.L2AdvertisementSpec
        {
            PreferredNodeSelectors = [new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["role"] = "edge" } }],
        });
        SetRole(rig, "node-a", "edge");
        var ips = Addresses(8);
        foreach (var ip in ips)
        {
            rig.AddService($"web{ip.Split('.')[^1]}", ip);
        }

        await rig.UntilAsync(() => ips.All(rig.Answers), Second, "node-a, the edge node, answers every address");

        SetRole(rig, "node-a", null);
        SetRole(rig, "node-b", "edge");
        await rig.UntilAsync(() => !ips.Any(rig.Answers), Second, "node-b, now the edge node, takes every address");

        SetRole(rig, "node-b", null);
        SetRole(rig, "node-a", "edge");
        await rig.UntilAsync(() => ips.All(rig.Answers), Second, "node-a takes every address back (after its probes)");
    }

    [Fact]
    public async Task A_pool_deleted_while_an_advertisement_lists_it_with_another_silences_only_its_own_addresses()
    {
        await using var rig = await SpeakerRig.StartAsync([], new Kubernetes.Crds.L2AdvertisementSpec { IpAddressPools = ["main", "other"] });
        rig.Pools.Put(new V1Alpha1IPAddressPool { Metadata = new V1ObjectMeta { Name = "other", NamespaceProperty = SpeakerRig.Ns }, Spec = new IPAddressPoolSpec { Addresses = ["198.51.100.0/24"] } });
        rig.AddService("web", "192.0.2.10");
        rig.AddService("db", "198.51.100.10", pool: "other");
        await rig.UntilAsync(() => rig.Answers("192.0.2.10") && rig.Answers("198.51.100.10"), Second, "both pools' addresses are answered");

        rig.Pools.Delete($"{SpeakerRig.Ns}/other");
        await rig.UntilAsync(() => !rig.Answers("198.51.100.10"), Second, "the deleted pool's address is given up");
        Assert.True(rig.Answers("192.0.2.10"), "the other pool's address is still answered");
    }

    [Fact]
    public async Task An_address_outside_every_covered_pool_is_never_answered_whatever_the_service_status_says()
    {
        await using var rig = await SpeakerRig.StartAsync([], new Kubernetes.Crds.L2AdvertisementSpec { IpAddressPools = ["main"] });
        rig.Pools.Put(new V1Alpha1IPAddressPool { Metadata = new V1ObjectMeta { Name = "uncovered", NamespaceProperty = SpeakerRig.Ns }, Spec = new IPAddressPoolSpec { Addresses = ["198.51.100.0/24"] } });
        rig.AddService("stray", "203.0.113.5"); // in no pool
        rig.AddService("elsewhere", "198.51.100.5"); // in another pool than its own
        rig.AddService("uncovered", "198.51.100.6", pool: "uncovered"); // in a pool no advertisement covers
        rig.AddService("web", "192.0.2.10");

        await rig.UntilAsync(() => rig.Answers("192.0.2.10"), Second, "the valid address is answered");
        Assert.Equal([Ip.Parse("192.0.2.10")], rig.Answerer.Owned.Keys);
    }

    [Fact]
    public async Task With_the_local_policy_a_serving_terminating_endpoint_keeps_the_address_while_none_is_ready()
    {
        await using var rig = await SpeakerRig.StartAsync([]);
        rig.AddService("web", "192.0.2.10", local: true);
        rig.Slices.Put(Slice(("10.0.0.1", "node-a", Ready: false, Serving: false, Terminating: true)));
        await rig.RunAsync(Second);
        Assert.False(rig.Answers("192.0.2.10"), "no endpoint serves: nothing to announce");

        // The one replica is being replaced: the old pod still serves while terminating, the new one is not ready yet.
        rig.Slices.Put(Slice(("10.0.0.1", "node-a", Ready: false, Serving: true, Terminating: true), ("10.0.0.2", "node-b", Ready: false, Serving: false, Terminating: false)));
        await rig.UntilAsync(() => rig.Answers("192.0.2.10"), Second, "the serving terminating endpoint on this node is announced");
    }

    private static V1EndpointSlice Slice(params (string Address, string Node, bool Ready, bool Serving, bool Terminating)[] endpoints) => new()
    {
        Metadata = new V1ObjectMeta { Name = "web-abc", NamespaceProperty = "default", Labels = new Dictionary<string, string> { ["kubernetes.io/service-name"] = "web" } },
        AddressType = "IPv4",
        Endpoints = [.. endpoints.Select(e => new V1Endpoint
        {
            Addresses = [e.Address],
            NodeName = e.Node,
            Conditions = new V1EndpointConditions { Ready = e.Ready, Serving = e.Serving, Terminating = e.Terminating },
        })],
    };

    private static void SetRole(SpeakerRig rig, string node, string? role)
    {
        var labels = new Dictionary<string, string>();
        if (role is not null)
        {
            labels["role"] = role;
        }

        rig.Nodes.Put(new V1Node { Metadata = new V1ObjectMeta { Name = node, Labels = labels } });
    }

    /// <summary>The node the election picks for a lone Service address among equal candidates (its rendezvous hash).</summary>
    private static string SpeakerPlanWinner(string ip, string[] nodes)
    {
        var config = ConfigValidator.Validate([new PoolSpec("main", ["192.0.2.0/24"])], [new Core.L2AdvertisementSpec("all")]);
        var election = ElectionTable.Build(config.Pools, config.Advertisements,
            nodes.Select(n => new ElectionNode(n, new Dictionary<string, string>(), SpeakerAlive: true)),
            [new AnnouncedService($"default/web{ip.Split('.')[^1]}", [Ip.Parse(ip)], "main", new Dictionary<string, string>())]);
        return election.Get($"default/web{ip.Split('.')[^1]}")!.Node!;
    }
}

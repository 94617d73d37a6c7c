using System.Text.RegularExpressions;
using LbAllocator.Core;

namespace LbAllocator.Speaker.Tests;

/// <summary>The plan: what this node answers on which interface, and what to tell the API, from the election alone.</summary>
public class SpeakerPlanTests
{
    private static readonly Regex Exclude = new("^(lo|veth.*)$");
    private static readonly NetworkInterfaceInfo Eth0 = Interface("eth0");
    private static readonly NetworkInterfaceInfo Eth1 = Interface("eth1");
    private static readonly Dictionary<string, string> NoLabels = [];

    private static NetworkInterfaceInfo Interface(string name, bool up = true) =>
        new(name, Up: up, Broadcast: true, Loopback: false, NoArp: false, Enslaved: false, Ethernet: true);

    /// <summary>One node, "node-a", and Services web (192.0.2.10) and db (192.0.2.20); advertisements as given.</summary>
    private static ElectionTable Election(bool alive = true, params Core.L2AdvertisementSpec[] ads)
    {
        var config = ConfigValidator.Validate([new PoolSpec("main", ["192.0.2.0/24"])], ads.Length == 0 ? [new Core.L2AdvertisementSpec("all")] : ads);
        return ElectionTable.Build(
            config.Pools,
            config.Advertisements,
            [new ElectionNode("node-a", NoLabels, alive)],
            [
                new AnnouncedService("default/web", [Ip.Parse("192.0.2.10")], "main", NoLabels),
                new AnnouncedService("default/db", [Ip.Parse("192.0.2.20")], "main", NoLabels),
            ]);
    }

    public static TheoryData<string, string[], string[]> InterfaceCases => new()
    {
        // advertisement interfaces, node interfaces (eth0, eth1, veth9, eth2 down), answered on
        { "", ["eth0", "eth1", "veth9"], ["eth0", "eth1"] },
        { "eth1", ["eth0", "eth1"], ["eth1"] },
        { "veth9", ["eth0", "veth9"], ["veth9"] }, // named explicitly: the exclusion pattern does not apply
        { "eth2,eth1", ["eth0", "eth1", "eth2-down"], ["eth1"] },
    };

    [Theory]
    [MemberData(nameof(InterfaceCases))]
    public void Answers_on_the_named_interfaces_that_can_carry_or_else_every_usable_one(string named, string[] present, string[] expected)
    {
        var ad = new Core.L2AdvertisementSpec("ad", Interfaces: named.Length == 0 ? null : named.Split(','));
        var interfaces = present.Select(n => n.EndsWith("-down", StringComparison.Ordinal) ? Interface(n[..^5], up: false) : Interface(n)).ToList();
        var plan = SpeakerPlan.Make("node-a", Election(true, ad), standing: true, janitor: false, [], interfaces, Exclude);
        Assert.Equal(expected, plan.Owned[Ip.Parse("192.0.2.10")]);
        Assert.Equal(expected, plan.Announced["default/web"].Interfaces);
        Assert.Empty(plan.Failed);
    }

    [Fact]
    public void Won_but_without_an_interface_is_a_failure_not_an_answer()
    {
        var plan = SpeakerPlan.Make("node-a", Election(true, new Core.L2AdvertisementSpec("ad", Interfaces: ["eth7"])), standing: true, janitor: false, [], [Eth0], Exclude);
        Assert.Empty(plan.Owned);
        Assert.Contains("none of the interfaces its L2Advertisements name (eth7)", plan.Failed["default/web"]);
        Assert.Equal("AnnounceFailed", Assert.Single(plan.EventsSince(SpeakerPlan.Empty), e => e.ServiceKey == "default/web").Reason);
    }

    [Theory]
    [InlineData(true, false, "node-a", "")] // our own status for a Service we announce: kept
    [InlineData(false, false, "node-a", "status")] // our own, for a Service we no longer announce: deleted
    [InlineData(false, false, "node-b", "")] // someone else's: theirs to delete
    [InlineData(false, true, "node-b", "status")] // ... unless nobody announces the Service and we are the janitor
    public void Stale_statuses_are_deleted_by_their_owner_or_by_the_janitor(bool alive, bool janitor, string statusNode, string expected)
    {
        var plan = SpeakerPlan.Make("node-a", Election(alive), standing: true, janitor, [new StatusView("status", "default/web", statusNode)], [Eth0], Exclude);
        Assert.Equal(expected.Length == 0 ? [] : [expected], plan.StaleStatuses);
    }

    [Fact]
    public void Our_own_status_for_a_service_another_node_takes_over_is_left_for_it_to_rewrite()
    {
        // Both alive; the preferred node-b takes web back from node-a (a handback after node-b's return).
        var prefer = new Core.L2AdvertisementSpec("all", PreferredNodeSelectors: [new LabelSelectorSpec(new Dictionary<string, string> { ["role"] = "edge" })]);
        var config = ConfigValidator.Validate([new PoolSpec("main", ["192.0.2.0/24"])], [prefer]);
        var election = ElectionTable.Build(
            config.Pools,
            config.Advertisements,
            [new ElectionNode("node-a", NoLabels, SpeakerAlive: true), new ElectionNode("node-b", new Dictionary<string, string> { ["role"] = "edge" }, SpeakerAlive: true)],
            [new AnnouncedService("default/web", [Ip.Parse("192.0.2.10")], "main", NoLabels)]);
        var statuses = new[] { new StatusView("status", "default/web", "node-a") };

        // node-a lets go and leaves its status for node-b to rewrite (one write, not a delete and a create).
        var giver = SpeakerPlan.Make("node-a", election, standing: true, janitor: true, statuses, [Eth0], Exclude);
        Assert.Empty(giver.Owned);
        Assert.Empty(giver.StaleStatuses);
        var taker = SpeakerPlan.Make("node-b", election, standing: true, janitor: false, statuses, [Eth0], Exclude);
        Assert.Equal([Ip.Parse("192.0.2.10")], taker.Owned.Keys);
    }

    [Fact]
    public void A_node_not_standing_for_election_deletes_none_of_its_statuses()
    {
        // Cut off (its LAN link down), node-a may count everyone dead: nobody announces web in its view, yet the others
        // take it over, and find the status.
        var statuses = new[] { new StatusView("status", "default/web", "node-a") };
        Assert.Empty(SpeakerPlan.Make("node-a", Election(alive: false), standing: false, janitor: false, statuses, [Eth0], Exclude).StaleStatuses);
        Assert.Equal(["status"], SpeakerPlan.Make("node-a", Election(alive: false), standing: true, janitor: false, statuses, [Eth0], Exclude).StaleStatuses);
    }

    [Fact]
    public void The_janitor_says_why_nobody_announces_and_statuses_of_gone_services_go()
    {
        var plan = SpeakerPlan.Make("node-a", Election(alive: false), standing: true, janitor: true, [new StatusView("gone", "default/deleted", "node-b")], [Eth0], Exclude);
        Assert.Equal(["gone"], plan.StaleStatuses);
        Assert.StartsWith("no node announces 192.0.2.10: no node with a live speaker", plan.NotAnnounced["default/web"]);
        Assert.Empty(SpeakerPlan.Make("node-a", Election(alive: false), standing: true, janitor: false, [], [Eth0], Exclude).NotAnnounced);
    }

    [Fact]
    public void Each_state_is_told_once_when_it_starts()
    {
        var announcing = SpeakerPlan.Make("node-a", Election(), standing: true, janitor: true, [], [Eth0, Eth1], Exclude);
        // Announcing is told by the effects once an address is answered (SpeakerEffectsTests), not by the plan.
        Assert.Empty(announcing.EventsSince(SpeakerPlan.Empty));
        Assert.Equal(["default/db", "default/web"], announcing.StartedSince(SpeakerPlan.Empty).Select(kv => kv.Key).Order());
        Assert.Equal("announcing 192.0.2.10 from node node-a (eth0, eth1)", SpeakerPlan.Assigned("default/web", announcing.Announced["default/web"], "node-a").Message);

        Assert.Empty(announcing.EventsSince(announcing));

        var fenced = SpeakerPlan.Make("node-a", Election(alive: false), standing: true, janitor: true, [], [Eth0], Exclude);
        Assert.Equal(["default/db", "default/web"], fenced.StoppedSince(announcing).Order());
        Assert.All(fenced.EventsSince(announcing), e => Assert.Equal("NotAnnounced", e.Reason));
        Assert.Empty(fenced.EventsSince(fenced));
    }
}

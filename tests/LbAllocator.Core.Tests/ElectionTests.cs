using LbAllocator.Core;
using Xunit;

namespace LbAllocator.Core.Tests;

/// <summary>Who announces: MetalLB's layer-2 election cases, plus the properties rendezvous hashing promises.</summary>
public class ElectionTests
{
    private static readonly Dictionary<string, string> NoLabels = [];

    private static readonly PoolSpec[] PoolSpecs =
    [
        new("main", ["192.0.2.0/24", "2001:db8::/64"], Labels: new Dictionary<string, string> { ["tier"] = "public" }),
        new("other", ["198.51.100.0/24"]),
    ];

    private static readonly IReadOnlyList<Pool> Pools = ConfigValidator.Validate(PoolSpecs, []).Pools;

    private static readonly ElectionNode[] ThreeNodes = [Node("node-a"), Node("node-b"), Node("node-c")];

    private static ElectionNode Node(string name, bool alive = true, Dictionary<string, string>? labels = null, bool networkUnavailable = false) =>
        new(name, labels ?? NoLabels, alive, networkUnavailable);

    private static AnnouncedService Svc(string key, string ips = "192.0.2.10", string? pool = "main", Dictionary<string, string>? labels = null, string[]? readyOn = null) =>
        new(key, [.. ips.Split(',').Select(Ip.Parse)], pool, labels ?? NoLabels, readyOn is not null, readyOn?.ToHashSet());

    private static IReadOnlyList<L2Advertisement> Ads(params L2AdvertisementSpec[] specs)
    {
        var config = ConfigValidator.Validate(PoolSpecs, specs);
        Assert.Empty(config.Problems);
        return config.Advertisements;
    }

    private static readonly IReadOnlyList<L2Advertisement> AllNodes = Ads(new L2AdvertisementSpec("all"));

    private static Announcement One(AnnouncedService service, IReadOnlyList<ElectionNode>? nodes = null, IReadOnlyList<L2Advertisement>? ads = null) =>
        Assert.Single(Election.Decide([service], nodes ?? ThreeNodes, Pools, ads ?? AllNodes));

    [Fact]
    public void Exactly_one_winner_the_highest_score()
    {
        var result = One(Svc("default/web"));
        var expected = ThreeNodes.MaxBy(n => Election.Score(n.Name, "192.0.2.10"))!.Name;
        Assert.Equal(expected, result.Node);
        Assert.Null(result.Reason);
        Assert.Empty(result.Interfaces); // every usable interface
    }

    [Fact]
    public void Every_node_computes_the_same_result_whatever_the_input_order()
    {
        var services = Enumerable.Range(1, 50).Select(i => Svc($"default/s{i}", $"192.0.2.{i}")).ToList();
        var first = Election.Decide(services, ThreeNodes, Pools, AllNodes).Select(a => a.Node).ToList();
        var shuffled = Election.Decide(services, [ThreeNodes[2], ThreeNodes[0], ThreeNodes[1]], Pools, AllNodes).Select(a => a.Node).ToList();
        Assert.Equal(first, shuffled);
        // and the load spreads: 50 addresses over 3 nodes, each node gets some.
        Assert.Equal(3, first.Distinct().Count());
    }

    [Fact]
    public void Score_is_stable_across_processes()
    {
        // A fixed value (computed independently, outside .NET): string.GetHashCode is randomised per
        // process; this hash must not be, or speakers on different nodes would disagree.
        Assert.NotEqual(Election.Score("node-a", "192.0.2.10"), Election.Score("node-b", "192.0.2.10"));
        Assert.Equal(0x27F2B3492270C3E2UL, Election.Score("node-a", "192.0.2.10"));
    }

    [Fact]
    public void A_node_leaving_moves_only_its_own_addresses_and_a_node_joining_takes_only_what_it_wins()
    {
        var services = Enumerable.Range(1, 200).Select(i => Svc($"default/s{i}", $"192.0.2.{i}")).ToList();
        var before = Election.Decide(services, ThreeNodes, Pools, AllNodes);
        var after = Election.Decide(services, [ThreeNodes[0], ThreeNodes[1], Node("node-c", alive: false)], Pools, AllNodes);
        for (var i = 0; i < services.Count; i++)
        {
            if (before[i].Node != "node-c")
            {
                Assert.Equal(before[i].Node, after[i].Node);
            }
            else
            {
                Assert.NotEqual("node-c", after[i].Node);
                Assert.NotNull(after[i].Node);
            }
        }

        var joined = Election.Decide(services, [.. ThreeNodes, Node("node-d")], Pools, AllNodes);
        var moved = Enumerable.Range(0, services.Count).Where(i => joined[i].Node != before[i].Node).ToList();
        Assert.NotEmpty(moved);
        Assert.All(moved, i => Assert.Equal("node-d", joined[i].Node));
    }

    [Fact]
    public void No_live_speaker_means_no_winner_with_a_reason()
    {
        var result = One(Svc("default/web"), [Node("node-a", alive: false)]);
        Assert.Null(result.Node);
        Assert.Contains("no node with a live speaker", result.Reason);
    }

    [Fact]
    public void Excluded_and_network_unavailable_nodes_never_win()
    {
        var nodes = new[]
        {
            Node("node-a", labels: new() { [Election.ExcludeLabel] = "" }),
            Node("node-b", networkUnavailable: true),
            Node("node-c"),
        };
        for (var i = 1; i <= 30; i++)
        {
            Assert.Equal("node-c", One(Svc("default/web", $"192.0.2.{i}"), nodes).Node);
        }
    }

    [Fact]
    public void Node_selectors_limit_the_candidates()
    {
        var ads = Ads(new L2AdvertisementSpec("edge", NodeSelectors: [new LabelSelectorSpec(new Dictionary<string, string> { ["edge"] = "true" })]));
        var nodes = new[] { Node("node-a"), Node("node-b", labels: new() { ["edge"] = "true" }), Node("node-c") };
        for (var i = 1; i <= 30; i++)
        {
            Assert.Equal("node-b", One(Svc("default/web", $"192.0.2.{i}"), nodes, ads).Node);
        }
    }

    [Fact]
    public void Advertisements_select_pools_by_name_or_label_and_services_by_label()
    {
        var byName = Ads(new L2AdvertisementSpec("a", IpAddressPools: ["other"]));
        Assert.Contains("no L2Advertisement covers pool \"main\"", One(Svc("default/web"), ads: byName).Reason);

        var byLabel = Ads(new L2AdvertisementSpec("a", IpAddressPoolSelectors: [new LabelSelectorSpec(new Dictionary<string, string> { ["tier"] = "public" })]));
        Assert.NotNull(One(Svc("default/web"), ads: byLabel).Node);
        Assert.Null(One(Svc("default/x", "198.51.100.1", pool: "other"), ads: byLabel).Node);

        var byService = Ads(new L2AdvertisementSpec("a", ServiceSelectors: [new LabelSelectorSpec(new Dictionary<string, string> { ["expose"] = "l2" })]));
        Assert.Null(One(Svc("default/web"), ads: byService).Node);
        Assert.NotNull(One(Svc("default/web", labels: new() { ["expose"] = "l2" }), ads: byService).Node);
    }

    [Fact]
    public void Interfaces_come_from_the_matching_advertisements()
    {
        var ads = Ads(new L2AdvertisementSpec("a", Interfaces: ["eth1"]), new L2AdvertisementSpec("b", Interfaces: ["eth0", "eth1"]));
        Assert.Equal(["eth0", "eth1"], One(Svc("default/web"), ads: ads).Interfaces);

        // One advertisement without interfaces allows them all.
        var withAll = Ads(new L2AdvertisementSpec("a", Interfaces: ["eth1"]), new L2AdvertisementSpec("b"));
        Assert.Empty(One(Svc("default/web"), ads: withAll).Interfaces);
    }

    [Fact]
    public void Local_policy_picks_only_nodes_with_a_ready_endpoint()
    {
        for (var i = 1; i <= 30; i++)
        {
            Assert.Equal("node-b", One(Svc("default/web", $"192.0.2.{i}", readyOn: ["node-b"])).Node);
        }

        var none = One(Svc("default/web", readyOn: []));
        Assert.Null(none.Node);
        Assert.Contains("no eligible node has a ready or serving endpoint", none.Reason);

        // An endpoint on a node whose speaker is dead does not help.
        Assert.Null(One(Svc("default/web", readyOn: ["node-a"]), [Node("node-a", alive: false), Node("node-b")]).Node);
    }

    [Fact]
    public void All_addresses_of_a_service_and_services_sharing_an_address_go_to_one_node()
    {
        for (var i = 1; i <= 30; i++)
        {
            var dual = Svc("default/dual", $"192.0.2.{i},2001:db8::{i}");
            var sharingV4 = Svc("default/share-a", $"192.0.2.{i}");
            var sharingV6 = Svc("default/share-b", $"2001:db8::{i}");
            var result = Election.Decide([sharingV6, dual, sharingV4], ThreeNodes, Pools, AllNodes);
            Assert.Single(result.Select(a => a.Node).Distinct());
        }
    }

    [Fact]
    public void Sharing_services_with_local_policy_use_the_nodes_they_have_in_common()
    {
        var a = Svc("default/a", readyOn: ["node-a", "node-b"]);
        var b = Svc("default/b", readyOn: ["node-b", "node-c"]);
        var result = Election.Decide([a, b], ThreeNodes, Pools, AllNodes);
        Assert.All(result, r => Assert.Equal("node-b", r.Node));

        var disjoint = Election.Decide([a, Svc("default/c", readyOn: ["node-c"])], ThreeNodes, Pools, AllNodes);
        Assert.All(disjoint, r => Assert.Null(r.Node));
        Assert.Contains("no eligible node in common", disjoint[0].Reason);
    }

    [Fact]
    public void Unknown_pool_and_services_without_addresses()
    {
        Assert.Contains("pool \"gone\" does not exist", One(Svc("default/web", pool: "gone")).Reason);
        Assert.Empty(Election.Decide([new AnnouncedService("default/pending", [], "main", NoLabels)], ThreeNodes, Pools, AllNodes));
    }

    [Fact]
    public void An_advertisement_naming_a_missing_pool_keeps_covering_its_other_pools()
    {
        var config = ConfigValidator.Validate(PoolSpecs, [new L2AdvertisementSpec("both", IpAddressPools: ["missing", "main"])]);
        var problem = Assert.Single(config.Problems);
        Assert.Equal("L2Advertisement/both: spec.ipAddressPools[0]: IPAddressPool \"missing\" does not exist", problem.ToString());
        Assert.NotNull(One(Svc("default/web"), ads: config.Advertisements).Node);
        Assert.Contains("no L2Advertisement covers pool \"other\"", One(Svc("default/x", "198.51.100.1", pool: "other"), ads: config.Advertisements).Reason);
    }

    [Fact]
    public void An_advertisement_naming_only_missing_pools_covers_nothing_not_everything()
    {
        var config = ConfigValidator.Validate(PoolSpecs, [new L2AdvertisementSpec("gone", IpAddressPools: ["missing"])]);
        Assert.Single(config.Problems);
        Assert.Contains("no L2Advertisement covers pool \"main\"", One(Svc("default/web"), ads: config.Advertisements).Reason);
    }

    [Theory]
    [InlineData("203.0.113.5", "main", "none of its addresses is in pool \"main\"")] // in no pool at all
    [InlineData("198.51.100.5", "main", "none of its addresses is in pool \"main\"")] // in another pool than its own
    [InlineData("192.0.2.5", "broken", "pool \"broken\" does not exist or is not valid")]
    public void Only_addresses_inside_the_services_valid_pool_are_ever_announced(string ips, string pool, string reason)
    {
        var pools = ConfigValidator.Validate([.. PoolSpecs, new PoolSpec("broken", ["not an address"])], []).Pools;
        var result = Assert.Single(Election.Decide([Svc("default/web", ips, pool)], ThreeNodes, pools, AllNodes));
        Assert.Null(result.Node);
        Assert.Equal(reason, result.Reason);
    }

    [Fact]
    public void Addresses_outside_the_pool_are_dropped_and_the_rest_announced()
    {
        var result = One(Svc("default/web", "192.0.2.7,203.0.113.7"));
        Assert.NotNull(result.Node);
        Assert.Equal([Ip.Parse("192.0.2.7")], result.Addresses);
    }

    [Fact]
    public void A_pool_no_advertisement_covers_is_not_announced()
    {
        var ads = Ads(new L2AdvertisementSpec("only-other", IpAddressPools: ["other"]));
        Assert.Null(One(Svc("default/web"), ads: ads).Node);
    }
}

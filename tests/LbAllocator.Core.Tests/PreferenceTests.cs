using LbAllocator.Core;
using Xunit;

namespace LbAllocator.Core.Tests;

/// <summary>
/// L2Advertisement preferredNodeSelectors: ordered tiers among the candidates, rendezvous hashing within a tier,
/// nodes matching none last; the full election and the incremental one agree on them.
/// </summary>
public class PreferenceTests
{
    private static readonly PoolSpec[] PoolSpecs = [new("main", ["192.0.2.0/24", "2001:db8::/64"])];

    private static readonly IReadOnlyList<Pool> Pools = ConfigValidator.Validate(PoolSpecs, []).Pools;

    // 60 Services, enough that each candidate of a tier wins some.
    private static readonly List<AnnouncedService> Services =
        [.. Enumerable.Range(1, 60).Select(i => Svc($"default/s{i}", $"192.0.2.{i}"))];

    /// <summary>Prefer zone a, then zone b; every node is selected.</summary>
    private static readonly IReadOnlyList<L2Advertisement> ZonesAThenB = Ads(new L2AdvertisementSpec("zones", PreferredNodeSelectors: [Labels("zone", "a"), Labels("zone", "b")]));

    private static readonly ElectionNode[] Nodes =
        [Node("a-1", "zone", "a"), Node("a-2", "zone", "a"), Node("b-1", "zone", "b"), Node("c-1", "zone", "c"), Node("c-2")];

    [Fact]
    public void The_best_tier_with_a_live_node_wins_hashing_spreads_within_it_and_nodes_matching_none_come_last()
    {
        Assert.Equal(["a-1", "a-2"], Winners(Nodes));
        Assert.Equal(["a-2"], Winners(Without(Nodes, "a-1")));
        Assert.Equal(["b-1"], Winners(Without(Nodes, "a-1", "a-2")));
        Assert.Equal(["c-1", "c-2"], Winners(Without(Nodes, "a-1", "a-2", "b-1")));

        // Within the last tier the plain election decides: the same winners as with no preference at all.
        var plain = Ads(new L2AdvertisementSpec("plain"));
        var rest = Without(Nodes, "a-1", "a-2", "b-1");
        Assert.Equal(
            Election.Decide(Services, rest, Pools, plain).Select(a => a.Node),
            Election.Decide(Services, rest, Pools, ZonesAThenB).Select(a => a.Node));
    }

    [Fact]
    public void A_preferred_node_coming_back_takes_its_addresses_back_and_one_leaving_moves_only_its_own()
    {
        var all = Election.Decide(Services, Nodes, Pools, ZonesAThenB);
        var withoutA1 = Election.Decide(Services, Without(Nodes, "a-1"), Pools, ZonesAThenB);
        for (var i = 0; i < Services.Count; i++)
        {
            // a-2's addresses stay where they are; a-1's go to a-2, the other node of the best tier.
            Assert.Equal(all[i].Node == "a-1" ? "a-2" : all[i].Node, withoutA1[i].Node);
        }

        // Back again: the same answer as before it left (the election has no memory, so every speaker agrees).
        Assert.Equal(all.Select(a => a.Node), Election.Decide(Services, [.. Without(Nodes, "a-1"), Nodes[0]], Pools, ZonesAThenB).Select(a => a.Node));
    }

    [Fact]
    public void A_preference_ranks_only_the_nodes_its_advertisement_selects_and_a_node_takes_the_best_tier_any_gives_it()
    {
        // "lb" selects role=lb nodes and prefers zone a among them; "edge" selects every node and prefers zone b.
        var ads = Ads(
            new L2AdvertisementSpec("lb", NodeSelectors: [Labels("role", "lb")], PreferredNodeSelectors: [Labels("zone", "a")]),
            new L2AdvertisementSpec("edge", PreferredNodeSelectors: [Labels("zone", "c"), Labels("zone", "b")]));
        ElectionNode[] nodes =
        [
            Node("x", "zone", "a"), // zone a, but "lb" does not select it: "edge" gives it nothing
            new("y", new Dictionary<string, string> { ["zone"] = "b" }, true), // "edge" tier 1
            new("z", new Dictionary<string, string> { ["zone"] = "a", ["role"] = "lb" }, true), // "lb" tier 0
        ];
        Assert.Equal(["z"], Winners(nodes, ads));
        Assert.Equal(["y"], Winners(Without(nodes, "z"), ads));
        Assert.Equal(["x"], Winners(Without(nodes, "z", "y"), ads));

        // The advertisements' order (by name in the cluster) does not matter.
        Assert.Equal(Winners(nodes, ads), Winners(nodes, [ads[1], ads[0]]));
    }

    [Fact]
    public void Services_sharing_an_address_go_to_the_node_in_the_best_tier_any_of_them_gives()
    {
        var ads = Ads(
            new L2AdvertisementSpec("web", ServiceSelectors: [Labels("app", "web")], PreferredNodeSelectors: [Labels("zone", "b")]),
            new L2AdvertisementSpec("db", ServiceSelectors: [Labels("app", "db")]));
        for (var i = 1; i <= 20; i++)
        {
            var web = Svc("default/web", $"192.0.2.{i}", new() { ["app"] = "web" });
            var db = Svc("default/db", $"192.0.2.{i}", new() { ["app"] = "db" });
            var result = Election.Decide([db, web], Nodes, Pools, ads);
            Assert.All(result, a => Assert.Equal("b-1", a.Node));
        }
    }

    [Fact]
    public void The_incremental_table_follows_label_changes_into_and_out_of_a_tier()
    {
        var table = ElectionTable.Build(Pools, ZonesAThenB, Nodes, Services);
        Assert.Equal(["a-1", "a-2"], WinnersOf(table));

        // a-1 and a-2 relabelled out of zone a (one into zone b), c-2 into it: c-2 takes everything.
        table.SetNode(Node("a-1", "zone", "b"));
        table.SetNode(Node("a-2"));
        table.SetNode(Node("c-2", "zone", "a"));
        Assert.Equal(["c-2"], WinnersOf(table));
        Assert.Equal(Describe(Election.Decide(Services, [Node("a-1", "zone", "b"), Node("a-2"), Nodes[2], Nodes[3], Node("c-2", "zone", "a")], Pools, ZonesAThenB)), Describe(table.All()));

        // c-2's speaker dies: zone b (a-1 and b-1) takes over; it comes back and takes everything again.
        table.SetNode(new ElectionNode("c-2", new Dictionary<string, string> { ["zone"] = "a" }, SpeakerAlive: false));
        Assert.Equal(["a-1", "b-1"], WinnersOf(table));
        table.SetNode(Node("c-2", "zone", "a"));
        Assert.Equal(["c-2"], WinnersOf(table));
    }

    [Theory]
    [InlineData("an unknown operator", "spec.preferredNodeSelectors[1].matchExpressions[0].operator: \"Near\" is not one of In, NotIn, Exists, DoesNotExist")]
    [InlineData("a label value with spaces", "spec.preferredNodeSelectors[1].matchLabels[zone]: label value \"not a value\" is invalid")]
    public void An_invalid_preference_is_reported_naming_the_field_and_the_advertisement_works_without_preferences(string what, string expected)
    {
        var selector = what == "an unknown operator"
            ? new LabelSelectorSpec(MatchExpressions: [new LabelRequirementSpec("zone", "Near", ["a"])])
            : Labels("zone", "not a value");
        var spec = new L2AdvertisementSpec("bad", PreferredNodeSelectors: [Labels("zone", "a"), selector]);
        var config = ConfigValidator.Validate(PoolSpecs, [spec]);
        Assert.Contains(expected, Assert.Single(config.Problems).ToString(), StringComparison.Ordinal);
        AssertUsedWithoutPreferences(spec, config);
    }

    [Fact]
    public void A_repeated_tier_and_more_tiers_than_the_schema_allows_are_refused()
    {
        var twice = new L2AdvertisementSpec("twice", PreferredNodeSelectors: [Labels("zone", "a"), Labels("zone", "b"), Labels("zone", "a")]);
        var repeated = ConfigValidator.Validate(PoolSpecs, [twice]);
        Assert.Equal("L2Advertisement/twice: spec.preferredNodeSelectors[2]: duplicate selector (zone in (a)), same as an earlier entry", Assert.Single(repeated.Problems).ToString());
        AssertUsedWithoutPreferences(twice, repeated);

        var nine = new L2AdvertisementSpec("many", PreferredNodeSelectors: [.. Enumerable.Range(0, 9).Select(i => Labels("zone", $"z{i}"))]);
        var many = ConfigValidator.Validate(PoolSpecs, [nine]);
        Assert.Equal("L2Advertisement/many: spec.preferredNodeSelectors: 9 selectors; at most 8 preference tiers", Assert.Single(many.Problems).ToString());
        AssertUsedWithoutPreferences(nine, many);
    }

    [Fact]
    public void A_broken_preference_beside_another_problem_leaves_the_advertisement_unused()
    {
        var spec = new L2AdvertisementSpec("broken", NodeSelectors: [Labels("zone", "not a value")], PreferredNodeSelectors: [Labels("zone", "not a value")]);
        var config = ConfigValidator.Validate(PoolSpecs, [spec]);
        Assert.Equal(2, config.Problems.Count);
        Assert.Empty(config.Advertisements);
        Assert.Equal("the advertisement is not used", ConfigValidator.Consequence(spec, null));
    }

    /// <summary>Preferences are soft: a broken one must not leave addresses unanswered, so the advertisement stays in force without any.</summary>
    private static void AssertUsedWithoutPreferences(L2AdvertisementSpec spec, ValidatedConfig config)
    {
        var used = Assert.Single(config.Advertisements);
        Assert.Empty(used.PreferredNodeSelectors);
        Assert.Equal("the advertisement is used without its preferredNodeSelectors (no node is preferred)", ConfigValidator.Consequence(spec, used));
        var winners = Election.Decide(Services, Nodes, Pools, config.Advertisements).Select(a => a.Node).Distinct().Count();
        Assert.Equal(Nodes.Length, winners); // the plain election: every node wins some
    }

    private static List<string> Winners(IReadOnlyList<ElectionNode> nodes, IReadOnlyList<L2Advertisement>? ads = null) =>
        [.. Election.Decide(Services, nodes, Pools, ads ?? ZonesAThenB).Select(a => a.Node!).Distinct().Order(StringComparer.Ordinal)];

    private static List<string> WinnersOf(ElectionTable table) => [.. table.All().Select(a => a.Node!).Distinct().Order(StringComparer.Ordinal)];

    private static List<string> Describe(IEnumerable<Announcement> announcements) =>
        [.. announcements.Select(a => $"{a.ServiceKey} -> {a.Node}").Order(StringComparer.Ordinal)];

    private static ElectionNode[] Without(IEnumerable<ElectionNode> nodes, params string[] names) => [.. nodes.Where(n => !names.Contains(n.Name))];

    private static ElectionNode Node(string name, string? key = null, string? value = null) =>
        new(name, key is null ? new Dictionary<string, string>() : new Dictionary<string, string> { [key] = value! }, SpeakerAlive: true);

    private static AnnouncedService Svc(string key, string ip, Dictionary<string, string>? labels = null) =>
        new(key, [Ip.Parse(ip)], "main", labels ?? []);

    private static LabelSelectorSpec Labels(string key, string value) => new(new Dictionary<string, string> { [key] = value });

    private static IReadOnlyList<L2Advertisement> Ads(params L2AdvertisementSpec[] specs)
    {
        var config = ConfigValidator.Validate(PoolSpecs, specs);
        Assert.Empty(config.Problems);
        return config.Advertisements;
    }
}

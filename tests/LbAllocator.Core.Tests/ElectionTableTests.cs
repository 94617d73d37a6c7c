using LbAllocator.Core;
using Xunit;

namespace LbAllocator.Core.Tests;

/// <summary>The incremental election against the full one: after every change of random sequences, the same answers.</summary>
public class ElectionTableTests
{
    private static readonly Dictionary<string, string> NoLabels = [];

    private static readonly ValidatedConfig Config = ConfigValidator.Validate(
        [
            new PoolSpec("main", ["192.0.2.0/28", "2001:db8::/124"], Labels: new Dictionary<string, string> { ["tier"] = "public" }),
            new PoolSpec("other", ["198.51.100.0/28"]),
        ],
        [
            new L2AdvertisementSpec("zone-a", IpAddressPools: ["main"], NodeSelectors: [Selector("zone", "a")], Interfaces: ["eth1"]),
            new L2AdvertisementSpec("public", IpAddressPoolSelectors: [Selector("tier", "public")], Interfaces: ["eth0"], PreferredNodeSelectors: [Selector("rack", "1"), Selector("rack", "2")]),
            new L2AdvertisementSpec("other-edge", IpAddressPools: ["other"], NodeSelectors: [Selector("edge", "true")], ServiceSelectors: [Selector("expose", "l2")]),
            new L2AdvertisementSpec("other-all", IpAddressPools: ["other", "missing"], ServiceSelectors: [Selector("expose", "all")], PreferredNodeSelectors: [Selector("rack", "2")]),
        ]);

    public static TheoryData<int> Seeds => [.. Enumerable.Range(1, 30)];

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Random_changes_applied_one_by_one_give_what_a_full_recompute_gives(int seed)
    {
        var random = new Random(seed);
        var nodes = new Dictionary<string, ElectionNode>(StringComparer.Ordinal);
        var services = new Dictionary<string, AnnouncedService>(StringComparer.Ordinal);
        var table = new ElectionTable(Config.Pools, Config.Advertisements);
        for (var step = 0; step < 400; step++)
        {
            switch (random.Next(5))
            {
                case 0 or 1:
                    var service = RandomService(random);
                    services[service.Key] = service;
                    table.SetService(service);
                    break;
                case 2:
                    var key = $"default/s{random.Next(25)}";
                    services.Remove(key);
                    table.RemoveService(key);
                    break;
                case 3:
                    var node = RandomNode(random);
                    nodes[node.Name] = node;
                    table.SetNode(node);
                    break;
                default:
                    var name = $"node-{random.Next(10)}";
                    nodes.Remove(name);
                    table.RemoveNode(name);
                    break;
            }

            var full = Election.Decide([.. services.Values], [.. nodes.Values], Config.Pools, Config.Advertisements);
            Assert.Equal(Describe(full), Describe(table.All()));
            Assert.Equal(Describe(full.Where(a => a.Node is null)), Describe(table.NotAnnounced()));
            foreach (var name in nodes.Keys)
            {
                Assert.Equal(Describe(full.Where(a => a.Node == name)), Describe(table.WonBy(name)));
            }
        }
    }

    [Fact]
    public void Build_equals_decide_and_a_node_joining_takes_only_what_it_wins()
    {
        var random = new Random(7);
        var services = Enumerable.Range(0, 25).Select(_ => RandomService(random)).DistinctBy(s => s.Key).ToList();
        var nodes = Enumerable.Range(0, 10).Select(i => new ElectionNode($"node-{i}", new Dictionary<string, string> { ["zone"] = "a", ["edge"] = "true" }, true)).ToList();
        var table = ElectionTable.Build(Config.Pools, Config.Advertisements, nodes[..9], services);
        Assert.Equal(Describe(Election.Decide(services, nodes[..9], Config.Pools, Config.Advertisements)), Describe(table.All()));

        var before = table.All().ToDictionary(a => a.ServiceKey, a => a.Node);
        table.SetNode(nodes[9]);
        Assert.All(table.All(), a => Assert.True(a.Node == before[a.ServiceKey] || a.Node == "node-9"));
        Assert.Equal(Describe(Election.Decide(services, nodes, Config.Pools, Config.Advertisements)), Describe(table.All()));
    }

    private static AnnouncedService RandomService(Random random)
    {
        // Few addresses, so Services often share one; now and then one outside every pool.
        string[] candidates = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "2001:db8::1", "2001:db8::2", "198.51.100.1", "198.51.100.2", "203.0.113.1"];
        var addresses = Enumerable.Range(0, random.Next(3)).Select(_ => Ip.Parse(candidates[random.Next(candidates.Length)])).Distinct().ToList();
        string?[] pools = ["main", "main", "other", null, "missing"];
        var labels = random.Next(3) switch
        {
            0 => NoLabels,
            1 => new Dictionary<string, string> { ["expose"] = "l2" },
            _ => new Dictionary<string, string> { ["expose"] = "all" },
        };
        var local = random.Next(3) == 0;
        return new AnnouncedService(
            $"default/s{random.Next(25)}",
            addresses,
            pools[random.Next(pools.Length)],
            labels,
            local,
            local ? Enumerable.Range(0, random.Next(4)).Select(_ => $"node-{random.Next(10)}").ToHashSet(StringComparer.Ordinal) : null);
    }

    private static ElectionNode RandomNode(Random random)
    {
        var labels = new Dictionary<string, string>();
        if (random.Next(2) == 0)
        {
            labels["zone"] = "a";
        }

        if (random.Next(2) == 0)
        {
            labels["edge"] = "true";
        }

        if (random.Next(3) > 0)
        {
            labels["rack"] = $"{random.Next(1, 3)}"; // a preference tier of some advertisements; relabelling moves addresses
        }

        if (random.Next(8) == 0)
        {
            labels[Election.ExcludeLabel] = "";
        }

        return new ElectionNode($"node-{random.Next(10)}", labels, SpeakerAlive: random.Next(5) > 0, NetworkUnavailable: random.Next(8) == 0);
    }

    private static LabelSelectorSpec Selector(string key, string value) => new(new Dictionary<string, string> { [key] = value });

    private static List<string> Describe(IEnumerable<Announcement> announcements) =>
        [.. announcements
            .Select(a => $"{a.ServiceKey} [{string.Join(",", a.Addresses)}] -> {a.Node} [{string.Join(",", a.Interfaces)}] {a.Reason}")
            .Order(StringComparer.Ordinal)];
}

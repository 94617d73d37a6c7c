using System.Text;

namespace LbAllocator.Core;

/// <summary>A node as the election sees it.</summary>
public sealed record ElectionNode(
    string Name,
    IReadOnlyDictionary<string, string> Labels,
    bool SpeakerAlive,
    bool NetworkUnavailable = false);

/// <summary>A Service with addresses to announce.</summary>
public sealed record AnnouncedService(
    string Key,
    IReadOnlyList<Ip> Addresses,
    string? Pool,
    IReadOnlyDictionary<string, string> Labels,
    bool LocalTrafficPolicy = false,
    IReadOnlySet<string>? NodesWithReadyEndpoints = null);

/// <summary>
/// Who announces a Service's addresses: a node and the interfaces to use there (empty: every usable
/// interface), or no node and why not.
/// </summary>
public sealed record Announcement(string ServiceKey, IReadOnlyList<Ip> Addresses, string? Node, IReadOnlyList<string> Interfaces, string? Reason);

/// <summary>
/// Chooses the node that announces each address. Every speaker runs this on the same inputs and gets the
/// same answer, so no coordination is needed beyond seeing the same objects and leases.
/// Rendezvous hashing: each candidate node scores (node, key) and the highest score wins, so a node
/// joining takes only the keys it now wins and a node leaving gives up only its own.
/// </summary>
public static class Election
{
    public const string ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers";

    /// <returns>One announcement per Service with addresses, in input order.</returns>
    /// <param name="pools">Pool name to its labels, for ipAddressPoolSelectors.</param>
    public static IReadOnlyList<Announcement> Decide(
        IReadOnlyList<AnnouncedService> services,
        IReadOnlyList<ElectionNode> nodes,
        IReadOnlyDictionary<string, IReadOnlyDictionary<string, string>> pools,
        IReadOnlyList<L2Advertisement> advertisements)
    {
        var perService = services.Select(s => Candidates(s, nodes, pools, advertisements)).ToList();

        // Services sharing an address must be announced from one node (one MAC per address), so they are
        // elected together: the group's candidates are the nodes every member can use, its key its lowest address.
        var groups = GroupBySharedAddress(services);
        var result = new Announcement?[services.Count];
        foreach (var group in groups)
        {
            var key = group.SelectMany(i => services[i].Addresses).Min().ToString();
            IEnumerable<string> candidates = perService[group[0]].Nodes.Keys;
            foreach (var i in group.Skip(1))
            {
                candidates = candidates.Intersect(perService[i].Nodes.Keys, StringComparer.Ordinal);
            }

            var winner = candidates
                .OrderByDescending(node => Score(node, key))
                .ThenBy(node => node, StringComparer.Ordinal)
                .FirstOrDefault();
            foreach (var i in group)
            {
                var (nodesOk, reason) = perService[i];
                result[i] = winner is null
                    ? new Announcement(services[i].Key, services[i].Addresses, null, [], reason ?? "the Services sharing its address have no eligible node in common")
                    : new Announcement(services[i].Key, services[i].Addresses, winner, nodesOk[winner], null);
            }
        }

        return [.. result.OfType<Announcement>()];
    }

    /// <summary>The rendezvous score of a node for a key: a stable 64-bit hash (the same in every process).</summary>
    public static ulong Score(string node, string key)
    {
        // FNV-1a over "node\0key", then a SplitMix64 finaliser so that near-identical names spread well.
        var hash = 14695981039346656037UL;
        foreach (var b in Encoding.UTF8.GetBytes($"{node}\0{key}"))
        {
            hash = (hash ^ b) * 1099511628211UL;
        }

        hash = (hash ^ (hash >> 30)) * 0xBF58476D1CE4E5B9UL;
        hash = (hash ^ (hash >> 27)) * 0x94D049BB133111EBUL;
        return hash ^ (hash >> 31);
    }

    /// <summary>Eligible nodes with the interfaces each may use, or why there are none.</summary>
    private static (Dictionary<string, IReadOnlyList<string>> Nodes, string? Reason) Candidates(
        AnnouncedService service,
        IReadOnlyList<ElectionNode> nodes,
        IReadOnlyDictionary<string, IReadOnlyDictionary<string, string>> pools,
        IReadOnlyList<L2Advertisement> advertisements)
    {
        var eligible = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        if (service.Pool is null || !pools.TryGetValue(service.Pool, out var poolLabels))
        {
            return (eligible, service.Pool is null ? "the Service names no pool (lballocator.io/ip-allocated-from-pool)" : $"pool \"{service.Pool}\" does not exist");
        }

        var covering = advertisements
            .Where(ad => Covers(ad, service.Pool, poolLabels) && (ad.ServiceSelectors.Count == 0 || ad.ServiceSelectors.Any(s => s.Matches(service.Labels))))
            .ToList();
        if (covering.Count == 0)
        {
            return (eligible, $"no L2Advertisement covers pool \"{service.Pool}\" and this Service");
        }

        var localWithoutEndpoints = false;
        foreach (var node in nodes)
        {
            var ads = covering.Where(ad => ad.NodeSelectors.Count == 0 || ad.NodeSelectors.Any(s => s.Matches(node.Labels))).ToList();
            if (ads.Count == 0 || !node.SpeakerAlive || node.NetworkUnavailable || node.Labels.ContainsKey(ExcludeLabel))
            {
                continue;
            }

            if (service.LocalTrafficPolicy && service.NodesWithReadyEndpoints?.Contains(node.Name) != true)
            {
                localWithoutEndpoints = true;
                continue;
            }

            // An advertisement without interfaces allows every usable interface, which includes the named ones.
            eligible[node.Name] = ads.Any(ad => ad.Interfaces.Count == 0)
                ? []
                : [.. ads.SelectMany(ad => ad.Interfaces).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];
        }

        if (eligible.Count > 0)
        {
            return (eligible, null);
        }

        return (eligible, localWithoutEndpoints
            ? "externalTrafficPolicy is Local and no eligible node has a ready endpoint"
            : $"no node with a live speaker is eligible (L2Advertisement nodeSelectors, {ExcludeLabel}, NetworkUnavailable)");
    }

    private static bool Covers(L2Advertisement ad, string pool, IReadOnlyDictionary<string, string> poolLabels) =>
        (ad.IpAddressPools.Count == 0 && ad.IpAddressPoolSelectors.Count == 0)
        || ad.IpAddressPools.Contains(pool, StringComparer.Ordinal)
        || ad.IpAddressPoolSelectors.Any(s => s.Matches(poolLabels));

    /// <summary>Indexes of services, grouped so that Services with an address in common share a group.</summary>
    private static List<List<int>> GroupBySharedAddress(IReadOnlyList<AnnouncedService> services)
    {
        var parent = Enumerable.Range(0, services.Count).ToArray();
        var firstUser = new Dictionary<Ip, int>();
        for (var i = 0; i < services.Count; i++)
        {
            foreach (var ip in services[i].Addresses)
            {
                if (firstUser.TryGetValue(ip, out var other))
                {
                    parent[Find(i)] = Find(other);
                }
                else
                {
                    firstUser[ip] = i;
                }
            }
        }

        return [.. Enumerable.Range(0, services.Count).Where(i => services[i].Addresses.Count > 0).GroupBy(Find).Select(g => g.ToList())];

        int Find(int i)
        {
            while (parent[i] != i)
            {
                i = parent[i] = parent[parent[i]];
            }

            return i;
        }
    }
}

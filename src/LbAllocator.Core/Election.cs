using System.Text;

namespace LbAllocator.Core;

/// <summary>
/// A node as the election sees it. Whether the node can answer at all is the conjunction of these flags;
/// a per-node health signal (capture open, link up) belongs here as one more.
/// </summary>
public sealed record ElectionNode(
    string Name,
    IReadOnlyDictionary<string, string> Labels,
    bool SpeakerAlive,
    bool NetworkUnavailable = false);

/// <summary>A Service with addresses to announce.</summary>
/// <param name="NodesWithEndpoints">For the Local policy: the nodes whose endpoints may take the traffic (see <see cref="LocalEndpoints"/>).</param>
public sealed record AnnouncedService(
    string Key,
    IReadOnlyList<Ip> Addresses,
    string? Pool,
    IReadOnlyDictionary<string, string> Labels,
    bool LocalTrafficPolicy = false,
    IReadOnlySet<string>? NodesWithEndpoints = null);

/// <summary>
/// Who announces a Service's addresses: a node and the interfaces to use there (empty: every usable
/// interface), or no node and why not.
/// </summary>
public sealed record Announcement(string ServiceKey, IReadOnlyList<Ip> Addresses, string? Node, IReadOnlyList<string> Interfaces, string? Reason);

/// <summary>
/// Chooses the node that announces each address. Every speaker runs this on the same inputs and gets the
/// same answer, so no coordination is needed beyond seeing the same objects and leases.
/// Preferences first: the candidates in the best preference tier (<see cref="L2Advertisement.PreferredNodeSelectors"/>;
/// a node's tier is the best that any covering advertisement selecting it gives it, and for Services sharing an
/// address the best that any of them gives it) compete; nodes no preference names come last. Within a tier,
/// rendezvous hashing: each node scores (node, key) and the highest score wins, so a node joining takes only the
/// keys it now wins and a node leaving gives up only its own. The winner depends on the current inputs alone,
/// never on who won before, so every speaker agrees, and a preferred node coming back takes its addresses back.
/// <see cref="Decide"/> states the rule over whole inputs; <see cref="ElectionTable"/> keeps the same
/// result up to date change by change. Both use the parts below, so the rule lives here once.
/// </summary>
public static class Election
{
    public const string ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers";

    internal const string SharingReason = "the Services sharing its address have no eligible node in common";

    private const ulong FnvOffset = 14695981039346656037UL;
    private const ulong FnvPrime = 1099511628211UL;

    /// <returns>One announcement per Service with addresses, in input order.</returns>
    public static IReadOnlyList<Announcement> Decide(
        IReadOnlyList<AnnouncedService> services,
        IReadOnlyList<ElectionNode> nodes,
        IReadOnlyList<Pool> pools,
        IReadOnlyList<L2Advertisement> advertisements)
    {
        var poolsByName = pools.ToDictionary(p => p.Name, StringComparer.Ordinal);
        var admitted = services.Select(s => Admit(s, poolsByName, advertisements)).ToList();
        var usable = nodes.Where(CanStand).ToList();

        // Services sharing an address must be announced from one node (one MAC per address), so they are
        // elected together: the group's candidates are the nodes every member can use, its key its lowest address.
        var result = new Announcement?[services.Count];
        foreach (var group in GroupBySharedAddress(admitted))
        {
            var addresses = group.SelectMany(i => admitted[i].Addresses).ToList();
            var key = addresses.Count == 0 ? "" : addresses.Min().ToString();
            var winner = addresses.Count == 0 ? null : usable
                .Select(node => (Node: node, Rank: RankIn(group.Select(i => admitted[i]), node)))
                .Where(candidate => candidate.Rank is not null)
                .OrderBy(candidate => candidate.Rank)
                .ThenByDescending(candidate => Score(candidate.Node.Name, key))
                .ThenBy(candidate => candidate.Node.Name, StringComparer.Ordinal)
                .Select(candidate => candidate.Node.Name)
                .FirstOrDefault();
            foreach (var i in group)
            {
                var member = admitted[i];
                result[i] = winner is null
                    ? member.NotAnnounced(member.OwnReason(usable.Where(n => member.PlacementOn(n) is not null).Select(n => n.Name)) ?? SharingReason)
                    : new Announcement(member.Service.Key, member.Addresses, winner, member.PlacementOn(usable.First(n => n.Name == winner))!.Interfaces, null);
            }
        }

        return [.. result.OfType<Announcement>()];
    }

    /// <summary>The rendezvous score of a node for a key: a stable 64-bit hash (the same in every process).</summary>
    public static ulong Score(string node, string key) => Score(NodePrefix(node), Utf8(key));

    /// <summary>The hash state after "node\0": a node's share of every score, computed once per node.</summary>
    internal static ulong NodePrefix(string node) => (Feed(FnvOffset, Utf8(node)) ^ 0) * FnvPrime;

    /// <summary>The score from a node's prefix and the key's UTF-8 bytes, without allocating.</summary>
    internal static ulong Score(ulong nodePrefix, ReadOnlySpan<byte> key)
    {
        // FNV-1a over "node\0key", then a SplitMix64 finaliser so that near-identical names spread well.
        var hash = Feed(nodePrefix, key);
        hash = (hash ^ (hash >> 30)) * 0xBF58476D1CE4E5B9UL;
        hash = (hash ^ (hash >> 27)) * 0x94D049BB133111EBUL;
        return hash ^ (hash >> 31);
    }

    internal static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);

    /// <summary>Whether a node may stand for election at all, whatever the Service.</summary>
    internal static bool CanStand(ElectionNode node) =>
        node.SpeakerAlive && !node.NetworkUnavailable && !node.Labels.ContainsKey(ExcludeLabel);

    /// <summary>
    /// A Service checked against the configuration: the addresses it may announce (those inside its pool; an
    /// address from anywhere else is never answered) and the advertisements that cover it, or why it has none.
    /// </summary>
    internal static Admitted Admit(AnnouncedService service, IReadOnlyDictionary<string, Pool> pools, IReadOnlyList<L2Advertisement> advertisements)
    {
        if (service.Pool is null)
        {
            return new(service, [], [], "the Service names no pool (lballocator.io/ip-allocated-from-pool)");
        }

        if (!pools.TryGetValue(service.Pool, out var pool))
        {
            return new(service, [], [], $"pool \"{service.Pool}\" does not exist or is not valid");
        }

        var inside = service.Addresses.Where(pool.Contains).ToList();
        if (inside.Count == 0)
        {
            return new(service, [], [], $"none of its addresses is in pool \"{service.Pool}\"");
        }

        var covering = advertisements
            .Where(ad => ad.Covers(pool) && (ad.ServiceSelectors.Count == 0 || ad.ServiceSelectors.Any(s => s.Matches(service.Labels))))
            .ToList();
        return covering.Count == 0
            ? new(service, [], [], $"no L2Advertisement covers pool \"{service.Pool}\" and this Service")
            : new(service, inside, covering, null);
    }

    /// <summary>A node's preference tier for Services elected together (the best any of them gives it), or null when one of them may not use it.</summary>
    private static int? RankIn(IEnumerable<Admitted> members, ElectionNode node)
    {
        var rank = L2Advertisement.Unpreferred;
        foreach (var member in members)
        {
            if (member.PlacementOn(node) is not { } placement || !member.HasEndpointOn(node.Name))
            {
                return null;
            }

            rank = Math.Min(rank, placement.Rank);
        }

        return rank;
    }

    /// <summary>Indexes of services with addresses, grouped so that Services with an address in common share a group.</summary>
    private static List<List<int>> GroupBySharedAddress(List<Admitted> services)
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

        return [.. Enumerable.Range(0, services.Count).Where(i => services[i].Service.Addresses.Count > 0).GroupBy(Find).Select(g => g.ToList())];

        int Find(int i)
        {
            while (parent[i] != i)
            {
                i = parent[i] = parent[parent[i]];
            }

            return i;
        }
    }

    private static ulong Feed(ulong hash, ReadOnlySpan<byte> bytes)
    {
        foreach (var b in bytes)
        {
            hash = (hash ^ b) * FnvPrime;
        }

        return hash;
    }
}

/// <summary>
/// Where the advertisements covering a Service put a node that some of them select: the interfaces they allow
/// there (empty: every usable one) and its preference tier (lower first; <see cref="L2Advertisement.Unpreferred"/> last).
/// </summary>
internal sealed record Placement(IReadOnlyList<string> Interfaces, int Rank);

/// <summary>A Service checked against the configuration (see <see cref="Election.Admit"/>); Reason set when it cannot be announced at all.</summary>
internal sealed record Admitted(AnnouncedService Service, IReadOnlyList<Ip> Addresses, IReadOnlyList<L2Advertisement> Covering, string? Reason)
{
    private const string LocalReason = "externalTrafficPolicy is Local and no eligible node has a ready or serving endpoint";

    private static readonly string NoneReason =
        $"no node with a live speaker is eligible (L2Advertisement nodeSelectors, {Election.ExcludeLabel}, NetworkUnavailable)";

    /// <summary>Where the covering advertisements put a node, or null when none selects it.</summary>
    public Placement? PlacementOn(ElectionNode node) => PlacementOn(Covering, node.Labels);

    public static Placement? PlacementOn(IReadOnlyList<L2Advertisement> covering, IReadOnlyDictionary<string, string> labels)
    {
        var ads = covering.Where(ad => ad.SelectsNode(labels)).ToList();
        if (ads.Count == 0)
        {
            return null;
        }

        // An advertisement without interfaces allows every usable interface, which includes the named ones.
        IReadOnlyList<string> interfaces = ads.Any(ad => ad.Interfaces.Count == 0)
            ? []
            : [.. ads.SelectMany(ad => ad.Interfaces).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];
        // Each advertisement ranks only the nodes it selects; the best tier wins, whatever the advertisements' order.
        return new Placement(interfaces, ads.Min(ad => ad.RankOf(labels)));
    }

    public bool HasEndpointOn(string node) => !Service.LocalTrafficPolicy || Service.NodesWithEndpoints?.Contains(node) == true;

    /// <summary>Why no node may announce this Service on its own, or null when some node may.</summary>
    /// <param name="selected">The standing nodes that an advertisement covering this Service selects.</param>
    public string? OwnReason(IEnumerable<string> selected)
    {
        if (Reason is not null)
        {
            return Reason;
        }

        var localWithoutEndpoints = false;
        foreach (var node in selected)
        {
            if (HasEndpointOn(node))
            {
                return null;
            }

            localWithoutEndpoints = true;
        }

        return localWithoutEndpoints ? LocalReason : NoneReason;
    }

    /// <summary>The announcement of nobody: the addresses shown are the Service's own when none is admitted.</summary>
    public Announcement NotAnnounced(string reason) => new(Service.Key, Addresses.Count > 0 ? Addresses : Service.Addresses, null, [], reason);
}

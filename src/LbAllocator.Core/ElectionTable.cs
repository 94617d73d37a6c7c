namespace LbAllocator.Core;

/// <summary>
/// The election kept up to date change by change, always equal to <see cref="Election.Decide"/> on the same
/// inputs (the same rule parts, applied to less). Per group of Services (those sharing an address) it keeps
/// the winner with its preference tier and score, and per node the groups it wins, so that
/// a Service changing re-elects only the groups it leaves and joins (one score per candidate node);
/// a node leaving re-elects only the groups it won;
/// a node joining is scored once per group against that group's winner;
/// a node whose labels change leaves and joins again (its tiers and eligibility may have changed).
/// The configuration is fixed for a table's life: a pool or advertisement change builds a new table.
/// Not thread-safe: one caller at a time.
/// </summary>
public sealed class ElectionTable
{
    private readonly Dictionary<string, Pool> _pools;
    private readonly IReadOnlyList<L2Advertisement> _advertisements;
    private readonly Dictionary<string, Candidate> _nodes = new(StringComparer.Ordinal); // standing nodes only
    private readonly Dictionary<string, Member> _services = new(StringComparer.Ordinal);
    private readonly Dictionary<Ip, List<Member>> _byAddress = [];
    private readonly HashSet<Group> _groups = [];
    private readonly Dictionary<string, HashSet<Group>> _won = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Profile> _profiles = new(StringComparer.Ordinal);
    private int _nodeVersion; // bumped on every node change: what was derived from the set of nodes is stale

    public ElectionTable(IReadOnlyList<Pool> pools, IReadOnlyList<L2Advertisement> advertisements)
    {
        _pools = pools.ToDictionary(p => p.Name, StringComparer.Ordinal);
        _advertisements = advertisements;
    }

    /// <summary>A table for whole inputs: the full recompute.</summary>
    public static ElectionTable Build(
        IReadOnlyList<Pool> pools, IReadOnlyList<L2Advertisement> advertisements, IEnumerable<ElectionNode> nodes, IEnumerable<AnnouncedService> services)
    {
        var table = new ElectionTable(pools, advertisements);
        foreach (var node in nodes)
        {
            table.SetNode(node);
        }

        foreach (var service in services)
        {
            table.SetService(service);
        }

        return table;
    }

    /// <summary>Services with addresses.</summary>
    public int Count => _services.Count;

    /// <summary>Adds or updates a node; a node that cannot stand is as good as removed.</summary>
    public void SetNode(ElectionNode node)
    {
        var standing = Election.CanStand(node);
        if (_nodes.TryGetValue(node.Name, out var existing))
        {
            if (standing && SameLabels(existing.Node.Labels, node.Labels))
            {
                return;
            }

            Leave(existing);
        }

        if (standing)
        {
            Join(new Candidate(node));
        }
    }

    public void RemoveNode(string name)
    {
        if (_nodes.TryGetValue(name, out var node))
        {
            Leave(node);
        }
    }

    /// <summary>Adds or updates a Service; one without addresses is removed (nothing to announce).</summary>
    public void SetService(AnnouncedService service)
    {
        _services.TryGetValue(service.Key, out var old);
        if (service.Addresses.Count == 0 || (old is not null && Same(old.Admitted.Service, service)))
        {
            if (service.Addresses.Count == 0)
            {
                RemoveService(service.Key);
            }

            return;
        }

        var affected = new HashSet<Member>();
        if (old is not null)
        {
            Detach(old, affected);
        }

        var admitted = Election.Admit(service, _pools, _advertisements);
        var member = new Member(admitted, admitted.Reason is null ? ProfileFor(admitted.Covering) : null);
        _services[service.Key] = member;
        foreach (var ip in admitted.Addresses)
        {
            if (!_byAddress.TryGetValue(ip, out var users))
            {
                _byAddress[ip] = users = [];
            }

            foreach (var other in users)
            {
                affected.UnionWith(other.Group!.Members);
            }

            users.Add(member);
        }

        if (old is not null)
        {
            affected.Remove(old); // came back with the members of its dissolved group
        }

        affected.Add(member);
        Regroup(affected);
    }

    public void RemoveService(string key)
    {
        if (_services.TryGetValue(key, out var old))
        {
            var affected = new HashSet<Member>();
            Detach(old, affected);
            Regroup(affected);
        }
    }

    /// <summary>The announcement for a Service, or null when it has no addresses (or is unknown).</summary>
    public Announcement? Get(string serviceKey) => _services.TryGetValue(serviceKey, out var member) ? Announce(member) : null;

    /// <summary>What a node announces.</summary>
    public IEnumerable<Announcement> WonBy(string node) =>
        _won.TryGetValue(node, out var groups) ? groups.SelectMany(g => g.Members).Select(Announce) : [];

    /// <summary>The Services nobody announces, with why.</summary>
    public IEnumerable<Announcement> NotAnnounced() => _groups.Where(g => g.Winner is null).SelectMany(g => g.Members).Select(Announce);

    public IEnumerable<Announcement> All() => _services.Values.Select(Announce);

    private void Leave(Candidate node)
    {
        _nodes.Remove(node.Name);
        _nodeVersion++;
        if (_won.Remove(node.Name, out var groups))
        {
            foreach (var group in groups)
            {
                Elect(group);
            }
        }
    }

    private void Join(Candidate node)
    {
        _nodes[node.Name] = node;
        _nodeVersion++;
        foreach (var group in _groups)
        {
            if (group.Key is null || RankIn(group, node) is not { } rank)
            {
                continue;
            }

            var score = Election.Score(node.Prefix, group.Key);
            if (group.Winner is null || Beats(rank, score, node, group.Rank, group.Score, group.Winner))
            {
                SetWinner(group, node, rank, score);
            }
        }
    }

    /// <summary>Elects a group from scratch: every standing node its first member's advertisements select.</summary>
    private void Elect(Group group)
    {
        Candidate? best = null;
        var (bestRank, bestScore) = (0, 0UL);
        if (group.Key is not null && group.Members[0].Profile is { } profile)
        {
            // The usual group, one Service without the Local policy: every node its profile selects may win.
            var any = group.Members.Count == 1 && !group.Members[0].Admitted.Service.LocalTrafficPolicy;
            foreach (var node in Standing(profile))
            {
                if ((any ? node.PlacementFor(profile)!.Rank : RankIn(group, node)) is not { } rank)
                {
                    continue;
                }

                var score = Election.Score(node.Prefix, group.Key);
                if (best is null || Beats(rank, score, node, bestRank, bestScore, best))
                {
                    (best, bestRank, bestScore) = (node, rank, score);
                }
            }
        }

        SetWinner(group, best, bestRank, bestScore);
    }

    /// <summary>The better preference tier wins; within a tier the highest score; on a tie, the lower name (as Decide orders them).</summary>
    private static bool Beats(int rank, ulong score, Candidate node, int otherRank, ulong otherScore, Candidate other) =>
        rank != otherRank ? rank < otherRank : score > otherScore || (score == otherScore && string.CompareOrdinal(node.Name, other.Name) < 0);

    /// <summary>A node's preference tier for a group (the best any member gives it), or null when some member may not use it.</summary>
    private static int? RankIn(Group group, Candidate node)
    {
        var rank = L2Advertisement.Unpreferred;
        foreach (var member in group.Members)
        {
            if (member.Profile is null || node.PlacementFor(member.Profile) is not { } placement || !member.Admitted.HasEndpointOn(node.Name))
            {
                return null;
            }

            rank = Math.Min(rank, placement.Rank);
        }

        return rank;
    }

    private void SetWinner(Group group, Candidate? node, int rank, ulong score)
    {
        if (group.Winner is { } old && _won.TryGetValue(old.Name, out var previous))
        {
            previous.Remove(group);
            if (previous.Count == 0)
            {
                _won.Remove(old.Name);
            }
        }

        (group.Winner, group.Rank, group.Score) = (node, rank, score);
        if (node is not null)
        {
            if (!_won.TryGetValue(node.Name, out var groups))
            {
                _won[node.Name] = groups = [];
            }

            groups.Add(group);
        }
    }

    /// <summary>Takes a Service and its group out; the group's other members go into <paramref name="affected"/> to be regrouped.</summary>
    private void Detach(Member member, HashSet<Member> affected)
    {
        var group = member.Group!;
        _groups.Remove(group);
        SetWinner(group, null, 0, 0);
        affected.UnionWith(group.Members);
        affected.Remove(member);
        _services.Remove(member.Admitted.Service.Key);
        foreach (var ip in member.Admitted.Addresses)
        {
            var users = _byAddress[ip];
            users.Remove(member);
            if (users.Count == 0)
            {
                _byAddress.Remove(ip);
            }
        }
    }

    /// <summary>Dissolves the groups of <paramref name="affected"/>, forms them again by shared address, and elects each.</summary>
    private void Regroup(HashSet<Member> affected)
    {
        foreach (var member in affected)
        {
            if (member.Group is { } group && _groups.Remove(group))
            {
                SetWinner(group, null, 0, 0);
            }
        }

        var pending = new HashSet<Member>(affected);
        var stack = new Stack<Member>();
        while (pending.Count > 0)
        {
            var first = pending.First();
            pending.Remove(first);
            stack.Push(first);
            var group = new Group();
            while (stack.TryPop(out var member))
            {
                group.Members.Add(member);
                member.Group = group;
                foreach (var ip in member.Admitted.Addresses)
                {
                    foreach (var other in _byAddress[ip])
                    {
                        if (pending.Remove(other))
                        {
                            stack.Push(other);
                        }
                    }
                }
            }

            var addresses = group.Members.SelectMany(m => m.Admitted.Addresses).ToList();
            group.Key = addresses.Count == 0 ? null : Election.Utf8(addresses.Min().ToString());
            _groups.Add(group);
            Elect(group);
        }
    }

    private Announcement Announce(Member member)
    {
        var admitted = member.Admitted;
        if (member.Group!.Winner is { } winner)
        {
            return new Announcement(admitted.Service.Key, admitted.Addresses, winner.Node.Name, winner.PlacementFor(member.Profile!)!.Interfaces, null);
        }

        if (member.ReasonVersion != _nodeVersion)
        {
            var selected = member.Profile is null ? [] : Standing(member.Profile).Select(n => n.Node.Name);
            member.Reason = admitted.OwnReason(selected) ?? Election.SharingReason;
            member.ReasonVersion = _nodeVersion;
        }

        return admitted.NotAnnounced(member.Reason!);
    }

    /// <summary>The standing nodes some of the profile's advertisements select, refreshed after node changes.</summary>
    private List<Candidate> Standing(Profile profile)
    {
        if (profile.Version != _nodeVersion)
        {
            profile.Standing = [.. _nodes.Values.Where(n => n.PlacementFor(profile) is not null)];
            profile.Version = _nodeVersion;
        }

        return profile.Standing;
    }

    /// <summary>Services covered by the same advertisements share one profile, so node checks are per profile, not per Service.</summary>
    private Profile ProfileFor(IReadOnlyList<L2Advertisement> covering)
    {
        var key = string.Join('\n', covering.Select(a => a.Name));
        if (!_profiles.TryGetValue(key, out var profile))
        {
            _profiles[key] = profile = new Profile(covering);
        }

        return profile;
    }

    private static bool Same(AnnouncedService a, AnnouncedService b) =>
        a.Pool == b.Pool
        && a.LocalTrafficPolicy == b.LocalTrafficPolicy
        && a.Addresses.SequenceEqual(b.Addresses)
        && SameLabels(a.Labels, b.Labels)
        && (a.NodesWithEndpoints is null ? b.NodesWithEndpoints is null : b.NodesWithEndpoints is not null && a.NodesWithEndpoints.SetEquals(b.NodesWithEndpoints));

    private static bool SameLabels(IReadOnlyDictionary<string, string> a, IReadOnlyDictionary<string, string> b) =>
        a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var value) && value == kv.Value);

    private sealed class Candidate(ElectionNode node)
    {
        private readonly Dictionary<Profile, Placement?> _placements = [];

        public ElectionNode Node { get; } = node;

        public string Name => Node.Name;

        public ulong Prefix { get; } = Election.NodePrefix(node.Name);

        /// <summary>Where the profile's advertisements put this node (interfaces, preference tier), or null when none selects it.</summary>
        public Placement? PlacementFor(Profile profile)
        {
            if (!_placements.TryGetValue(profile, out var placement))
            {
                _placements[profile] = placement = Admitted.PlacementOn(profile.Covering, Node.Labels);
            }

            return placement;
        }
    }

    private sealed class Profile(IReadOnlyList<L2Advertisement> covering)
    {
        public IReadOnlyList<L2Advertisement> Covering { get; } = covering;

        public List<Candidate> Standing { get; set; } = [];

        public int Version { get; set; } = -1;
    }

    private sealed class Member(Admitted admitted, Profile? profile)
    {
        public Admitted Admitted { get; } = admitted;

        public Profile? Profile { get; } = profile;

        public Group? Group { get; set; }

        public string? Reason { get; set; }

        public int ReasonVersion { get; set; } = -1;
    }

    private sealed class Group
    {
        public List<Member> Members { get; } = [];

        public byte[]? Key { get; set; }

        public Candidate? Winner { get; set; }

        public int Rank { get; set; }

        public ulong Score { get; set; }
    }
}

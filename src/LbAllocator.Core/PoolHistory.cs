namespace LbAllocator.Core;

/// <summary>
/// Remembers each pool's last valid spec, so that an edit that breaks a pool keeps it working as it was
/// (nothing renumbered) while the problem is reported; a pool that was never valid is not used.
/// </summary>
public sealed class PoolHistory
{
    private readonly Dictionary<string, PoolSpec> _lastValid = new(StringComparer.Ordinal);

    /// <param name="pools">The current specs, oldest first: when pools overlap, the older keeps working.</param>
    public ConfigSnapshot Apply(IReadOnlyList<PoolSpec> pools, IReadOnlyList<L2AdvertisementSpec> advertisements)
    {
        var current = ConfigValidator.Validate(pools, advertisements);
        var broken = current.Problems.Where(p => p.Kind == ConfigValidator.PoolKind).Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        var stale = new HashSet<string>(StringComparer.Ordinal);
        var effective = pools.Select(p =>
        {
            if (broken.Contains(p.Name) && _lastValid.TryGetValue(p.Name, out var last))
            {
                stale.Add(p.Name);
                return last;
            }

            return p;
        }).ToList();

        var running = stale.Count == 0 ? current : ConfigValidator.Validate(effective, advertisements);
        var runningNames = running.Pools.Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        stale.IntersectWith(runningNames);

        foreach (var name in _lastValid.Keys.Where(n => !pools.Any(p => p.Name == n)).ToList())
        {
            _lastValid.Remove(name);
        }

        foreach (var spec in pools.Where(p => !broken.Contains(p.Name)))
        {
            _lastValid[spec.Name] = spec;
        }

        return new ConfigSnapshot(running with { Problems = current.Problems }, stale);
    }
}

/// <summary>The configuration in force, and what to report about it.</summary>
/// <param name="Config">
/// The pools and advertisements to use (current specs, or last valid ones for broken pool edits) and the problems of the current specs.
/// </param>
/// <param name="Stale">Pools running on their last valid spec because the current one is invalid.</param>
public sealed record ConfigSnapshot(ValidatedConfig Config, IReadOnlySet<string> Stale)
{
    /// <summary>The problems of one object (<see cref="ConfigValidator.PoolKind"/> or <see cref="ConfigValidator.AdvertisementKind"/>), joined, or null when it has none.</summary>
    public string? Problem(string kind, string name)
    {
        var messages = Config.Problems.Where(p => p.Kind == kind && p.Name == name).Select(p => p.Message).ToList();
        return messages.Count > 0 ? string.Join("; ", messages) : null;
    }

    /// <summary>
    /// Whether this snapshot runs the same pools, in the same order, as <paramref name="other"/> (an edit of an
    /// advertisement, or a broken pool edit running on its last valid spec): the allocator then has nothing to re-settle.
    /// </summary>
    public bool RunsSamePoolsAs(ConfigSnapshot? other) =>
        other is not null && other.Config.Pools.Count == Config.Pools.Count && Config.Pools.Zip(other.Config.Pools).All(p => Same(p.First, p.Second));

    private static bool Same(Pool a, Pool b) =>
        a.Name == b.Name && a.AutoAssign == b.AutoAssign && a.AvoidBuggyIPs == b.AvoidBuggyIPs && a.Ranges.SequenceEqual(b.Ranges)
        && a.Labels.Count == b.Labels.Count && a.Labels.All(l => b.Labels.TryGetValue(l.Key, out var value) && value == l.Value)
        && (a.Allocation, b.Allocation) switch
        {
            (null, null) => true,
            ({ } x, { } y) => x.Priority == y.Priority && x.Namespaces.SequenceEqual(y.Namespaces)
                && SameSelectors(x.NamespaceSelectors, y.NamespaceSelectors) && SameSelectors(x.ServiceSelectors, y.ServiceSelectors),
            _ => false,
        };

    private static bool SameSelectors(IReadOnlyList<LabelSelector> a, IReadOnlyList<LabelSelector> b) =>
        a.Select(s => s.Canonical).SequenceEqual(b.Select(s => s.Canonical));
}

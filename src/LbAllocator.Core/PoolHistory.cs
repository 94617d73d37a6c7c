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
}

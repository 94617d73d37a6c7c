namespace LbAllocator.Core;

/// <summary>
/// Turns user-written pools and advertisements into validated ones. An invalid object is left out and
/// reported; it never stops the valid ones. When two pools overlap, the one given first keeps working.
/// An advertisement naming a pool that does not exist is reported and keeps working for the pools that do; one whose
/// preferredNodeSelectors are invalid is reported and keeps working without preferences (they are soft: a typo in
/// one must not leave its addresses unanswered).
/// </summary>
public static class ConfigValidator
{
    public const string PoolKind = "IPAddressPool";
    public const string AdvertisementKind = "L2Advertisement";

    public static ValidatedConfig Validate(IReadOnlyList<PoolSpec> pools, IReadOnlyList<L2AdvertisementSpec> advertisements)
    {
        var problems = new List<ConfigProblem>();
        var valid = new List<Pool>();
        var seenNames = new HashSet<string>(StringComparer.Ordinal);
        // Ranges of pools accepted so far, to reject a later pool that overlaps one of them.
        var claimed = new List<(IpRange Range, string Pool, string Text)>();

        foreach (var (index, spec) in pools.Index())
        {
            var messages = new List<string>();
            if (!seenNames.Add(spec.Name))
            {
                messages.Add("metadata.name: another IPAddressPool has the same name");
            }
            else if (!Names.IsDnsSubdomain(spec.Name))
            {
                messages.Add($"metadata.name: \"{spec.Name}\" is not a valid name (lowercase letters, digits, '-' and '.')");
            }

            var pool = ValidatePool(spec, messages);
            if (pool is not null)
            {
                var ranges = pool.Ranges;
                for (var i = 0; i < ranges.Count; i++)
                {
                    foreach (var other in claimed.Where(c => c.Range.Overlaps(ranges[i])))
                    {
                        messages.Add($"spec.addresses[{i}]: {spec.Addresses![i].Trim()} overlaps {other.Text} of pool \"{other.Pool}\" at {ranges[i].Intersect(other.Range)}");
                    }
                }
            }

            if (messages.Count > 0 || pool is null)
            {
                problems.AddRange(messages.Select(m => new ConfigProblem(PoolKind, spec.Name, m) { Index = index }));
                continue;
            }

            valid.Add(pool);
            claimed.AddRange(pool.Ranges.Select((r, i) => (r, pool.Name, spec.Addresses![i].Trim())));
        }

        var poolNames = pools.Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        var validAds = new List<L2Advertisement>();
        var seenAds = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (index, spec) in advertisements.Index())
        {
            var messages = new List<string>();
            var duplicate = !seenAds.Add(spec.Name);
            if (duplicate)
            {
                messages.Add("metadata.name: another L2Advertisement has the same name");
            }

            var ad = ValidateAdvertisement(spec, poolNames, messages);
            problems.AddRange(messages.Select(m => new ConfigProblem(AdvertisementKind, spec.Name, m) { Index = index }));
            if (ad is not null && !duplicate)
            {
                validAds.Add(ad);
            }
        }

        return new ValidatedConfig(valid, validAds, problems);
    }

    /// <summary>Validates one pool on its own (no cross-pool checks); null when it has problems.</summary>
    public static Pool? ValidatePool(PoolSpec spec, List<string> problems)
    {
        var before = problems.Count;
        var ranges = new List<IpRange>();
        var addresses = spec.Addresses ?? [];
        if (addresses.Count == 0)
        {
            problems.Add("spec.addresses: must list at least one CIDR, range or address");
        }

        for (var i = 0; i < addresses.Count; i++)
        {
            if (!IpRange.TryParse(addresses[i], out var range, out var error))
            {
                problems.Add($"spec.addresses[{i}]: {error}");
                continue;
            }

            for (var j = 0; j < ranges.Count; j++)
            {
                if (ranges[j].Overlaps(range))
                {
                    problems.Add($"spec.addresses[{i}]: {addresses[i].Trim()} overlaps spec.addresses[{j}] {addresses[j].Trim()} at {range.Intersect(ranges[j])}");
                }
            }

            ranges.Add(range);
        }

        ServiceAllocation? allocation = null;
        if (spec.ServiceAllocation is { } sa)
        {
            var namespaces = sa.Namespaces ?? [];
            for (var i = 0; i < namespaces.Count; i++)
            {
                if (!Names.IsDnsLabel(namespaces[i]))
                {
                    problems.Add($"spec.serviceAllocation.namespaces[{i}]: \"{namespaces[i]}\" is not a valid namespace name");
                }
                else if (namespaces.Take(i).Contains(namespaces[i], StringComparer.Ordinal))
                {
                    problems.Add($"spec.serviceAllocation.namespaces[{i}]: duplicate namespace \"{namespaces[i]}\"");
                }
            }

            allocation = new ServiceAllocation(
                sa.Priority,
                namespaces,
                Selectors(sa.NamespaceSelectors, "spec.serviceAllocation.namespaceSelectors", problems),
                Selectors(sa.ServiceSelectors, "spec.serviceAllocation.serviceSelectors", problems));
        }

        if (problems.Count > before)
        {
            return null;
        }

        return new Pool(
            spec.Name,
            ranges,
            spec.AutoAssign ?? true,
            spec.AvoidBuggyIPs ?? false,
            allocation,
            spec.Labels ?? new Dictionary<string, string>());
    }

    /// <summary>What becomes of an advertisement with problems: not used, or used without the parts that are wrong.</summary>
    /// <param name="inForce">The advertisement as used, or null when it is not used.</param>
    public static string Consequence(L2AdvertisementSpec spec, L2Advertisement? inForce)
    {
        if (inForce is null)
        {
            return "the advertisement is not used";
        }

        var parts = new List<string>();
        if ((spec.IpAddressPools?.Count ?? 0) > inForce.IpAddressPools.Count)
        {
            parts.Add("the advertisement covers only the pools that exist");
        }

        if ((spec.PreferredNodeSelectors?.Count ?? 0) > inForce.PreferredNodeSelectors.Count)
        {
            parts.Add("the advertisement is used without its preferredNodeSelectors (no node is preferred)");
        }

        return parts.Count == 0 ? "the advertisement is used" : string.Join("; ", parts);
    }

    /// <summary>
    /// Validates one advertisement; null when it has a problem that makes it unusable. A pool it names that does
    /// not exist is reported but only that pool is dropped: the advertisement keeps working for its other pools.
    /// Invalid preferences are reported and dropped, all of them (a tier left out would reorder the others).
    /// </summary>
    private static L2Advertisement? ValidateAdvertisement(L2AdvertisementSpec spec, HashSet<string> poolNames, List<string> problems)
    {
        var before = problems.Count;
        var missing = 0;
        if (!Names.IsDnsSubdomain(spec.Name))
        {
            problems.Add($"metadata.name: \"{spec.Name}\" is not a valid name (lowercase letters, digits, '-' and '.')");
        }

        var pools = spec.IpAddressPools ?? [];
        for (var i = 0; i < pools.Count; i++)
        {
            if (pools.Take(i).Contains(pools[i], StringComparer.Ordinal))
            {
                problems.Add($"spec.ipAddressPools[{i}]: duplicate pool \"{pools[i]}\"");
            }
            else if (!poolNames.Contains(pools[i]))
            {
                problems.Add($"spec.ipAddressPools[{i}]: IPAddressPool \"{pools[i]}\" does not exist");
                missing++;
            }
        }

        var interfaces = spec.Interfaces ?? [];
        for (var i = 0; i < interfaces.Count; i++)
        {
            var name = interfaces[i];
            if (string.IsNullOrEmpty(name) || name.Length > 15 || name is "." or ".." || name.Any(c => c == '/' || c == ':' || char.IsWhiteSpace(c)))
            {
                problems.Add($"spec.interfaces[{i}]: \"{name}\" is not a valid interface name (1-15 characters, no '/', ':' or spaces)");
            }
            else if (interfaces.Take(i).Contains(name, StringComparer.Ordinal))
            {
                problems.Add($"spec.interfaces[{i}]: duplicate interface \"{name}\"");
            }
        }

        var beforePreferences = problems.Count;
        var preferred = Selectors(spec.PreferredNodeSelectors, "spec.preferredNodeSelectors", problems);
        if (spec.PreferredNodeSelectors?.Count > L2Advertisement.MaxPreferenceTiers)
        {
            problems.Add($"spec.preferredNodeSelectors: {spec.PreferredNodeSelectors.Count} selectors; at most {L2Advertisement.MaxPreferenceTiers} preference tiers");
        }

        var preferenceProblems = problems.Count - beforePreferences;
        var ad = new L2Advertisement(
            spec.Name,
            [.. pools.Distinct(StringComparer.Ordinal).Where(poolNames.Contains)],
            Selectors(spec.IpAddressPoolSelectors, "spec.ipAddressPoolSelectors", problems),
            Selectors(spec.NodeSelectors, "spec.nodeSelectors", problems),
            interfaces,
            Selectors(spec.ServiceSelectors, "spec.serviceSelectors", problems))
        {
            AllPools = pools.Count == 0 && (spec.IpAddressPoolSelectors ?? []).Count == 0,
            PreferredNodeSelectors = preferenceProblems > 0 ? [] : preferred,
        };
        return problems.Count - missing - preferenceProblems > before ? null : ad;
    }

    private static List<LabelSelector> Selectors(IReadOnlyList<LabelSelectorSpec>? specs, string path, List<string> problems)
    {
        var selectors = new List<LabelSelector>();
        var list = specs ?? [];
        for (var i = 0; i < list.Count; i++)
        {
            var selector = LabelSelector.Create(list[i], $"{path}[{i}]", problems);
            if (selector is null)
            {
                continue;
            }

            var duplicate = selectors.FindIndex(s => s.Canonical == selector.Canonical);
            if (duplicate >= 0)
            {
                problems.Add($"{path}[{i}]: duplicate selector ({selector}), same as an earlier entry");
            }

            selectors.Add(selector);
        }

        return selectors;
    }
}

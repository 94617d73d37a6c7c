namespace LbAllocator.Core;

/// <summary>An IPAddressPool as written by the user (spec fields as in the manifest), not yet validated.</summary>
public sealed record PoolSpec(
    string Name,
    IReadOnlyList<string>? Addresses,
    bool? AutoAssign = null,
    bool? AvoidBuggyIPs = null,
    ServiceAllocationSpec? ServiceAllocation = null,
    IReadOnlyDictionary<string, string>? Labels = null);

public sealed record ServiceAllocationSpec(
    int? Priority = null,
    IReadOnlyList<string>? Namespaces = null,
    IReadOnlyList<LabelSelectorSpec>? NamespaceSelectors = null,
    IReadOnlyList<LabelSelectorSpec>? ServiceSelectors = null);

/// <summary>An L2Advertisement as written by the user, not yet validated.</summary>
public sealed record L2AdvertisementSpec(
    string Name,
    IReadOnlyList<string>? IpAddressPools = null,
    IReadOnlyList<LabelSelectorSpec>? IpAddressPoolSelectors = null,
    IReadOnlyList<LabelSelectorSpec>? NodeSelectors = null,
    IReadOnlyList<string>? Interfaces = null,
    IReadOnlyList<LabelSelectorSpec>? ServiceSelectors = null,
    IReadOnlyList<LabelSelectorSpec>? PreferredNodeSelectors = null);

/// <summary>A validated pool: ranges in declaration order, none overlapping.</summary>
public sealed record Pool(
    string Name,
    IReadOnlyList<IpRange> Ranges,
    bool AutoAssign,
    bool AvoidBuggyIPs,
    ServiceAllocation? Allocation,
    IReadOnlyDictionary<string, string> Labels)
{
    /// <summary>
    /// Why this pool may not give addresses to the Service, or null if it may
    /// (MetalLB's serviceAllocation semantics: namespace by name or selector, then service selector).
    /// </summary>
    public string? AdmissionProblem(ServiceInfo service)
    {
        if (Allocation is null)
        {
            return null;
        }

        // While the namespace's labels are not known a selector gets the benefit of the doubt: such a Service is
        // judged only to keep what it holds (nobody else takes it meanwhile), never to get a new address.
        if ((Allocation.Namespaces.Count > 0 || Allocation.NamespaceSelectors.Count > 0)
            && !Allocation.Namespaces.Contains(service.Namespace)
            && !(service.NamespaceLabels is { } labels ? Allocation.NamespaceSelectors.Any(s => s.Matches(labels)) : Allocation.NamespaceSelectors.Count > 0))
        {
            return $"pool \"{Name}\" does not admit namespace \"{service.Namespace}\" (spec.serviceAllocation)";
        }

        if (Allocation.ServiceSelectors.Count > 0 && !Allocation.ServiceSelectors.Any(s => s.Matches(service.Labels)))
        {
            return $"pool \"{Name}\" does not admit {service.Key}: its labels match no spec.serviceAllocation.serviceSelectors";
        }

        return null;
    }

    public bool Has(IpFamily family) => Ranges.Any(r => r.Family == family);

    public bool Contains(Ip ip)
    {
        for (var i = 0; i < Ranges.Count; i++)
        {
            if (Ranges[i].Contains(ip))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Whether the address is given out by this pool (in a range and not skipped as a buggy address).</summary>
    public bool Offers(Ip ip) => Contains(ip) && !(AvoidBuggyIPs && BuggyIps.IsBuggy(ip));
}

public sealed record ServiceAllocation(
    int? Priority,
    IReadOnlyList<string> Namespaces,
    IReadOnlyList<LabelSelector> NamespaceSelectors,
    IReadOnlyList<LabelSelector> ServiceSelectors);

public sealed record L2Advertisement(
    string Name,
    IReadOnlyList<string> IpAddressPools,
    IReadOnlyList<LabelSelector> IpAddressPoolSelectors,
    IReadOnlyList<LabelSelector> NodeSelectors,
    IReadOnlyList<string> Interfaces,
    IReadOnlyList<LabelSelector> ServiceSelectors)
{
    /// <summary>
    /// Names no pool and selects none, as written: it covers every pool. Taken from the spec, not from the pools
    /// left after dropping missing ones, so an advertisement whose named pools are all gone covers nothing.
    /// </summary>
    public required bool AllPools { get; init; }

    /// <summary>
    /// Preference tiers among the nodes this advertisement selects, most preferred first: a node's tier is the
    /// first selector it matches (see <see cref="RankOf"/>). Soft: the nodes matching none still stand, last.
    /// </summary>
    public IReadOnlyList<LabelSelector> PreferredNodeSelectors { get; init; } = [];

    /// <summary>Whether the advertisement announces from a node with these labels (nodeSelectors; none: every node).</summary>
    public bool SelectsNode(IReadOnlyDictionary<string, string> labels) => NodeSelectors.Count == 0 || NodeSelectors.Any(s => s.Matches(labels));

    /// <summary>
    /// The preference tier of a node this advertisement selects: the index of the first preferred selector it
    /// matches, or <see cref="Unpreferred"/> (after every tier) when it matches none or there are none.
    /// </summary>
    public int RankOf(IReadOnlyDictionary<string, string> labels)
    {
        for (var i = 0; i < PreferredNodeSelectors.Count; i++)
        {
            if (PreferredNodeSelectors[i].Matches(labels))
            {
                return i;
            }
        }

        return Unpreferred;
    }

    /// <summary>The tier of a node no preference names: after all of them.</summary>
    public const int Unpreferred = int.MaxValue;

    /// <summary>At most this many preference tiers (the CRD schema's maxItems, which also bounds its CEL cost).</summary>
    public const int MaxPreferenceTiers = 8;

    public bool Covers(Pool pool) =>
        AllPools || IpAddressPools.Contains(pool.Name, StringComparer.Ordinal) || IpAddressPoolSelectors.Any(s => s.Matches(pool.Labels));
}

/// <summary>One problem in the configuration, naming the object and the field.</summary>
public sealed record ConfigProblem(string Kind, string Name, string Message)
{
    /// <summary>Which object of its kind, by position in the validator's input, so a caller can say which file it came from.</summary>
    public int Index { get; init; }

    public override string ToString() => $"{Kind}/{Name}: {Message}";
}

public sealed record ValidatedConfig(
    IReadOnlyList<Pool> Pools,
    IReadOnlyList<L2Advertisement> Advertisements,
    IReadOnlyList<ConfigProblem> Problems);

/// <summary>The addresses that confuse old firmware (IPv4 ending in .0 or .255), skipped by avoidBuggyIPs pools.</summary>
public static class BuggyIps
{
    public static bool IsBuggy(Ip ip) => ip.Family == IpFamily.IPv4 && ((ip.Value & 0xFF) == 0 || (ip.Value & 0xFF) == 0xFF);

    /// <summary>How many buggy addresses the range holds, computed without enumerating it.</summary>
    public static UInt128 CountIn(IpRange range)
    {
        if (range.Family != IpFamily.IPv4)
        {
            return 0;
        }

        return UpTo(range.Last.Value) - (range.First.Value == 0 ? 0 : UpTo(range.First.Value - 1));

        // Buggy addresses in [0, n]: one ending in .0 per started block of 256, one ending in .255 per full block.
        static UInt128 UpTo(UInt128 n) => (n / 256) + 1 + ((n + 1) / 256);
    }
}

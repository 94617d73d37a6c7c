namespace LbAllocator.Core;

public sealed record AllocatorOptions
{
    /// <summary>The spec.loadBalancerClass handled; null handles only Services without a class.</summary>
    public string? LoadBalancerClass { get; init; }
}

public sealed record PoolStats(string Name, UInt128 AssignedIPv4, UInt128 AvailableIPv4, UInt128 AssignedIPv6, UInt128 AvailableIPv6);

/// <summary>
/// Decides which addresses each Service gets. Pure and deterministic: the same calls in the same order
/// give the same answers. Not thread-safe: one reconcile loop owns it.
/// </summary>
public sealed class Allocator
{
    private readonly AllocatorOptions _options;
    private readonly Dictionary<string, PoolState> _pools = new(StringComparer.Ordinal);
    private List<PoolState> _autoAssignOrder = [];
    private readonly Dictionary<Ip, AddressUse> _uses = [];
    private readonly Dictionary<string, Assignment> _assignments = new(StringComparer.Ordinal);
    /// <summary>Managed Services without addresses, with the order they arrived in (first come, first served).</summary>
    private readonly Dictionary<string, (long Order, ServiceInfo Service)> _pending = new(StringComparer.Ordinal);
    private long _arrivals;

    public Allocator(AllocatorOptions? options = null, IEnumerable<Pool>? pools = null)
    {
        _options = options ?? new AllocatorOptions();
        SetPools(pools ?? []);
    }

    public bool IsManaged(ServiceInfo service) => service.IsLoadBalancerFor(_options.LoadBalancerClass);

    /// <summary>
    /// Brings one Service up to date: keeps the addresses it holds (or carries in its status, after a
    /// restart) while they are still valid, and otherwise releases them and allocates anew. One whose namespace
    /// is not known yet (<see cref="ServiceInfo.NamespaceKnown"/>) only keeps what it validly holds.
    /// When this frees addresses, call <see cref="RetryPending"/> so waiting Services can take them.
    /// </summary>
    public AllocationOutcome Reconcile(ServiceInfo service)
    {
        _assignments.TryGetValue(service.Key, out var before);
        return Serve(service, before?.Ips ?? ParseIngress(service), before);
    }

    /// <summary>
    /// Settles a whole set, as at start-up or a new leader, from what each Service carries in its status:
    /// every validly held address is claimed before any Service is served, so the set's order never decides
    /// who keeps an address. Services needing new addresses are then served in the order given. Results
    /// come back in the order given.
    /// </summary>
    public IReadOnlyList<AllocationOutcome> ReconcileAll(IReadOnlyList<ServiceInfo> services)
    {
        var holdings = new List<Holding>(services.Count);
        foreach (var service in services)
        {
            if (_assignments.TryGetValue(service.Key, out var before))
            {
                Unassign(before);
            }

            holdings.Add(new Holding(service, before?.Ips ?? ParseIngress(service), before));
        }

        return Settle(holdings, serveInKeyOrder: false);
    }

    /// <summary>Forgets a deleted Service and frees its addresses. Call <see cref="RetryPending"/> afterwards.</summary>
    public bool Release(string @namespace, string name)
    {
        var key = $"{@namespace}/{name}";
        _pending.Remove(key);
        if (!_assignments.TryGetValue(key, out var assignment))
        {
            return false;
        }

        Unassign(assignment);
        return true;
    }

    /// <summary>Tries again, first come first served, the Services that are waiting for addresses. Returns those that got some.</summary>
    public IReadOnlyList<AllocationOutcome> RetryPending()
    {
        var results = new List<AllocationOutcome>();
        foreach (var (_, service) in _pending.Values.OrderBy(p => p.Order).ToList())
        {
            var result = Serve(service, held: [], before: null);
            if (result.Ips.Count > 0)
            {
                results.Add(result);
            }
        }

        return results;
    }

    /// <summary>
    /// Replaces the pools. Every Service keeps the addresses that still lie in one pool admitting it (even if
    /// the pool was renamed or split, or lost the range of its other family); the others are released and
    /// reallocated, and waiting Services are retried. Returns every Service whose addresses or pool changed.
    /// </summary>
    public IReadOnlyList<AllocationOutcome> SetPools(IEnumerable<Pool> pools)
    {
        var previous = _assignments.Values.ToList();
        _pools.Clear();
        _uses.Clear();
        _assignments.Clear();
        foreach (var pool in pools)
        {
            _pools.Add(pool.Name, new PoolState(pool));
        }

        _autoAssignOrder = [.. _pools.Values.Where(p => p.Pool.AutoAssign).OrderBy(p => p, AutoAssignOrder.Instance)];

        // Served in key order: pool edits have no arrival order, and the outcome must not depend on the dictionary's.
        var outcomes = Settle([.. previous.Select(a => new Holding(a.Service, a.Ips, a))], serveInKeyOrder: true);
        var results = outcomes.Where(o => o.Changed).ToList();
        results.AddRange(RetryPending());
        return results;
    }

    public bool TryGetAssignment(string @namespace, string name, out IReadOnlyList<Ip> ips, out string pool)
    {
        var found = _assignments.TryGetValue($"{@namespace}/{name}", out var assignment);
        ips = assignment?.Ips ?? [];
        pool = assignment?.Pool.Pool.Name ?? "";
        return found;
    }

    /// <summary>Assigned and available addresses per family; an address shared by several Services counts once.</summary>
    public PoolStats GetStats(string pool)
    {
        var state = _pools[pool];
        UInt128 Sum(IpFamily family, Func<FreeSpans, UInt128> f) =>
            state.Ranges.Where(r => r.Range.Family == family).Aggregate(UInt128.Zero, (total, r) => SaturatingAdd(total, f(r)));
        return new PoolStats(
            pool,
            Sum(IpFamily.IPv4, r => r.Taken),
            Sum(IpFamily.IPv4, r => r.Usable - r.Taken),
            Sum(IpFamily.IPv6, r => r.Taken),
            Sum(IpFamily.IPv6, r => r.Usable - r.Taken));
    }

    /// <summary>How many runs of free addresses the pool is split into: its memory grows with this, not with its size.</summary>
    public int DebugFreeRunCount(string pool) => _pools[pool].Ranges.Sum(r => r.SpanCount);

    public IReadOnlyList<PoolStats> GetAllStats() =>
        [.. _pools.Keys.Order(StringComparer.Ordinal).Select(GetStats)];

    /// <summary>
    /// Settles Services whose current assignments were taken out of the state, in two passes. First each claims,
    /// in key order (the tie-break when two hold one address they may not share), the part of what it holds that
    /// is still valid, and nothing else. Only then is each served in the order given: topped up, or given new
    /// addresses if it kept none, so no Service is handed an address another one validly holds.
    /// </summary>
    /// <param name="serveInKeyOrder">Serve in key order rather than in the order given (where there is no arrival order).</param>
    /// <returns>The outcomes in the order given or in key order, each compared with the holding's <see cref="Holding.Before"/>.</returns>
    private List<AllocationOutcome> Settle(IReadOnlyList<Holding> holdings, bool serveInKeyOrder)
    {
        var inKeyOrder = holdings.OrderBy(h => h.Service.Key, StringComparer.Ordinal).ToList();

        // Claims that are all their Service asks for are settled here; the others stay assigned, to be served below.
        var settled = new Dictionary<string, AllocationOutcome>(StringComparer.Ordinal);
        foreach (var holding in inKeyOrder)
        {
            if (holding.Held.Count == 0 || !IsManaged(holding.Service))
            {
                continue;
            }

            var service = holding.Service;
            var request = ServiceRequest.Parse(service, out var error);
            if (ValidClaim(service, request, holding.Held) is { } claim)
            {
                Assign(claim);
                if (IsAllItAsks(claim, request))
                {
                    _pending.Remove(service.Key);
                    settled[service.Key] = Outcome(service, request, claim, error, holding.Before);
                }
            }
        }

        var outcomes = new List<AllocationOutcome>(holdings.Count);
        foreach (var holding in serveInKeyOrder ? inKeyOrder : holdings)
        {
            var key = holding.Service.Key;
            outcomes.Add(settled.TryGetValue(key, out var outcome)
                ? outcome
                : Serve(holding.Service, _assignments.TryGetValue(key, out var claim) ? claim.Ips : [], holding.Before));
        }

        return outcomes;
    }

    /// <summary>Whether serving the claim could add nothing: an invalid request gets nothing new, and otherwise it holds every address it asks for.</summary>
    private static bool IsAllItAsks(Assignment claim, ServiceRequest? request) =>
        request is null || claim.Ips.Count == (request.RequestedIps.Count > 0 ? request.RequestedIps.Count : request.Wanted.Count);

    /// <summary>
    /// Decides for one Service from the addresses it may keep (<paramref name="held"/>): keeps the valid ones and
    /// tops them up, or allocates anew. <paramref name="before"/> is what the caller compares the outcome with.
    /// </summary>
    private AllocationOutcome Serve(ServiceInfo service, IReadOnlyList<Ip> held, Assignment? before)
    {
        if (_assignments.TryGetValue(service.Key, out var current))
        {
            Unassign(current);
        }

        _pending.Remove(service.Key, out var waiting);
        if (!IsManaged(service))
        {
            return before is null
                ? new AllocationOutcome.NotOurs(service.Namespace, service.Name)
                : new AllocationOutcome.Released(service.Namespace, service.Name, before.Ips) { Changed = true };
        }

        // While its fields are broken, or its namespace is not known yet, it keeps what it validly holds and gets nothing new.
        var request = ServiceRequest.Parse(service, out var error);
        var assignment = request is null || !service.NamespaceKnown
            ? ValidClaim(service, request, held)
            : TryKeep(service, request, held) ?? Allocate(service, request, out error);

        if (assignment is not null)
        {
            Assign(assignment);
        }
        else
        {
            _pending[service.Key] = (waiting.Service is null ? _arrivals++ : waiting.Order, service);
        }

        return Outcome(service, request, assignment, error, before);
    }

    /// <summary>The outcome for a managed Service, from its parsed request (null: invalid) and what it was assigned.</summary>
    private static AllocationOutcome Outcome(ServiceInfo service, ServiceRequest? request, Assignment? assignment, string? error, Assignment? before)
    {
        var ips = assignment?.Ips ?? [];
        var pool = assignment?.Pool.Pool.Name;
        var changed = !ips.SequenceEqual(before?.Ips ?? []) || pool != before?.Pool.Pool.Name;
        return (request, assignment) switch
        {
            _ when !service.NamespaceKnown => new AllocationOutcome.AwaitingNamespace(service.Namespace, service.Name, ips, pool) { Changed = changed },
            (null, _) => new AllocationOutcome.KeptInvalid(service.Namespace, service.Name, ips, pool, error!) { Changed = changed },
            (_, null) => new AllocationOutcome.Pending(service.Namespace, service.Name, error!) { Changed = changed },
            _ => new AllocationOutcome.Assigned(service.Namespace, service.Name, ips, pool!) { Changed = changed },
        };
    }

    /// <summary>The addresses a Service carries in its status: at most one per family, the first listed.</summary>
    private static List<Ip> ParseIngress(ServiceInfo service) => [.. service.IngressAddresses.DistinctBy(ip => ip.Family)];

    /// <summary>
    /// The part of <paramref name="held"/> the Service may keep, and nothing more: addresses of families it wants
    /// (primary first), among those it requests if it requests some, offered by one pool that admits it (the one
    /// it names, if it names one) and not used by a Service it may not share with. Null when nothing is left.
    /// With an invalid request (null) every family counts: what it held stays until the request is fixed.
    /// </summary>
    private Assignment? ValidClaim(ServiceInfo service, ServiceRequest? request, IReadOnlyList<Ip> held)
    {
        if (held.Count == 0)
        {
            return null;
        }

        // At most one address per family is held; the primary family goes first.
        IReadOnlyList<Ip> candidates = request is not null && held.Count == 2 && held[1].Family == request.Primary ? [held[1], held[0]] : held;
        PoolState? pool = null;
        List<Ip>? kept = null;
        foreach (var ip in candidates)
        {
            if (request is not null && (!request.Wants(ip.Family) || (request.RequestedIps.Count > 0 && !request.RequestedIps.Contains(ip))))
            {
                continue;
            }

            var containing = pool ?? PoolContaining(ip);
            if (containing is null || !containing.Pool.Offers(ip) || containing.Pool.AdmissionProblem(service) is not null
                || (request?.PoolName is { } named && named != containing.Pool.Name) || UseProblem(service, ip) is not null)
            {
                continue;
            }

            pool = containing;
            (kept ??= []).Add(ip);
        }

        return kept is null ? null : new Assignment(service, pool!, kept);
    }

    /// <summary>
    /// The valid part of what the Service holds, topped up from the same pool with a family it wants but lacks;
    /// null when that does not make what it asks for. PreferDualStack settles for the family it holds when its
    /// pool cannot give the other.
    /// </summary>
    private Assignment? TryKeep(ServiceInfo service, ServiceRequest request, IReadOnlyList<Ip> held)
    {
        if (ValidClaim(service, request, held) is not { } claim)
        {
            return null;
        }

        if (request.RequestedIps.Count > 0)
        {
            return claim.Ips.Count == request.RequestedIps.Count ? claim : null;
        }

        var ips = new List<Ip>(request.Wanted.Count);
        foreach (var family in request.Wanted)
        {
            if (claim.Ips.Any(ip => ip.Family == family))
            {
                ips.Add(claim.Ips.First(ip => ip.Family == family));
            }
            else if (Lowest(service, claim.Pool, family) is { } ip)
            {
                ips.Add(ip);
            }
            else if (request.Policy == FamilyPolicy.RequireDualStack)
            {
                return null;
            }
        }

        return new Assignment(service, claim.Pool, ips);
    }

    private Assignment? Allocate(ServiceInfo service, ServiceRequest request, out string? error)
    {
        if (request.RequestedIps.Count > 0)
        {
            return AllocateRequested(service, request, out error);
        }

        List<PoolState> candidates;
        if (request.PoolName is not null)
        {
            if (!_pools.TryGetValue(request.PoolName, out var named))
            {
                error = $"IPAddressPool \"{request.PoolName}\" named by annotation {service.AnnotationName(ServiceAnnotations.AddressPool)} does not exist or is invalid";
                return null;
            }

            if (named.Pool.AdmissionProblem(service) is { } problem)
            {
                error = problem;
                return null;
            }

            candidates = [named];
        }
        else
        {
            candidates = [.. _autoAssignOrder.Where(p => p.Pool.AdmissionProblem(service) is null)];
            if (candidates.Count == 0)
            {
                error = NoCandidateReason(service);
                return null;
            }
        }

        // Every family it wants from one pool; PreferDualStack then settles for one family, the first listed
        // where a candidate pool can give it, else the other.
        IReadOnlyList<IReadOnlyList<IpFamily>> attempts = request.Policy == FamilyPolicy.PreferDualStack && request.Families.Count == 2
            ? [request.Families, [request.Families[0]], [request.Families[1]]]
            : [request.Wanted];

        // Why pools failed; "has no IPv6 addresses" only when no pool failed for a better reason (full, not shareable).
        List<string>? reasons = null;
        List<string>? lacksFamily = null;
        foreach (var families in attempts)
        {
            foreach (var pool in candidates)
            {
                if (TryAllocateIn(service, pool, families, out var reason) is { } assignment)
                {
                    error = null;
                    return assignment;
                }

                if (families.All(pool.Pool.Has))
                {
                    (reasons ??= []).Add(reason!);
                }
                else
                {
                    (lacksFamily ??= []).Add(reason!);
                }
            }
        }

        error = string.Join("; ", (reasons ?? lacksFamily)!.Distinct(StringComparer.Ordinal));
        return null;
    }

    private Assignment? AllocateRequested(ServiceInfo service, ServiceRequest request, out string? error)
    {
        PoolState? pool = null;
        foreach (var ip in request.RequestedIps)
        {
            var containing = PoolContaining(ip);
            if (containing is null)
            {
                error = $"requested IP {ip} is not in any pool";
                return null;
            }

            if (pool is not null && containing != pool)
            {
                error = $"requested IPs {request.RequestedIps[0]} and {ip} are in different pools (\"{pool.Pool.Name}\", \"{containing.Pool.Name}\"); both addresses of a Service must come from one pool";
                return null;
            }

            pool = containing;
        }

        var first = request.RequestedIps[0];
        if (request.PoolName is not null && request.PoolName != pool!.Pool.Name)
        {
            error = $"requested IP {first} is in pool \"{pool.Pool.Name}\", not in pool \"{request.PoolName}\" named by annotation {service.AnnotationName(ServiceAnnotations.AddressPool)}";
            return null;
        }

        if (pool!.Pool.AdmissionProblem(service) is { } admission)
        {
            error = $"requested IP {first}: {admission}";
            return null;
        }

        foreach (var ip in request.RequestedIps)
        {
            if (!pool.Pool.Offers(ip))
            {
                error = $"requested IP {ip} ends in .0 or .255, which pool \"{pool.Pool.Name}\" does not give out (avoidBuggyIPs)";
                return null;
            }

            if (UseProblem(service, ip) is { } problem)
            {
                error = problem;
                return null;
            }
        }

        error = null;
        return new Assignment(service, pool, [.. request.RequestedIps.OrderBy(ip => ip.Family == request.Primary ? 0 : 1)]);
    }

    private Assignment? TryAllocateIn(ServiceInfo service, PoolState pool, IReadOnlyList<IpFamily> families, out string? reason)
    {
        var ips = new List<Ip>();
        foreach (var family in families)
        {
            if (!pool.Pool.Has(family))
            {
                reason = $"pool \"{pool.Pool.Name}\" has no {Ip.FamilyName(family)} addresses";
                return null;
            }

            if (Lowest(service, pool, family) is not { } ip)
            {
                var stats = GetStats(pool.Pool.Name);
                var (assigned, available) = family == IpFamily.IPv4
                    ? (stats.AssignedIPv4, stats.AvailableIPv4)
                    : (stats.AssignedIPv6, stats.AvailableIPv6);
                var what = pool.Pool.Has(Other(family)) ? $"{Ip.FamilyName(family)} addresses" : "IPs";
                reason = $"no available {what} in pool \"{pool.Pool.Name}\" ({assigned} of {SaturatingAdd(assigned, available)} assigned)";
                if (service.SharingKey is { } key && pool.SharedByKey.TryGetValue(key, out var shared)
                    && shared.FirstOrDefault(p => p.Ip.Family == family) is { Ip: var sharedIp } && sharedIp.Family == family
                    && UseProblem(service, sharedIp) is { } conflict)
                {
                    // Say why the addresses under the same sharing key did not fit either.
                    reason += $"; {conflict}";
                }

                return null;
            }

            ips.Add(ip);
        }

        reason = null;
        return new Assignment(service, pool, ips);
    }

    private string NoCandidateReason(ServiceInfo service)
    {
        if (_pools.Count == 0)
        {
            return "no IPAddressPool is configured";
        }

        if (_autoAssignOrder.Count == 0)
        {
            return $"no IPAddressPool has autoAssign enabled; name a pool with annotation {ServiceAnnotations.AddressPool} or request an address";
        }

        return $"no IPAddressPool with autoAssign admits {service.Key}: "
            + string.Join("; ", _autoAssignOrder.Select(p => p.Pool.AdmissionProblem(service)));
    }

    /// <summary>
    /// The lowest address of the family, in declaration order, that is free or already used only by
    /// Services this one may share with. Costs O(log n), plus the addresses under the same sharing key.
    /// </summary>
    private Ip? Lowest(ServiceInfo service, PoolState pool, IpFamily family)
    {
        Position? best = null;
        for (var i = 0; i < pool.Ranges.Count; i++)
        {
            if (pool.Ranges[i].Range.Family == family && pool.Ranges[i].TryLowest(out var free))
            {
                best = new Position(i, free);
                break;
            }
        }

        if (service.SharingKey is { } key && pool.SharedByKey.TryGetValue(key, out var shared))
        {
            foreach (var position in shared)
            {
                if (best is { } b && PositionOrder.Instance.Compare(position, b) >= 0)
                {
                    break;
                }

                if (position.Ip.Family == family && UseProblem(service, position.Ip) is null)
                {
                    best = position;
                    break;
                }
            }
        }

        return best?.Ip;
    }

    /// <summary>Why the Service may not use this (offered) address because of the Services already on it, or null.</summary>
    private string? UseProblem(ServiceInfo service, Ip ip)
    {
        if (!_uses.TryGetValue(ip, out var use))
        {
            return null;
        }

        foreach (var user in use.Users)
        {
            if (user.Key != service.Key && Sharing.Conflict(service, user) is { } conflict)
            {
                return $"IP {ip} is used by {user.Key} and cannot be shared: {conflict}";
            }
        }

        return null;
    }

    private PoolState? PoolContaining(Ip ip)
    {
        // A loop, not LINQ: called for every held address at a start or pool edit, where garbage costs most.
        foreach (var pool in _pools.Values)
        {
            if (pool.Pool.Contains(ip))
            {
                return pool;
            }
        }

        return null;
    }

    private void Assign(Assignment assignment)
    {
        var service = assignment.Service;
        foreach (var ip in assignment.Ips)
        {
            if (!_uses.TryGetValue(ip, out var use))
            {
                var index = assignment.Pool.RangeIndex(ip);
                use = new AddressUse(assignment.Pool, new Position(index, ip));
                assignment.Pool.Ranges[index].Take(ip);
                _uses.Add(ip, use);
                if (service.SharingKey is { } key)
                {
                    assignment.Pool.Shared(key).Add(use.Position);
                }
            }

            use.Users.Add(service);
        }

        _assignments[service.Key] = assignment;
    }

    private void Unassign(Assignment assignment)
    {
        foreach (var ip in assignment.Ips)
        {
            var use = _uses[ip];
            use.Users.RemoveAll(u => u.Key == assignment.Service.Key);
            if (use.Users.Count > 0)
            {
                continue;
            }

            _uses.Remove(ip);
            use.Pool.Ranges[use.Position.RangeIndex].Release(ip);
            if (assignment.Service.SharingKey is { } key && use.Pool.SharedByKey.TryGetValue(key, out var shared))
            {
                shared.Remove(use.Position);
                if (shared.Count == 0)
                {
                    use.Pool.SharedByKey.Remove(key);
                }
            }
        }

        _assignments.Remove(assignment.Service.Key);
    }

    private static IpFamily Other(IpFamily family) => family == IpFamily.IPv4 ? IpFamily.IPv6 : IpFamily.IPv4;

    private static UInt128 SaturatingAdd(UInt128 a, UInt128 b) => UInt128.MaxValue - a < b ? UInt128.MaxValue : a + b;

    private sealed record Assignment(ServiceInfo Service, PoolState Pool, IReadOnlyList<Ip> Ips);

    /// <summary>A Service with the addresses it holds, and the assignment it had (null at a start) to compare the outcome with.</summary>
    private sealed record Holding(ServiceInfo Service, IReadOnlyList<Ip> Held, Assignment? Before);

    /// <summary>Where an address sits in its pool: range in declaration order, then value.</summary>
    private readonly record struct Position(int RangeIndex, Ip Ip);

    private sealed class PositionOrder : IComparer<Position>
    {
        public static readonly PositionOrder Instance = new();

        public int Compare(Position x, Position y) =>
            x.RangeIndex != y.RangeIndex ? x.RangeIndex.CompareTo(y.RangeIndex) : x.Ip.Value.CompareTo(y.Ip.Value);
    }

    private sealed class AddressUse(PoolState pool, Position position)
    {
        public PoolState Pool { get; } = pool;
        public Position Position { get; } = position;
        public List<ServiceInfo> Users { get; } = [];
    }

    private sealed class PoolState(Pool pool)
    {
        public Pool Pool { get; } = pool;
        public IReadOnlyList<FreeSpans> Ranges { get; } = [.. pool.Ranges.Select(r => new FreeSpans(r, pool.AvoidBuggyIPs))];
        /// <summary>Addresses in use by Services with a sharing key, by key, in pool order: where such a Service may join.</summary>
        public Dictionary<string, SortedSet<Position>> SharedByKey { get; } = new(StringComparer.Ordinal);

        public int RangeIndex(Ip ip)
        {
            for (var i = 0; i < Ranges.Count; i++)
            {
                if (Ranges[i].Range.Contains(ip))
                {
                    return i;
                }
            }

            throw new InvalidOperationException($"{ip} is not in pool {Pool.Name}");
        }

        public SortedSet<Position> Shared(string key)
        {
            if (!SharedByKey.TryGetValue(key, out var set))
            {
                SharedByKey[key] = set = new SortedSet<Position>(PositionOrder.Instance);
            }

            return set;
        }
    }

    /// <summary>Pools with serviceAllocation by priority (unset last), then pools without it; ties by name.</summary>
    private sealed class AutoAssignOrder : IComparer<PoolState>
    {
        public static readonly AutoAssignOrder Instance = new();

        public int Compare(PoolState? x, PoolState? y)
        {
            static (int Group, int Priority) Rank(Pool p) =>
                p.Allocation is null ? (2, 0) : p.Allocation.Priority is { } priority ? (0, priority) : (1, 0);
            var (a, b) = (Rank(x!.Pool), Rank(y!.Pool));
            return a != b ? a.CompareTo(b) : string.CompareOrdinal(x.Pool.Name, y.Pool.Name);
        }
    }
}

namespace LbAllocator.Core;

public sealed record AllocatorOptions
{
    /// <summary>The spec.loadBalancerClass handled; null handles only Services without a class.</summary>
    public string? LoadBalancerClass { get; init; }
}

/// <summary>The outcome for one Service: its addresses (possibly none) and, if something is wrong, why.</summary>
public sealed record AllocationResult(
    string Namespace,
    string Name,
    bool Managed,
    IReadOnlyList<Ip> Ips,
    string? Pool,
    string? Error,
    bool Changed)
{
    public string Key => $"{Namespace}/{Name}";

    /// <summary>The Service's own fields or annotations are invalid (Error says which); it keeps what it held.</summary>
    public bool InvalidRequest { get; init; }
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
    /// restart) while they are still valid, and otherwise releases them and allocates anew.
    /// When this frees addresses, call <see cref="RetryPending"/> so waiting Services can take them.
    /// </summary>
    public AllocationResult Reconcile(ServiceInfo service) => Reconcile(service, prior: null);

    /// <summary>
    /// Reconciles a whole set, as at start-up: Services that already carry addresses first, so they keep
    /// them, then the others in the order given. Results come back in the order given.
    /// </summary>
    public IReadOnlyList<AllocationResult> ReconcileAll(IReadOnlyList<ServiceInfo> services)
    {
        var results = new AllocationResult[services.Count];
        var order = Enumerable.Range(0, services.Count).OrderBy(i => services[i].IngressIps.Count > 0 ? 0 : 1);
        foreach (var i in order)
        {
            results[i] = Reconcile(services[i]);
        }

        return results;
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
    public IReadOnlyList<AllocationResult> RetryPending()
    {
        var results = new List<AllocationResult>();
        foreach (var (_, service) in _pending.Values.OrderBy(p => p.Order).ToList())
        {
            var result = Reconcile(service, prior: []);
            if (result.Ips.Count > 0)
            {
                results.Add(result);
            }
        }

        return results;
    }

    /// <summary>
    /// Replaces the pools. Assignments whose addresses still lie in a pool admitting the Service are kept
    /// (even if the pool was renamed or split); the others are released and reallocated, and waiting
    /// Services are retried. Returns every Service whose addresses or pool changed.
    /// </summary>
    public IReadOnlyList<AllocationResult> SetPools(IEnumerable<Pool> pools)
    {
        var previous = _assignments.Values.OrderBy(a => a.Service.Key, StringComparer.Ordinal).ToList();
        _pools.Clear();
        _uses.Clear();
        _assignments.Clear();
        foreach (var pool in pools)
        {
            _pools.Add(pool.Name, new PoolState(pool));
        }

        _autoAssignOrder = [.. _pools.Values.Where(p => p.Pool.AutoAssign).OrderBy(p => p, AutoAssignOrder.Instance)];

        var results = new List<AllocationResult>();
        var dropped = new List<Assignment>();
        foreach (var old in previous)
        {
            var pool = PoolContaining(old.Ips[0]);
            if (pool is not null && old.Ips.All(pool.Pool.Offers) && pool.Pool.AdmissionProblem(old.Service) is null
                && old.Ips.All(ip => UseProblem(old.Service, ip) is null))
            {
                Assign(old with { Pool = pool });
                if (pool.Pool.Name != old.Pool.Pool.Name)
                {
                    results.Add(Result(old.Service, old.Ips, old.Pool.Pool.Name, _assignments[old.Service.Key], error: null));
                }
            }
            else
            {
                dropped.Add(old);
            }
        }

        foreach (var old in dropped)
        {
            var result = Reconcile(old.Service, prior: []);
            results.Add(result with { Changed = !result.Ips.SequenceEqual(old.Ips) || result.Pool != old.Pool.Pool.Name });
        }

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

    private AllocationResult Reconcile(ServiceInfo service, IReadOnlyList<Ip>? prior)
    {
        _assignments.TryGetValue(service.Key, out var previous);
        prior ??= previous?.Ips ?? ParseIngress(service);
        if (previous is not null)
        {
            Unassign(previous);
        }

        _pending.Remove(service.Key, out var waiting);
        if (!IsManaged(service))
        {
            return Result(service, previous?.Ips, previous?.Pool.Pool.Name, assignment: null, error: null, managed: false);
        }

        var request = ServiceRequest.Parse(service, out var error);
        Assignment? assignment;
        if (request is null)
        {
            // While its fields are broken the Service keeps what it holds, so a typo neither renumbers
            // it nor frees its address for someone else.
            assignment = TryKeep(service, request: null, prior);
        }
        else
        {
            assignment = TryKeep(service, request, prior) ?? Allocate(service, request, out error);
        }

        if (assignment is not null)
        {
            Assign(assignment);
        }
        else
        {
            _pending[service.Key] = (waiting.Service is null ? _arrivals++ : waiting.Order, service);
        }

        return Result(service, previous?.Ips, previous?.Pool.Pool.Name, assignment, error) with { InvalidRequest = request is null };
    }

    /// <summary>The addresses a Service carries in its status: at most one per family, the first listed.</summary>
    private static List<Ip> ParseIngress(ServiceInfo service) => [.. service.IngressAddresses.DistinctBy(ip => ip.Family)];

    /// <summary>The held addresses if they still fit the request and the pools, topping up a missing family; else null.</summary>
    private Assignment? TryKeep(ServiceInfo service, ServiceRequest? request, IReadOnlyList<Ip> prior)
    {
        if (prior.Count == 0 || PoolContaining(prior[0]) is not { } pool
            || !prior.All(pool.Pool.Offers) || pool.Pool.AdmissionProblem(service) is not null)
        {
            return null;
        }

        if (request is null)
        {
            return prior.All(ip => UseProblem(service, ip) is null) ? new Assignment(service, pool, prior) : null;
        }

        if ((request.PoolName is not null && request.PoolName != pool.Pool.Name)
            || (request.RequestedIps.Count > 0 && !(request.RequestedIps.Count == prior.Count && request.RequestedIps.All(prior.Contains))))
        {
            return null;
        }

        var ips = new List<Ip>();
        foreach (var family in request.Wanted)
        {
            var held = prior.Where(ip => ip.Family == family).ToList();
            if (held.Count > 0)
            {
                if (UseProblem(service, held[0]) is not null)
                {
                    return null;
                }

                ips.Add(held[0]);
            }
            else if (request.RequestedIps.Count == 0)
            {
                if (Lowest(service, pool, family) is { } ip)
                {
                    ips.Add(ip);
                }
                else if (family == request.Primary || request.Policy == FamilyPolicy.RequireDualStack)
                {
                    return null;
                }
            }
        }

        return ips.Count > 0 ? new Assignment(service, pool, ips) : null;
    }

    private Assignment? Allocate(ServiceInfo service, ServiceRequest request, out string? error)
    {
        if (request.RequestedIps.Count > 0)
        {
            return AllocateRequested(service, request, out error);
        }

        // PreferDualStack settles for the first family when no pool can give both.
        IReadOnlyList<IReadOnlyList<IpFamily>> attempts = request.Policy == FamilyPolicy.PreferDualStack
            ? [request.Wanted, [request.Primary]]
            : [request.Wanted];

        if (request.PoolName is not null)
        {
            if (!_pools.TryGetValue(request.PoolName, out var named))
            {
                error = $"IPAddressPool \"{request.PoolName}\" named by annotation {ServiceAnnotations.AddressPool} does not exist or is invalid";
                return null;
            }

            if (named.Pool.AdmissionProblem(service) is { } problem)
            {
                error = problem;
                return null;
            }

            error = null;
            foreach (var families in attempts)
            {
                if (TryAllocateIn(service, named, families, out error) is { } assignment)
                {
                    return assignment;
                }
            }

            return null;
        }

        var candidates = _autoAssignOrder.Where(p => p.Pool.AdmissionProblem(service) is null).ToList();
        if (candidates.Count == 0)
        {
            error = NoCandidateReason(service);
            return null;
        }

        var reasons = new List<string>();
        foreach (var families in attempts)
        {
            reasons.Clear();
            foreach (var pool in candidates)
            {
                if (TryAllocateIn(service, pool, families, out var reason) is { } assignment)
                {
                    error = null;
                    return assignment;
                }

                reasons.Add(reason!);
            }
        }

        error = string.Join("; ", reasons);
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
            error = $"requested IP {first} is in pool \"{pool.Pool.Name}\", not in pool \"{request.PoolName}\" named by annotation {ServiceAnnotations.AddressPool}";
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

    private PoolState? PoolContaining(Ip ip) => _pools.Values.FirstOrDefault(p => p.Pool.Contains(ip));

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

    private static AllocationResult Result(
        ServiceInfo service, IReadOnlyList<Ip>? previousIps, string? previousPool, Assignment? assignment, string? error, bool managed = true)
    {
        var ips = assignment?.Ips ?? [];
        var pool = assignment?.Pool.Pool.Name;
        var changed = !ips.SequenceEqual(previousIps ?? []) || pool != previousPool;
        return new AllocationResult(service.Namespace, service.Name, managed, ips, pool, error, changed);
    }

    private static IpFamily Other(IpFamily family) => family == IpFamily.IPv4 ? IpFamily.IPv6 : IpFamily.IPv4;

    private static UInt128 SaturatingAdd(UInt128 a, UInt128 b) => UInt128.MaxValue - a < b ? UInt128.MaxValue : a + b;

    private sealed record Assignment(ServiceInfo Service, PoolState Pool, IReadOnlyList<Ip> Ips);

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

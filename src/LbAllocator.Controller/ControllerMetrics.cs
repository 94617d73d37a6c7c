using LbAllocator.Core;
using Prometheus;

namespace LbAllocator.Controller;

/// <summary>The controller's metrics. Failure reasons are the event reasons, so a count leads straight to the events.</summary>
public sealed class ControllerMetrics(IMetricFactory factory)
{
    private readonly Gauge _poolAddresses = factory.CreateGauge("lballocator_pool_addresses", "Addresses in each pool, assigned or free, by family (the leader reports).", ["pool", "family"]);

    private readonly Gauge _poolInUse = factory.CreateGauge("lballocator_pool_addresses_in_use", "Addresses of each pool assigned to Services, by family (the leader reports).", ["pool", "family"]);

    private readonly Counter _allocations = factory.CreateCounter("lballocator_allocations_total", "Services given new addresses, by pool.", ["pool"]);

    private readonly Counter _releases = factory.CreateCounter(
        "lballocator_releases_total", "Addresses taken back from Services.");

    private readonly Counter _failures = factory.CreateCounter("lballocator_allocation_failures_total", "Reconciles that left a Service without what it asked for, by event reason (AllocationFailed, InvalidAnnotation).", ["reason"]);

    private readonly Histogram _reconcileDuration = factory.CreateHistogram(
        "lballocator_reconcile_duration_seconds", "Time to decide one Service and write its status, annotation and events.",
        new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.0005, 2, 14) });

    private readonly Gauge _leader = factory.CreateGauge("lballocator_controller_leader", "1 while this replica is the leader and assigns addresses.");

    private readonly HashSet<string> _pools = new(StringComparer.Ordinal);

    public void Allocated(string pool) => _allocations.WithLabels(pool).Inc();

    public void Released(int addresses) => _releases.Inc(addresses);

    public void Failed(string reason) => _failures.WithLabels(reason).Inc();

    public IDisposable TimeReconcile() => _reconcileDuration.NewTimer();

    public void SetLeader(bool leading) => _leader.Set(leading ? 1 : 0);

    /// <summary>Sets the usage of exactly these pools; pools no longer in use lose their series.</summary>
    public void SetPools(IReadOnlyCollection<PoolStats> pools)
    {
        lock (_pools)
        {
            foreach (var gone in _pools.Except(pools.Select(p => p.Name)).ToList())
            {
                foreach (var family in new[] { "IPv4", "IPv6" })
                {
                    _poolAddresses.RemoveLabelled(gone, family);
                    _poolInUse.RemoveLabelled(gone, family);
                }

                _pools.Remove(gone);
            }

            foreach (var pool in pools)
            {
                _pools.Add(pool.Name);
                _poolAddresses.WithLabels(pool.Name, "IPv4").Set((double)(pool.AssignedIPv4 + pool.AvailableIPv4));
                _poolInUse.WithLabels(pool.Name, "IPv4").Set((double)pool.AssignedIPv4);
                _poolAddresses.WithLabels(pool.Name, "IPv6").Set((double)(pool.AssignedIPv6 + pool.AvailableIPv6));
                _poolInUse.WithLabels(pool.Name, "IPv6").Set((double)pool.AssignedIPv6);
            }
        }
    }
}

using k8s;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.Kubernetes.Watching;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Controller;

/// <summary>
/// watch caches → work queue → Allocator (pure) → StatusWriter. The caches run on every replica so a
/// standby is ready at once; <see cref="RunAsync"/> runs only on the leader. Decisions are taken one at a
/// time under a lock (the Allocator is single-threaded); the API writes that follow run on several workers.
/// </summary>
public sealed partial class Reconciler
{
    private const int Workers = 16;

    /// <summary>Keys taken closer together than this are one burst (for the events, which wait for its end).</summary>
    private const long LullMilliseconds = 50;

    private readonly ControllerOptions _options;
    private readonly ControllerMetrics _metrics;
    private readonly ILogger _logger;
    private readonly StatusWriter _writer;
    private readonly Lock _decisions = new();
    private readonly ConfigSource _configSource;
    private Allocator _allocator;
    private ConfigSnapshot? _config;
    private WorkQueue<Work>? _queue;
    private int _inFlight;
    private long _lastTaken;
    private bool _poolStatusScheduled;

    public Reconciler(KubeApi client, ControllerOptions options, ControllerMetrics metrics, ILoggerFactory loggers)
    {
        _options = options;
        _metrics = metrics;
        _logger = loggers.CreateLogger<Reconciler>();
        _writer = new StatusWriter(client, options, metrics, loggers.CreateLogger<StatusWriter>());
        _allocator = new Allocator(AllocatorOptions());
        Services = new ResourceCache<V1Service>(Sources.Services(client), loggers.CreateLogger("LbAllocator.Cache.Services"));
        Namespaces = new ResourceCache<V1Namespace>(Sources.Namespaces(client), loggers.CreateLogger("LbAllocator.Cache.Namespaces"));
        Pools = new ResourceCache<V1Alpha1IPAddressPool>(Sources.Pools(client, options.Namespace), loggers.CreateLogger("LbAllocator.Cache.Pools"));
        Advertisements = new ResourceCache<V1Alpha1L2Advertisement>(Sources.Advertisements(client, options.Namespace), loggers.CreateLogger("LbAllocator.Cache.L2Advertisements"));
        _configSource = new ConfigSource(Pools, Advertisements);

        Services.Changed += (old, now) => Enqueue(new Work.Service(ObjectKey.Of((now ?? old)!)));
        Pools.Changed += (old, now) =>
        {
            if (now is null)
            {
                _writer.ForgetEvents(StatusWriter.PoolEventKey(old!.Metadata.Name));
            }

            if (ObjectChange.SpecChanged(old, now))
            {
                Enqueue(new Work.Config());
            }
        };
        Advertisements.Changed += (old, now) =>
        {
            if (now is null)
            {
                _writer.ForgetEvents(StatusWriter.AdvertisementEventKey(old!.Metadata.Name));
            }

            if (ObjectChange.SpecChanged(old, now))
            {
                Enqueue(new Work.Config());
            }
        };
        // A namespace seen, gone or relabelled re-judges its Services: they are served only once it is known,
        // and its labels may decide which pools admit them.
        Namespaces.Changed += (old, now) =>
        {
            if (old is null || now is null || !ObjectChange.SameLabels(old.Metadata.Labels, now.Metadata.Labels))
            {
                var ns = (now ?? old)!.Metadata.Name;
                foreach (var service in Services.Items.Where(s => s.Metadata.NamespaceProperty == ns))
                {
                    Enqueue(new Work.Service(ObjectKey.Of(service)));
                }
            }
        };
    }

    public ResourceCache<V1Service> Services { get; }
    public ResourceCache<V1Namespace> Namespaces { get; }
    public ResourceCache<V1Alpha1IPAddressPool> Pools { get; }

    /// <summary>Followed only to report invalid advertisements; the speakers act on them.</summary>
    public ResourceCache<V1Alpha1L2Advertisement> Advertisements { get; }

    /// <summary>Keeps the caches current; runs for the life of the process, leader or not.</summary>
    public Task RunCachesAsync(CancellationToken cancellationToken) =>
        Task.WhenAll(Services.RunAsync(cancellationToken), Namespaces.RunAsync(cancellationToken), Pools.RunAsync(cancellationToken), Advertisements.RunAsync(cancellationToken));

    public Task WaitForCachesAsync(CancellationToken cancellationToken) =>
        Task.WhenAll(
            Services.WaitForSyncAsync(cancellationToken), Namespaces.WaitForSyncAsync(cancellationToken), Pools.WaitForSyncAsync(cancellationToken),
            Advertisements.WaitForSyncAsync(cancellationToken));

    /// <summary>Set once the leader has claimed existing addresses and queued every Service.</summary>
    public bool Ready { get; private set; }

    /// <summary>
    /// The leader's loop. Starts from the caches with a fresh allocator: Services that carry addresses
    /// claim them first, so a restart or a new leader renumbers nothing; then reacts to changes.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        await WaitForCachesAsync(cancellationToken);
        using var queue = new WorkQueue<Work>();
        lock (_decisions)
        {
            _allocator = new Allocator(AllocatorOptions());
            _configSource.ForgetHistory();
            _config = null; // the new allocator has no pools yet
            _poolStatusScheduled = false; // a delayed write of an earlier term went with its queue
            ApplyConfig();
            var services = Services.Items.OrderBy(ObjectKey.Of, StringComparer.Ordinal).ToList();
            _allocator.ReconcileAll([.. services.Select(ToInfo)]);
            _queue = queue;
            foreach (var service in services)
            {
                queue.Add(new Work.Service(ObjectKey.Of(service)));
            }

            queue.Add(new Work.PoolStatus());
            queue.Add(new Work.AdvertisementStatus());
        }

        Ready = true;
        LogStarted(Services.Items.Count, _config!.Config.Pools.Count);
        try
        {
            var workers = Enumerable.Range(0, Workers).Select(_ => queue.ProcessAsync(ProcessAsync, (work, e, delay) => LogRetry(e, work.ToString(), delay), cancellationToken));
            await Task.WhenAll(workers.Append(_writer.SendEventsAsync(() => Busy(queue), cancellationToken)));
        }
        finally
        {
            Ready = false;
            _writer.DiscardQueuedEvents();
            lock (_decisions)
            {
                _queue = null;
            }
        }
    }

    /// <summary>Services waiting, being worked on or arriving: events wait for a lull so addresses go first.</summary>
    private bool Busy(WorkQueue<Work> queue) =>
        queue.Count > 0 || Volatile.Read(ref _inFlight) > 0 || Environment.TickCount64 - Volatile.Read(ref _lastTaken) < LullMilliseconds;

    private async Task ProcessAsync(Work work, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _inFlight);
        Volatile.Write(ref _lastTaken, Environment.TickCount64);
        try
        {
            switch (work)
            {
                case Work.Service service:
                    await ReconcileAsync(service.Key, cancellationToken);
                    break;
                case Work.Config:
                    lock (_decisions)
                    {
                        ApplyConfig();
                    }

                    break;
                case Work.PoolStatus:
                    await WritePoolStatusesAsync(cancellationToken);
                    break;
                case Work.AdvertisementStatus:
                    await WriteAdvertisementStatusesAsync(cancellationToken);
                    break;
            }
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    private async Task ReconcileAsync(string key, CancellationToken cancellationToken)
    {
        using var timer = _metrics.TimeReconcile();
        AllocationOutcome? result = null;
        V1Service? service;
        lock (_decisions)
        {
            if (Services.TryGet(key, out service))
            {
                result = _allocator.Reconcile(ToInfo(service!));
                if (result.Changed)
                {
                    RetryPending();
                }
            }
            else
            {
                _writer.ForgetEvents(key);
                var slash = key.IndexOf('/', StringComparison.Ordinal);
                if (_allocator.Release(key[..slash], key[(slash + 1)..]))
                {
                    RetryPending();
                }
            }
        }

        if (result is not null)
        {
            await _writer.ApplyAsync(service!, result, cancellationToken);
            if (result.Changed && _logger.IsEnabled(LogLevel.Information))
            {
                var ips = string.Join(",", result.Ips);
                LogReconciled(key, result.GetType().Name, ips, result.Pool, result.Problem);
            }
        }
    }

    /// <summary>
    /// Rebuilds the configuration from the caches and hands the allocator its pools when they changed; affected
    /// Services are queued, and the statuses that report the configuration are written again.
    /// </summary>
    private void ApplyConfig()
    {
        var previous = _config;
        _config = _configSource.Build();
        foreach (var problem in _config.Config.Problems.Where(p => p.Kind == ConfigValidator.PoolKind))
        {
            LogInvalidPool(problem.Name, problem.Message, _config.Stale.Contains(problem.Name));
        }

        if (!_config.RunsSamePoolsAs(previous))
        {
            foreach (var changed in _allocator.SetPools(_config.Config.Pools))
            {
                Enqueue(new Work.Service(changed.Key));
            }
        }

        Enqueue(new Work.PoolStatus());
        Enqueue(new Work.AdvertisementStatus()); // an advertisement may name a pool that came or went
    }

    private void RetryPending()
    {
        foreach (var got in _allocator.RetryPending())
        {
            Enqueue(new Work.Service(got.Key));
        }

        Enqueue(new Work.PoolStatus());
    }

    private async Task WritePoolStatusesAsync(CancellationToken cancellationToken)
    {
        List<(V1Alpha1IPAddressPool Pool, PoolStats? Stats, string? Problem, bool Stale)> work;
        lock (_decisions)
        {
            _poolStatusScheduled = false; // changes from here on schedule the next write
            var config = _config!;
            var running = config.Config.Pools.Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
            work = [.. Pools.Items.Select(pool =>
            {
                var name = pool.Metadata.Name;
                return (pool, running.Contains(name) ? _allocator.GetStats(name) : null, config.Problem(ConfigValidator.PoolKind, name), config.Stale.Contains(name));
            })];
        }

        _metrics.SetPools([.. work.Select(w => w.Stats).OfType<PoolStats>()]);
        foreach (var (pool, stats, problem, stale) in work)
        {
            await _writer.WritePoolStatusAsync(pool, stats, problem, stale, cancellationToken);
        }
    }

    /// <summary>Writes each advertisement's Valid condition, as the configuration the speakers build judges it.</summary>
    private async Task WriteAdvertisementStatusesAsync(CancellationToken cancellationToken)
    {
        ConfigSnapshot config;
        lock (_decisions)
        {
            config = _config!;
        }

        var inForce = config.Config.Advertisements.ToDictionary(a => a.Name, StringComparer.Ordinal);
        foreach (var advertisement in Advertisements.Items.OrderBy(a => a.Metadata.Name, StringComparer.Ordinal))
        {
            var name = advertisement.Metadata.Name;
            var problem = config.Problem(ConfigValidator.AdvertisementKind, name);
            string? consequence = null;
            if (problem is not null)
            {
                consequence = ConfigValidator.Consequence(ObjectMapper.ToAdvertisementSpec(advertisement), inForce.GetValueOrDefault(name));
                LogInvalidAdvertisement(name, problem, consequence);
            }

            await _writer.WriteAdvertisementStatusAsync(advertisement, problem, consequence, cancellationToken);
        }
    }

    private void Enqueue(Work work)
    {
        lock (_decisions)
        {
            if (work is Work.PoolStatus)
            {
                // Pool usage changes with every allocation: write it at most every half second, so one
                // write is scheduled at a time (a delayed add per allocation would each end in a write).
                if (_queue is not null && !_poolStatusScheduled)
                {
                    _poolStatusScheduled = true;
                    _queue.AddAfter(work, TimeSpan.FromMilliseconds(500));
                }
            }
            else
            {
                _queue?.Add(work);
            }
        }
    }

    /// <summary>
    /// The Service as the allocator sees it, MetalLB's annotations read as ours when accepted; one whose namespace the
    /// cache has not seen yet is not served (its labels may decide its pool).
    /// </summary>
    private ServiceInfo ToInfo(V1Service service)
    {
        var info = ObjectMapper.ToServiceInfo(service, Namespaces.TryGet(service.Metadata.NamespaceProperty, out var found)
            ? found!.Metadata.Labels ?? new Dictionary<string, string>()
            : null);
        return _options.AcceptMetalLbAnnotations ? MetalLbAnnotations.Adopt(info) : info;
    }

    private AllocatorOptions AllocatorOptions() => new() { LoadBalancerClass = string.IsNullOrEmpty(_options.LoadBalancerClass) ? null : _options.LoadBalancerClass };

    [LoggerMessage(Level = LogLevel.Information, Message = "Leading: claimed addresses of {Services} Services with {Pools} valid pools")]
    private partial void LogStarted(int services, int pools);

    [LoggerMessage(Level = LogLevel.Information, Message = "Service {Service}: {Outcome} addresses={Addresses} pool={Pool} problem={Problem}")]
    private partial void LogReconciled(string service, string outcome, string addresses, string? pool, string? problem);

    [LoggerMessage(Level = LogLevel.Warning, Message = "IPAddressPool {Pool} is invalid: {Problem} (running on last valid spec: {Stale})")]
    private partial void LogInvalidPool(string pool, string problem, bool stale);

    [LoggerMessage(Level = LogLevel.Warning, Message = "L2Advertisement {Advertisement} is invalid: {Problem}; {Consequence}")]
    private partial void LogInvalidAdvertisement(string advertisement, string problem, string consequence);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Reconciling {Key} failed; retrying in {Delay}")]
    private partial void LogRetry(Exception exception, string key, TimeSpan delay);

    /// <summary>What a worker does next: a Service to decide for, or the controller's own work, each a type of its own.</summary>
    private abstract record Work
    {
        /// <summary>The Service's key, or the kind of work.</summary>
        public sealed override string ToString() => this is Service service ? service.Key : GetType().Name;

        /// <summary>Decide for the Service ("namespace/name") and write what follows; a key no longer cached is a deletion.</summary>
        public sealed record Service(string Key) : Work;

        /// <summary>Pools or advertisements changed: rebuild the configuration and hand the allocator its pools.</summary>
        public sealed record Config : Work;

        /// <summary>Write every pool's usage and Valid condition; throttled (see <see cref="Enqueue"/>).</summary>
        public sealed record PoolStatus : Work;

        /// <summary>Write every advertisement's Valid condition.</summary>
        public sealed record AdvertisementStatus : Work;
    }
}

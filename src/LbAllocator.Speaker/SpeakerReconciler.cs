using System.Net.NetworkInformation;
using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Hosting;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.Kubernetes.Watching;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>
/// The speaker's loop, shaped like the controller's: watch caches → the changes since the last pass →
/// the election (<see cref="ElectionTable"/>, updated for what changed; rebuilt when pools or advertisements
/// change) → the plan for this node (<see cref="SpeakerPlan"/>, pure) → effects (<see cref="SpeakerEffects"/>:
/// the announcer at once, the API through the <see cref="L2StatusWriter"/> in the background). A pass never
/// waits on the API, so takeovers are never held up by it. Liveness comes from the LAN first
/// (<see cref="LanLiveness"/>: heartbeats sent by a thread of their own and heard through the announcer's captures),
/// the leases second (<see cref="SpeakerLiveness"/>, for membership and for peers never heard on the LAN).
/// </summary>
public sealed partial class SpeakerReconciler : IDisposable
{
    private const string Pass = "pass";
    private const string ServiceNameLabel = "kubernetes.io/service-name";
    private const string CachesGate = "caches";
    private const string LeaseGate = "lease";
    private const string LanGate = "lan";

    // While this node cannot answer somewhere, it looks again this often (a link coming back up).
    private static readonly TimeSpan RetryInterval = TimeSpan.FromSeconds(1);

    private readonly SpeakerOptions _options;
    private readonly SpeakerLease _lease;
    private readonly TimeProvider _time;
    private readonly ILogger<SpeakerReconciler> _logger;
    private readonly Regex _exclude;
    private readonly WorkQueue<string> _queue;
    private readonly ITimer _wake; // a pass when the next lease expires, though nothing changed
    private long _lanDue = long.MaxValue; // timestamp of the LAN view's next change by itself: the heartbeat thread judges it then
    private readonly AutoResetEvent _wakeBeat = new(false); // the heartbeat thread: stopping, or a pass moved that earlier
    private readonly Lock _wakeLock = new(); // the last pass's judgement and the timer armed from it go together
    private Judged? _judged;
    private readonly CancellationTokenSource _beating = new();
    private Thread? _beat; // the heartbeat: a thread of its own, so a starved thread pool cannot make us look dead
    private readonly IAnnouncer _announcer;
    private readonly SpeakerMetrics _metrics;
    private readonly LanLiveness _lan;
    private uint _sequence;
    private readonly ResourceCache<V1Service> _services;
    private readonly ResourceCache<V1EndpointSlice> _slices;
    private readonly ResourceCache<V1Node> _nodes;
    private readonly ResourceCache<V1Lease> _leases;
    private readonly ResourceCache<V1Alpha1IPAddressPool> _pools;
    private readonly ResourceCache<V1Alpha1L2Advertisement> _ads;
    private readonly ResourceCache<V1Alpha1ServiceL2Status> _statuses;
    private readonly IWatchedCache[] _caches; // all of the above: run, synced and restarted together
    private readonly SpeakerLiveness _liveness;
    private long? _watchesRestarted;
    private readonly Health _health;
    private readonly L2StatusWriter _writer;
    private readonly SpeakerEffects _effects;
    private readonly Verifier _verifier;
    private readonly Func<IReadOnlyList<NetworkInterfaceInfo>> _scan;

    // What changed since the last pass, filled by the caches' callbacks.
    private readonly Lock _changes = new();
    private readonly HashSet<string> _changedServices = new(StringComparer.Ordinal);
    private readonly HashSet<string> _changedNodes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Dictionary<string, V1EndpointSlice>> _slicesByService = new(StringComparer.Ordinal);
    private bool _configChanged = true;

    // The decision state, touched only by the pass.
    private readonly ConfigSource _config;
    private ElectionTable? _election;
    private HashSet<string> _alive = new(StringComparer.Ordinal);
    private IReadOnlyList<NetworkInterfaceInfo> _interfaces = [];
    private string? _cannotAnswer; // why this node cannot answer on some interface, as last reported

    /// <param name="scanInterfaces">This node's interfaces; /sys/class/net unless given.</param>
    public SpeakerReconciler(
        KubeApi client, SpeakerOptions options, SpeakerLease lease, IAnnouncer announcer, SpeakerMetrics metrics, Health health, TimeProvider time, ILoggerFactory loggers,
        Func<IReadOnlyList<NetworkInterfaceInfo>>? scanInterfaces = null)
    {
        _scan = scanInterfaces ?? (() => NetworkInterfaces.Scan());
        _health = health;
        health.SetReady(CachesGate, false, "listing Services, EndpointSlices, Nodes, pools, advertisements, statuses and leases");
        _options = options;
        _lease = lease;
        _time = time;
        _logger = loggers.CreateLogger<SpeakerReconciler>();
        _exclude = new Regex(options.ExcludeInterfaces);
        _queue = new WorkQueue<string>(TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(5), time);
        _wake = time.CreateTimer(_ =>
        {
            announcer.ReadHeartbeats(); // up to a beat's worth may wait unread: judge with them
            OnWake();
        }, null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _announcer = announcer;
        _metrics = metrics;
        _lan = new LanLiveness(options.NodeName, options.DeadInterval, time);
        var cacheLogger = loggers.CreateLogger("LbAllocator.Speaker.Watch");
        _services = new ResourceCache<V1Service>(Sources.Services(client) with { Trim = SpeakerTrims.Service }, cacheLogger);
        _slices = new ResourceCache<V1EndpointSlice>(Sources.EndpointSlices(client), cacheLogger);
        _nodes = new ResourceCache<V1Node>(Sources.Nodes(client), cacheLogger);
        _pools = new ResourceCache<V1Alpha1IPAddressPool>(Sources.Pools(client, options.Namespace), cacheLogger);
        _ads = new ResourceCache<V1Alpha1L2Advertisement>(Sources.Advertisements(client, options.Namespace), cacheLogger);
        _config = new ConfigSource(_pools, _ads);
        _statuses = new ResourceCache<V1Alpha1ServiceL2Status>(Sources.ServiceL2Statuses(client, options.Namespace) with { Trim = SpeakerTrims.Status }, cacheLogger);
        _leases = new ResourceCache<V1Lease>(Sources.Leases(client, options.Namespace, SpeakerLease.LabelSelector), cacheLogger);
        _caches = [_services, _slices, _nodes, _pools, _ads, _statuses, _leases];
        _liveness = new SpeakerLiveness(options.NodeName, options.LeaseDuration, options.RenewInterval, time);
        _writer = new L2StatusWriter(client, options, _statuses, time, loggers.CreateLogger<L2StatusWriter>());
        _effects = new SpeakerEffects(announcer, _writer, metrics, options, time, loggers.CreateLogger<SpeakerEffects>());
        _verifier = new Verifier(options.NodeName, announcer, _writer, time, loggers.CreateLogger<Verifier>());

        _services.Changed += (old, now) => Changed(_changedServices, ObjectKey.Of((now ?? old)!));
        _nodes.Changed += (old, now) => Changed(_changedNodes, (now ?? old)!.Metadata.Name);
        _slices.Changed += OnSliceChanged;
        // Status writes by the controller (pool usage) do not change what is announced; specs and labels do.
        _pools.Changed += (old, now) => ConfigChanged(old, now);
        _ads.Changed += (old, now) => ConfigChanged(old, now);
        // Only a speaker coming alive or leaving wakes a pass: a renewal of a live one changes no election
        // input, and expiries are picked up by the pass scheduled for them.
        _leases.Changed += (old, now) =>
        {
            if (_liveness.Observe(old, now))
            {
                _queue.Add(Pass);
            }
        };
        // A status naming a new owner or MACs (a takeover) changes what this node verifies; condition writes do not.
        _statuses.Changed += (old, now) =>
        {
            if (old?.Status?.Node != now?.Status?.Node
                || !(old?.Status?.Interfaces?.Select(i => (i.Name, i.Mac)) ?? []).SequenceEqual(now?.Status?.Interfaces?.Select(i => (i.Name, i.Mac)) ?? []))
            {
                _queue.Add(Pass);
            }
        };
        lease.HealthChanged += () => _queue.Add(Pass);
        lease.Renewed += RestartWatchesIfStalled;
        announcer.HeartbeatHeard += (heartbeat, age) =>
        {
            if (_lan.Heard(heartbeat, age))
            {
                _queue.Add(Pass);
            }
        };
        // Another host claims an address this node probes or announces: a pass stops answering it.
        announcer.AddressClaimed += (address, claimant) =>
        {
            if (_effects.Claimed(address, claimant))
            {
                _queue.Add(Pass);
            }
        };
        // A capture that stopped or cannot send: the interface may be down or gone, which a scan shows; a pass
        // reopens a capture that stopped.
        announcer.CaptureTrouble += () =>
        {
            RescanInterfaces();
            _queue.Add(Pass);
        };
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        NetworkChange.NetworkAddressChanged += OnNetworkChanged;
        NetworkChange.NetworkAvailabilityChanged += OnNetworkChanged;
        try
        {
            Task[] caches = [.. _caches.Select(c => c.RunAsync(cancellationToken))];
            await Task.WhenAll(_caches.Select(c => c.WaitForSyncAsync(cancellationToken)));
            LogSynced(_options.NodeName);
            _health.SetReady(CachesGate, true, "synced");
            _interfaces = _scan();
            _queue.Add(Pass);
            _beat = new Thread(Beat) { IsBackground = true, Name = "heartbeat", Priority = ThreadPriority.AboveNormal };
            _beat.Start();
            await Task.WhenAll([.. caches, _writer.RunAsync(cancellationToken), _verifier.RunAsync(cancellationToken), WorkAsync(cancellationToken), RescanAsync(cancellationToken)]);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            // No heartbeat may follow the leaving one the service sends after this returns.
            await _beating.CancelAsync();
            _wakeBeat.Set();
            _beat?.Join();
            NetworkChange.NetworkAddressChanged -= OnNetworkChanged;
            NetworkChange.NetworkAvailabilityChanged -= OnNetworkChanged;
        }
    }

    public void Dispose()
    {
        _beating.Dispose();
        _wake.Dispose();
        _wakeBeat.Dispose();
        _queue.Dispose();
        _effects.Dispose();
        _writer.Dispose();
        _verifier.Dispose();
    }

    /// <summary>The heartbeat this speaker sends now; leaving says it stopped answering, so peers take over at once.</summary>
    public Heartbeat Heartbeat(bool leaving) =>
        new(_options.NodeName, Interlocked.Increment(ref _sequence), _options.HeartbeatInterval, _options.DeadInterval, leaving);

    /// <summary>
    /// The heartbeat thread: sends a heartbeat every interval and reads the peers' since the last one; and it is the LAN
    /// view's timer, so the idle speaker is not woken for that too. When the view changes by itself before the next beat
    /// (a peer about to go unheard), it judges right after reading (the beats just read usually push the change out)
    /// and, if the change still comes first, once more when it is due.
    /// </summary>
    private void Beat()
    {
        var interval = (long)(_options.HeartbeatInterval.TotalSeconds * _time.TimestampFrequency);
        var nextBeat = _time.GetTimestamp();
        while (!_beating.IsCancellationRequested)
        {
            var now = _time.GetTimestamp();
            var beat = now >= nextBeat;
            if (beat)
            {
                if (_announcer.SendHeartbeat(Heartbeat(leaving: false)) > 0)
                {
                    _lan.Sent();
                }

                nextBeat = now + interval;
            }

            var lanDue = Interlocked.Read(ref _lanDue);
            var judge = now >= lanDue || (beat && lanDue < nextBeat);
            if (beat || judge)
            {
                _announcer.ReadHeartbeats(); // the peers' since the last read, counted before any judgement
            }

            if (judge)
            {
                OnWake();
                lanDue = Interlocked.Read(ref _lanDue);
            }

            // In whole milliseconds, rounded up: a wait rounded down to none would spin until the time comes.
            var wait = _time.GetElapsedTime(_time.GetTimestamp(), Math.Min(nextBeat, lanDue));
            _ = _wakeBeat.WaitOne(wait > TimeSpan.Zero ? TimeSpan.FromMilliseconds(Math.Ceiling(wait.TotalMilliseconds)) : TimeSpan.Zero);
        }
    }

    private void Changed(HashSet<string> set, string key)
    {
        lock (_changes)
        {
            set.Add(key);
        }

        _queue.Add(Pass);
    }

    private void ConfigChanged(IKubernetesObject<V1ObjectMeta>? old, IKubernetesObject<V1ObjectMeta>? now)
    {
        if (!ObjectChange.SpecChanged(old, now) && ObjectChange.SameLabels(old?.Metadata.Labels, now?.Metadata.Labels))
        {
            return;
        }

        lock (_changes)
        {
            _configChanged = true;
        }

        _queue.Add(Pass);
    }

    /// <summary>Keeps the slices indexed by Service, and marks the Services they belong to as changed.</summary>
    private void OnSliceChanged(V1EndpointSlice? old, V1EndpointSlice? now)
    {
        lock (_changes)
        {
            foreach (var (slice, present) in new[] { (old, false), (now, true) })
            {
                if (slice?.Metadata.Labels?.TryGetValue(ServiceNameLabel, out var name) != true)
                {
                    continue;
                }

                var service = $"{slice.Metadata.NamespaceProperty}/{name}";
                if (!_slicesByService.TryGetValue(service, out var slices))
                {
                    _slicesByService[service] = slices = new(StringComparer.Ordinal);
                }

                if (present)
                {
                    slices[ObjectKey.Of(slice)] = slice;
                }
                else
                {
                    slices.Remove(ObjectKey.Of(slice));
                }

                if (slices.Count == 0)
                {
                    _slicesByService.Remove(service);
                }

                _changedServices.Add(service);
            }
        }

        _queue.Add(Pass);
    }

    private Task WorkAsync(CancellationToken cancellationToken) =>
        _queue.ProcessAsync(
            (_, token) =>
            {
                // Each pass knows best when the next expiry is due, so it re-arms the one timer.
                var judged = Reconcile(token);
                lock (_wakeLock)
                {
                    _judged = judged;
                    Arm(judged.View.NextChange, judged.NextExpiry, judged.UntilUnhealthy, judged.OtherDueAt);
                }

                return Task.CompletedTask;
            },
            (_, e, delay) =>
            {
                // Whatever failed, the next pass starts from a full recompute.
                lock (_changes)
                {
                    _configChanged = true;
                }

                LogReconcileFailed(e, delay);
            },
            cancellationToken);

    /// <summary>
    /// A timer is due (the heartbeat thread's for the LAN view, <see cref="_wake"/> for the rest): a pass, unless what
    /// was due is who is alive and that has not changed. Peers heard again since the last pass (every heartbeat
    /// interval) and leases renewed (every renew interval) push the next change further out, so a pass then would find
    /// nothing new; with peers around that was a full pass every dead interval, most of the idle speaker's work. The
    /// views are judged again here, as the pass would, and the timers set for their next change. Callers read the
    /// heartbeats that wait first.
    /// </summary>
    private void OnWake()
    {
        lock (_wakeLock)
        {
            if (_judged is { } last && !(last.OtherDueAt is { } at && _time.GetTimestamp() >= at))
            {
                var (leaseAlive, nextExpiry) = _liveness.Others();
                var healthy = _lease.Healthy;
                if (healthy == last.LeaseHealthy && leaseAlive.SetEquals(last.LeaseAlive))
                {
                    var view = _lan.Judge(last.Members, leaseAlive, healthy);
                    if (view.Self == last.View.Self && view.HeardPeers == last.View.HeardPeers && view.Alive.SetEquals(last.View.Alive))
                    {
                        Arm(view.NextChange, nextExpiry, UntilUnhealthy(), last.OtherDueAt);
                        return;
                    }
                }
            }

            Interlocked.Exchange(ref _lanDue, long.MaxValue); // the pass sets it again: until then the heartbeat thread has nothing to judge
        }

        _queue.Add(Pass);
    }

    /// <summary>
    /// Sets the heartbeat thread to judge the LAN view when it changes, and the timer for the earliest of the rest
    /// (<paramref name="otherDueAt"/> a timestamp); never when none is.
    /// </summary>
    private void Arm(TimeSpan? lanChange, TimeSpan? leaseExpiry, TimeSpan? untilUnhealthy, long? otherDueAt)
    {
        var now = _time.GetTimestamp();
        var lanDue = lanChange is { } change ? now + (long)(change.TotalSeconds * _time.TimestampFrequency) : long.MaxValue;
        if (lanDue < Interlocked.Exchange(ref _lanDue, lanDue))
        {
            _wakeBeat.Set();
        }

        TimeSpan?[] due = [leaseExpiry, untilUnhealthy, otherDueAt is { } at ? _time.GetElapsedTime(now, at) : null];
        _wake.Change(due.Where(d => d is not null).Min() is { } first ? (first > TimeSpan.Zero ? first : TimeSpan.Zero) : Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>When this speaker's lease health runs out unless renewed; null when it has already.</summary>
    private TimeSpan? UntilUnhealthy() => _lease.UntilUnhealthy is { } fresh && fresh > TimeSpan.Zero ? fresh : null;

    private async Task RescanAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            await Task.Delay(_options.InterfaceRescanInterval, _time, cancellationToken);
            RescanInterfaces();
        }
    }

    private void OnNetworkChanged(object? sender, EventArgs e) => RescanInterfaces();

    private void RescanInterfaces()
    {
        var scanned = _scan();
        if (!scanned.SequenceEqual(_interfaces))
        {
            _interfaces = scanned;
            _queue.Add(Pass);
        }
    }

    /// <summary>One pass: the election brought up to date, planned and applied; returns what it judged and when the next pass is due without any change (a lease expiring).</summary>
    private Judged Reconcile(CancellationToken cancellationToken)
    {
        var cannotAnswer = Listen();
        var judged = LiveSpeakers();
        var view = judged.View;
        var alive = view.Alive;
        bool rebuild;
        List<string> services, nodes;
        lock (_changes)
        {
            (rebuild, services, nodes) = (_configChanged, [.. _changedServices], [.. _changedNodes]);
            _configChanged = false;
            _changedServices.Clear();
            _changedNodes.Clear();
        }

        if (rebuild || _election is null)
        {
            var config = _config.Build().Config;
            _election = ElectionTable.Build(
                config.Pools,
                config.Advertisements,
                _nodes.Items.Select(n => ToElectionNode(n, alive)),
                _services.Items.Select(ToAnnounced).OfType<AnnouncedService>());
        }
        else
        {
            // Nodes whose speaker came or went, and nodes whose object changed.
            nodes.AddRange(alive.Except(_alive).Concat(_alive.Except(alive)));
            foreach (var name in nodes.Distinct(StringComparer.Ordinal))
            {
                if (_nodes.TryGet(name, out var node))
                {
                    _election.SetNode(ToElectionNode(node!, alive));
                }
                else
                {
                    _election.RemoveNode(name);
                }
            }

            foreach (var key in services)
            {
                if (_services.TryGet(key, out var service) && ToAnnounced(service!) is { } announced)
                {
                    _election.SetService(announced);
                }
                else
                {
                    _election.RemoveService(key);
                }
            }
        }

        _alive = alive;
        var standing = view.Self == SelfState.Candidate;
        var janitor = standing && alive.Min(StringComparer.Ordinal) == _options.NodeName;
        var plan = SpeakerPlan.Make(_options.NodeName, _election, standing, janitor, Statuses(), _interfaces, _exclude);
        Func<string, V1Service?> serviceOf = key => _services.TryGet(key, out var service) ? service : null;
        var guardDue = _effects.Apply(plan, serviceOf, cancellationToken);
        _verifier.Set(VerifyTargets(alive, _election), serviceOf);
        _metrics.SetOwned(_options.NodeName, plan.Owned.Keys);
        Report(view, cannotAnswer);

        // Besides who is alive (judged again when due, see OnWake): a probe or a retry.
        TimeSpan?[] due = [guardDue, cannotAnswer is null ? null : RetryInterval];
        return due.Where(d => d is not null).Min() is { } other
            ? judged with { UntilUnhealthy = UntilUnhealthy(), OtherDueAt = _time.GetTimestamp() + (long)(other.TotalSeconds * _time.TimestampFrequency) }
            : judged with { UntilUnhealthy = UntilUnhealthy() };
    }

    /// <summary>
    /// Keeps captures open on the interfaces this node announces on and tells the LAN view whether it can answer;
    /// returns why it cannot on some (or all) of them, or null when it can on every one.
    /// </summary>
    private string? Listen()
    {
        if (_cannotAnswer is not null)
        {
            _interfaces = _scan(); // looking for the interface to come back
        }

        var (listen, problems) = SpeakerPlan.ListenOn(_ads.Items.Select(a => (IReadOnlyList<string>)(a.Spec?.Interfaces ?? [])), _interfaces, _exclude);
        var failed = _announcer.Listen([.. listen]);
        var serving = listen.Any(i => !failed.ContainsKey(i));
        _lan.SetServing(serving);
        var all = problems.Concat(failed).OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}: {p.Value}").ToList();
        if (listen.Count == 0 && problems.Count == 0 && _ads.Items.Count > 0)
        {
            all.Add("no usable interface (" + (_interfaces.Count == 0 ? "none found" : string.Join(", ", _interfaces.Select(i => $"{i.Name}: {i.Unusable(_exclude) ?? "usable"}"))) + ")");
        }

        var why = all.Count == 0 ? null : string.Join("; ", all);
        // Peers that never hear us on the LAN judge us by the lease: it must not vouch for a node that answers nowhere.
        _lease.SetCannotAnswer(serving ? null : why ?? "no interface to announce on");
        return why;
    }

    /// <summary>Who is alive (this node only while it stands for election), and when the lease view next changes by itself.</summary>
    private Judged LiveSpeakers()
    {
        var (leaseAlive, next) = _liveness.Others();
        _lease.CheckHealth();
        var members = _leases.Items.Select(l => l.Spec?.HolderIdentity).OfType<string>().ToHashSet(StringComparer.Ordinal);
        var healthy = _lease.Healthy;
        _announcer.ReadHeartbeats();
        return new Judged(_lan.Judge(members, leaseAlive, healthy), members, leaseAlive, healthy, next, null, null);
    }

    /// <summary>A pass's view of who is alive, what it was judged from, and when its other reasons for a pass are due.</summary>
    /// <param name="NextExpiry">When the lease view next changes by itself.</param>
    /// <param name="UntilUnhealthy">When this speaker's lease health runs out unless renewed.</param>
    /// <param name="OtherDueAt">Timestamp of the next pass due for anything but who is alive (a probe, a retry).</param>
    private sealed record Judged(
        LivenessView View, IReadOnlyCollection<string> Members, IReadOnlySet<string> LeaseAlive, bool LeaseHealthy, TimeSpan? NextExpiry, TimeSpan? UntilUnhealthy, long? OtherDueAt);

    /// <summary>Readiness, the alive metric and, when it starts or ends, a Node event saying where this node cannot answer.</summary>
    private void Report(LivenessView view, string? cannotAnswer)
    {
        _metrics.SetAlive(view.Self == SelfState.Candidate);
        var lease = SpeakerLease.NameFor(_options.NodeName);
        _health.SetReady(LeaseGate, view.Self != SelfState.Fenced, _lease.Healthy ? $"lease {lease} renewed"
            : view.Self == SelfState.Fenced ? $"lease {lease} not renewed within {_options.LeaseDuration.TotalSeconds:0.#}s and no peer heard on the LAN: not answering"
            : $"lease {lease} not renewed within {_options.LeaseDuration.TotalSeconds:0.#}s; answering while peers are heard on the LAN ({view.HeardPeers} now)");
        _health.SetReady(LanGate, cannotAnswer is null, cannotAnswer is null
            ? $"{(view.Self == SelfState.WarmingUp ? "listening before answering" : "answering")}; {view.HeardPeers} peers heard"
            : view.Self == SelfState.CannotAnswer ? $"cannot answer, not standing for election: {cannotAnswer}" : $"cannot answer on {cannotAnswer}");
        if (cannotAnswer == _cannotAnswer)
        {
            return;
        }

        var wasTrouble = _cannotAnswer is not null;
        _cannotAnswer = cannotAnswer;
        if (cannotAnswer is not null)
        {
            LogCannotAnswer(cannotAnswer);
        }
        else
        {
            LogCanAnswer();
        }

        if (_nodes.TryGet(_options.NodeName, out var node) && (cannotAnswer is not null || wasTrouble))
        {
            // Listed objects carry no kind, and the event recorder's default is a Service.
            _writer.Record(new V1Node { ApiVersion = "v1", Kind = V1Node.KubeKind, Metadata = node!.Metadata }, cannotAnswer is not null
                ? new PlannedEvent($"node/{_options.NodeName}", "Warning", "CannotAnswer", $"speaker cannot answer ARP/NDP on {cannotAnswer}: not standing for election for what it cannot serve")
                : new PlannedEvent($"node/{_options.NodeName}", "Normal", "Answering", "speaker answers ARP/NDP on every interface it announces on again"));
        }
    }

    /// <summary>
    /// Our renewals reach the API server, yet the lease watch has shown none of them for a lease duration: the watch
    /// connections hang (after a network cut heals, TCP may not resume them for a minute), and meanwhile this node
    /// would stand for Services it has not seen. Start every watch afresh, at most once per lease duration.
    /// </summary>
    private void RestartWatchesIfStalled()
    {
        if (_liveness.SinceEcho() is not { } quiet || quiet < _options.LeaseDuration
            || (_watchesRestarted is { } last && _time.GetElapsedTime(last) < _options.LeaseDuration))
        {
            return;
        }

        _watchesRestarted = _time.GetTimestamp();
        LogWatchesStalled(quiet);
        foreach (var cache in _caches)
        {
            cache.RestartWatch();
        }
    }

    /// <summary>
    /// The Services this node checks (<see cref="Verifier"/>): announced by another live node that its status names
    /// with its MACs and the election agrees on, and for which this node ranks first among the others. Only a node
    /// standing for election checks.
    /// </summary>
    private List<VerifyTarget> VerifyTargets(HashSet<string> alive, ElectionTable election)
    {
        var targets = new List<VerifyTarget>();
        if (!alive.Contains(_options.NodeName))
        {
            return targets;
        }

        foreach (var status in _statuses.Items)
        {
            if (status.Status is not { Node: { } owner } s || owner == _options.NodeName || !alive.Contains(owner))
            {
                continue;
            }

            var key = $"{s.ServiceNamespace}/{s.ServiceName}";
            var macs = (s.Interfaces ?? []).Select(i => MacAddress.TryParse(i.Mac, out var mac) ? mac : (MacAddress?)null).OfType<MacAddress>().ToList();
            // A status an older speaker wrote has no MACs: nothing to check the answers against.
            if (macs.Count > 0 && election.Get(key) is { } decision && decision.Node == owner && Verifier.VerifierOf(key, owner, alive) == _options.NodeName)
            {
                targets.Add(new VerifyTarget(key, status.Metadata.Name, owner, decision.Addresses, macs));
            }
        }

        return targets;
    }

    private IEnumerable<StatusView> Statuses() => _statuses.Items.Select(s =>
        new StatusView(s.Metadata.Name, $"{s.Status?.ServiceNamespace}/{s.Status?.ServiceName}", s.Status?.Node,
            s.Status?.Conditions?.Any(c => c.Type == L2Conditions.AddressConflict && c.Status == "True") == true));

    private static ElectionNode ToElectionNode(V1Node node, HashSet<string> alive) => new(
        node.Metadata.Name,
        (IReadOnlyDictionary<string, string>?)node.Metadata.Labels?.AsReadOnly() ?? new Dictionary<string, string>(),
        alive.Contains(node.Metadata.Name),
        node.Status?.Conditions?.Any(c => c.Type == "NetworkUnavailable" && c.Status == "True") == true);

    /// <summary>The Service as the election sees it, or null when this speaker has nothing to announce for it.</summary>
    private AnnouncedService? ToAnnounced(V1Service service)
    {
        var info = ObjectMapper.ToServiceInfo(service, null);
        if (!info.IsLoadBalancerFor(_options.LoadBalancerClass) || info.IngressIps.Count == 0)
        {
            return null;
        }

        var local = info.TrafficPolicy == "Local";
        return new AnnouncedService(
            info.Key,
            info.IngressAddresses,
            info.Annotations.GetValueOrDefault(ServiceAnnotations.AllocatedFromPool),
            info.Labels,
            local,
            local ? LocalEndpoints.Nodes(EndpointsOf(info.Key)) : null);
    }

    private List<EndpointState> EndpointsOf(string service)
    {
        lock (_changes)
        {
            return _slicesByService.TryGetValue(service, out var slices) ? [.. slices.Values.SelectMany(ObjectMapper.ToEndpointStates)] : [];
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Speaker on {Node} has synced its caches")]
    private partial void LogSynced(string node);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot answer on {Problem}: not standing for election for what it cannot serve")]
    private partial void LogCannotAnswer(string problem);

    [LoggerMessage(Level = LogLevel.Information, Message = "Answering on every interface announced on again")]
    private partial void LogCanAnswer();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Lease renewals succeed but the lease watch has shown none for {Quiet}: restarting every watch on a new connection")]
    private partial void LogWatchesStalled(TimeSpan quiet);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Speaker pass failed; retrying in {Delay}")]
    private partial void LogReconcileFailed(Exception exception, TimeSpan delay);
}

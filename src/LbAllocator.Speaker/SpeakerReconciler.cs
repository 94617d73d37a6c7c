using System.Net.NetworkInformation;
using System.Text.RegularExpressions;
using LbAllocator.Core;
using LbAllocator.Hosting;
using LbAllocator.Kubernetes.Watching;
using LbAllocator.Speaker.Capture;
using LbAllocator.Speaker.Lan;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>What the reconciler asks of the API about speakers, besides its caches (the lease, in the process).</summary>
/// <param name="OthersRenewing">
/// Whether another speaker still renews its lease, not counting the ones named (heard leaving): the judge for a joiner
/// nobody answers.
/// </param>
/// <param name="SetCannotAnswer">Tells the API where this node cannot answer (null: it can everywhere).</param>
public sealed record SpeakerApi(Func<IReadOnlySet<string>, CancellationToken, Task<bool>> OthersRenewing, Action<string?> SetCannotAnswer);

/// <summary>
/// The speaker's loop, shaped like the controller's: inputs (<see cref="SpeakerInputs"/>: caches and what changed)
/// and who is alive on the segment (<see cref="Membership"/>) → the election (<see cref="ElectionTable"/>, updated for
/// what changed) → the plan for this node (<see cref="SpeakerPlan"/>, pure) → effects (<see cref="SpeakerEffects"/>:
/// the answerer at once, the API in the background). A pass never waits on the API. Addresses taken from a speaker
/// found dead are answered at once; any other is probed first, so a speaker that lets one go has stopped before this
/// one starts.
/// </summary>
public sealed partial class SpeakerReconciler : IDisposable
{
    private const string Pass = "pass";
    private const string Check = "check"; // the pass loop shows it turns
    private const string PassLoop = "pass-loop";

    // While this node cannot answer somewhere, it looks again this often (a link coming back up).
    private static readonly TimeSpan RetryInterval = TimeSpan.FromSeconds(1);

    private readonly SpeakerInputs _inputs;
    private readonly SpeakerOptions _options;
    private readonly Membership _membership;
    private readonly Action _readBeats;
    private readonly ICaptures _captures;
    private readonly SpeakerEffects _effects;
    private readonly Verifier _verifier;
    private readonly SpeakerReadiness _readiness;
    private readonly SpeakerMetrics _metrics;
    private readonly SpeakerApi _api;
    private readonly Health _health;
    private readonly TimeProvider _time;
    private readonly ILogger<SpeakerReconciler> _logger;
    private readonly Regex _exclude;
    private readonly WorkQueue<string> _queue;
    private readonly ITimer _due; // a pass when a probe window ends or a retry is due, though nothing changed
    private readonly Func<IReadOnlyList<NetworkInterfaceInfo>> _scan;
    private readonly SpeakerScheduler? _scheduler;
    private int _aloneCheck; // 1 while an alone check is under way

    // The decision state, touched only by the pass.
    private ElectionTable? _election;
    private HashSet<string> _alive = new(StringComparer.Ordinal);
    private Dictionary<string, string?> _owners = new(StringComparer.Ordinal); // each Service's owner after the last pass
    private IReadOnlyList<NetworkInterfaceInfo> _interfaces = [];
    private string? _cannotAnswer;

    /// <param name="readBeats">Reads the beats that came since the last tick (the transport), before each tick.</param>
    /// <param name="heartbeatThread">False in tests, which call <see cref="Tick"/> themselves on a fake clock.</param>
    /// <param name="scanInterfaces">This node's interfaces; /sys/class/net unless given.</param>
    public SpeakerReconciler(
        SpeakerInputs inputs, SpeakerOptions options, Membership membership, Action readBeats, ICaptures captures, SpeakerEffects effects, Verifier verifier,
        SpeakerReadiness readiness, SpeakerMetrics metrics, SpeakerApi api, Health health, TimeProvider time, ILogger<SpeakerReconciler> logger,
        bool heartbeatThread = true, Func<IReadOnlyList<NetworkInterfaceInfo>>? scanInterfaces = null)
    {
        _inputs = inputs;
        _options = options;
        _membership = membership;
        _readBeats = readBeats;
        _captures = captures;
        _effects = effects;
        _verifier = verifier;
        _readiness = readiness;
        _metrics = metrics;
        _api = api;
        _health = health;
        _time = time;
        _logger = logger;
        _scan = scanInterfaces ?? (() => NetworkInterfaces.Scan());
        _exclude = new Regex(options.ExcludeInterfaces);
        _queue = new WorkQueue<string>(TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(5), time);
        _due = time.CreateTimer(_ => _queue.Add(Pass), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _scheduler = heartbeatThread ? new SpeakerScheduler(options.HeartbeatInterval, Tick, () => _queue.Add(Check), health) : null;
        readiness.Starting();

        inputs.Changed += () => _queue.Add(Pass);
        membership.Changed += () => _queue.Add(Pass);
        effects.SpeakerOf = membership.SpeakerOf;
        // A capture that stopped or cannot send: the interface may be down or gone, which a scan shows.
        captures.CaptureTrouble += () =>
        {
            RescanInterfaces();
            _queue.Add(Pass);
        };
    }

    /// <summary>No pass is queued or running: for tests, after they changed something.</summary>
    internal bool Idle => _queue.Idle;

    /// <summary>Whether this node may answer now: a member whose neighbours show they hear it (read by the answerer for every request).</summary>
    public bool MayAnswer() => _time.GetTimestamp() < _membership.GateOpenUntil;

    /// <summary>Claims heard for the addresses this node wants: defended, or a pass when it must stop or wait.</summary>
    public void OnClaim(Ip address, MacAddress claimant)
    {
        if (_effects.Claimed(address, claimant))
        {
            _queue.Add(Pass);
        }
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        NetworkChange.NetworkAddressChanged += OnNetworkChanged;
        NetworkChange.NetworkAvailabilityChanged += OnNetworkChanged;
        try
        {
            var caches = _inputs.RunAsync(cancellationToken);
            await _inputs.WaitForSyncAsync(cancellationToken);
            LogSynced(_options.NodeName);
            _readiness.Synced();
            _interfaces = _scan();
            _membership.Start();
            _scheduler?.Start();
            _queue.Add(Pass);
            await Task.WhenAll(caches, _verifier.RunAsync(cancellationToken), WorkAsync(cancellationToken), RescanAsync(cancellationToken));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            _scheduler?.Stop();
            NetworkChange.NetworkAddressChanged -= OnNetworkChanged;
            NetworkChange.NetworkAvailabilityChanged -= OnNetworkChanged;
        }
    }

    /// <summary>One heartbeat interval's work on the LAN: the beats that came, the membership's tick, and a look at the captures.</summary>
    public void Tick()
    {
        _readBeats();
        _membership.Tick();
        if (_captures.AnyStuck)
        {
            _queue.Add(Pass); // it says this node cannot answer there, and leaves if it can answer nowhere
        }
    }

    /// <summary>The API path came back (a renewal succeeded after failures): watches that hung meanwhile start afresh.</summary>
    public void ApiRecovered()
    {
        LogWatchesRestarted();
        _inputs.RestartWatches();
    }

    public void Dispose()
    {
        _scheduler?.Dispose();
        _due.Dispose();
        _queue.Dispose();
        _effects.Dispose();
        _verifier.Dispose();
    }

    private Task WorkAsync(CancellationToken cancellationToken) =>
        _queue.ProcessAsync(
            (item, token) =>
            {
                _health.Beat(PassLoop, TimeSpan.FromSeconds(2));
                if (item == Pass)
                {
                    var due = Reconcile(token);
                    _due.Change(due ?? Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
                }

                return Task.CompletedTask;
            },
            (_, e, delay) =>
            {
                _inputs.Reset(); // whatever failed, the next pass starts from a full recompute
                LogReconcileFailed(e, delay);
            },
            cancellationToken);

    /// <summary>One pass: the election brought up to date, planned and applied; returns when the next pass is due without any change.</summary>
    private TimeSpan? Reconcile(CancellationToken cancellationToken)
    {
        var cannotAnswer = Listen();
        var view = _membership.View();
        if (view.AloneCheckDue)
        {
            StartAloneCheck(view.Left, cancellationToken);
        }

        var alive = view.Alive.ToHashSet(StringComparer.Ordinal);
        var changes = _inputs.TakeChanges();
        if (changes.Config || _election is null)
        {
            _election = _inputs.NewElection(alive);
        }
        else
        {
            // Nodes whose speaker came or went, and nodes whose object changed.
            _inputs.Update(_election, changes.Services, changes.Nodes.Concat(alive.Except(_alive)).Concat(_alive.Except(alive)), alive);
        }

        _alive = alive;
        var self = _options.NodeName;
        var standing = view.State == MemberState.Member;
        var janitor = standing && alive.Min(StringComparer.Ordinal) == self;
        var plan = SpeakerPlan.Make(self, _election, standing, janitor, _inputs.StatusViews(), _interfaces, _exclude);
        var guardDue = _effects.Apply(plan, FromTheDead(plan, alive), _captures.Interfaces, _inputs.Service, cancellationToken);
        _owners = _election.All().ToDictionary(a => a.ServiceKey, a => a.Node, StringComparer.Ordinal);
        _verifier.Set(_inputs.VerifyTargets(alive, _election), _inputs.Service);
        _metrics.SetOwned(self, plan.Owned.Keys);
        _readiness.Report(view, MayAnswer(), cannotAnswer, _inputs.Node(self));

        // Besides what changes by itself (the membership, the caches): a probe window, or a retry.
        TimeSpan?[] due = [guardDue, cannotAnswer is null ? null : RetryInterval];
        return due.Where(d => d is not null).Min();
    }

    /// <summary>
    /// The addresses of the Services this node now wins that a speaker now dead owned at the last pass: it left, or a
    /// majority of its neighbours stopped hearing it after it stopped answering, so they are answered at once.
    /// </summary>
    private HashSet<Ip> FromTheDead(SpeakerPlan plan, HashSet<string> alive)
    {
        var taken = new HashSet<Ip>();
        foreach (var (key, ours) in plan.Announced)
        {
            if (_owners.GetValueOrDefault(key) is { } previous && previous != _options.NodeName && !alive.Contains(previous))
            {
                taken.UnionWith(ours.Addresses);
            }
        }

        return taken;
    }

    /// <summary>
    /// Keeps captures open on the interfaces this node announces on and tells the membership whether it can take part
    /// at all; returns why it cannot answer on some (or all) of them, or null when it can on every one.
    /// </summary>
    private string? Listen()
    {
        if (_cannotAnswer is not null)
        {
            _interfaces = _scan(); // looking for the interface to come back
        }

        var (listen, problems) = SpeakerPlan.ListenOn(_inputs.AdvertisedInterfaces, _interfaces, _exclude);
        var failed = _captures.Listen([.. listen]);
        var serving = listen.Any(i => !failed.ContainsKey(i));
        _membership.SetServing(serving);
        var all = problems.Concat(failed).OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}: {p.Value}").ToList();
        if (listen.Count == 0 && problems.Count == 0 && _inputs.HasAdvertisements)
        {
            all.Add("no usable interface (" + (_interfaces.Count == 0 ? "none found" : string.Join(", ", _interfaces.Select(i => $"{i.Name}: {i.Unusable(_exclude) ?? "usable"}"))) + ")");
        }

        var why = all.Count == 0 ? null : string.Join("; ", all);
        _api.SetCannotAnswer(serving ? null : why ?? "no interface to announce on");
        _cannotAnswer = why;
        return why;
    }

    /// <summary>Nobody answered this joiner on the LAN: the API says whether another speaker is still around (off the pass).</summary>
    private void StartAloneCheck(IReadOnlySet<string> left, CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _aloneCheck, 1) == 1)
        {
            return;
        }

        _ = Task.Run(
            async () =>
            {
                try
                {
                    using var timeout = new CancellationTokenSource(_options.ApiTimeout, _time);
                    using var call = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
                    var others = await _api.OthersRenewing(left, call.Token);
                    _membership.AloneChecked(alone: !others);
                }
                catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                {
                    // Unknown is not alone: this node stays silent and asks again.
                    LogAloneCheckFailed(e);
                    _membership.AloneChecked(alone: false);
                }
                finally
                {
                    Volatile.Write(ref _aloneCheck, 0);
                }
            },
            CancellationToken.None);
    }

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

    [LoggerMessage(Level = LogLevel.Information, Message = "Speaker on {Node} has synced its caches")]
    private partial void LogSynced(string node);

    [LoggerMessage(Level = LogLevel.Information, Message = "The API server answers again after failures: restarting every watch on a new connection")]
    private partial void LogWatchesRestarted();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not ask the API whether other speakers renew their leases; staying silent and asking again")]
    private partial void LogAloneCheckFailed(Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Speaker pass failed; retrying in {Delay}")]
    private partial void LogReconcileFailed(Exception exception, TimeSpan delay);
}

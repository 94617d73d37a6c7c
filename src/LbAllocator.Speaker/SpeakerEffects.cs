using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes.Crds;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>
/// Carries a plan out: the owned addresses through the <see cref="AddressGuard"/> (probed first unless taken from a
/// speaker now dead, held back while a host that is not a speaker claims them), then the answerer (what is answered
/// changes at once), gratuitous announcements for addresses taken over (and again every refresh interval, see
/// <see cref="GratuitousRefresh"/>) and probes, then the status writer is handed the API side, which it does on its
/// own time. Nothing here waits on I/O.
/// </summary>
public sealed partial class SpeakerEffects(
    IAnswerer answerer, IAddressWatch watch, IStatusWriter writer, SpeakerMetrics metrics, SpeakerOptions options, TimeProvider time, ILogger<SpeakerEffects> logger)
    : IDisposable
{
    // A defended address's event goes out at most this often: a flood of forged claims is counted, not reported each time.
    private static readonly TimeSpan DefendEventInterval = TimeSpan.FromMinutes(5);

    private readonly GratuitousRefresh _refresh = new(answerer, options.GratuitousRefreshInterval, time);
    private readonly AddressGuard _guard = new(time);
    private readonly Lock _lock = new();
    private SpeakerPlan _applied = SpeakerPlan.Empty;
    private IReadOnlyDictionary<Ip, AddressConflict> _conflicts = new Dictionary<Ip, AddressConflict>();
    private readonly HashSet<string> _told = new(StringComparer.Ordinal); // Services whose nodeAssigned event is out
    private readonly Dictionary<Ip, long> _defendedTold = []; // when each address's last AddressDefended event went out
    private Func<string, V1Service?> _service = _ => null;

    /// <summary>Who a MAC belongs to among the live speakers, if anyone: a speaker still answering a probe is letting go, not in conflict.</summary>
    public Func<MacAddress, string?> SpeakerOf { get; set; } = _ => null;

    /// <param name="fromTheDead">Addresses this node now wins whose previous owner is a speaker now dead: answered at once.</param>
    /// <param name="macs">This node's interfaces with an open capture, and their MACs, for the statuses.</param>
    /// <param name="service">The Service object for a key, for events about it; null when it is gone.</param>
    /// <param name="cancellationToken">Ends the gratuitous announcements still being sent.</param>
    /// <returns>When a probe window ends or a probe is due, if any: the next pass must run by then.</returns>
    public TimeSpan? Apply(
        SpeakerPlan plan, IReadOnlySet<Ip> fromTheDead, IReadOnlyDictionary<string, MacAddress> macs, Func<string, V1Service?> service, CancellationToken cancellationToken)
    {
        var guarded = _guard.Check(plan.Owned, fromTheDead);
        watch.Guard([.. plan.Owned.Keys]);
        var ownedBefore = answerer.OwnedAddresses;
        foreach (var (ip, name) in answerer.SetOwned(guarded.Allowed))
        {
            LogTakingOver(ip, name);
            _ = AnnounceGratuitouslyAsync(ip, name, cancellationToken);
        }

        foreach (var (ip, interfaces) in guarded.Probe)
        {
            foreach (var name in interfaces)
            {
                watch.Probe(ip, name);
            }
        }

        _refresh.Track(guarded.Allowed);
        var ownedNow = answerer.OwnedAddresses;
        metrics.OwnershipChanged(acquired: ownedNow.Except(ownedBefore).Count(), released: ownedBefore.Except(ownedNow).Count());

        SpeakerPlan previous;
        lock (_lock)
        {
            previous = _applied;
            _applied = plan;
            _service = service;
            foreach (var gone in _defendedTold.Keys.Where(ip => !plan.Owned.ContainsKey(ip)).ToList())
            {
                _defendedTold.Remove(gone);
            }
        }

        foreach (var key in plan.StoppedSince(previous))
        {
            LogStopped(key);
            writer.Forget(key);
        }

        foreach (var (key, ours) in plan.StartedSince(previous))
        {
            // Text, not lists: JSON logs print a list field by its type name.
            LogAnnouncing(key, ours.AddressText, ours.InterfaceText);
        }

        var previousConflicts = _conflicts;
        _conflicts = guarded.Conflicts;
        foreach (var planned in plan.EventsSince(previous).Concat(AssignedEvents(plan, guarded)).Concat(ConflictEvents(plan, previousConflicts, guarded)))
        {
            if (service(planned.ServiceKey) is { } target)
            {
                writer.Record(target, planned);
            }
        }

        writer.Sync(plan, guarded.Conflicts, macs);
        return guarded.NextDue;
    }

    /// <summary>
    /// Another MAC said it uses <paramref name="address"/> (from a capture thread). An address being answered is
    /// defended at once; true when a pass must follow (a speaker still answers a probe, or a conflict).
    /// </summary>
    public bool Claimed(Ip address, MacAddress claimant)
    {
        var speaker = SpeakerOf(claimant);
        switch (_guard.Claimed(address, claimant, speaker is not null))
        {
            case ClaimOutcome.Defend:
                Defend(address, claimant, speaker);
                return false;
            case ClaimOutcome.DefendLater:
                _ = DefendLaterAsync(address, claimant, speaker);
                return false;
            case ClaimOutcome.Conflict:
                metrics.ConflictDetected();
                LogConflict(address, claimant);
                return true;
            case ClaimOutcome.Held:
                return true;
            default:
                return false;
        }
    }

    public void Dispose() => _refresh.Dispose();

    private async Task DefendLaterAsync(Ip address, MacAddress claimant, string? speaker)
    {
        await Task.Delay(AddressGuard.DefendInterval, time).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (_guard.DefendNow(address))
        {
            Defend(address, claimant, speaker);
        }
    }

    /// <summary>Announces an answered address again on its interfaces, and says so on its Service (at most every few minutes).</summary>
    private void Defend(Ip address, MacAddress claimant, string? speaker)
    {
        metrics.AddressDefended();
        KeyValuePair<string, Ours>? owner;
        Func<string, V1Service?> service;
        lock (_lock)
        {
            owner = _applied.Announced.FirstOrDefault(kv => kv.Value.Addresses.Contains(address));
            service = _service;
        }

        foreach (var name in owner?.Value.Interfaces ?? [])
        {
            answerer.AnnounceGratuitously(address, name);
        }

        var now = time.GetTimestamp();
        lock (_lock)
        {
            if (_defendedTold.TryGetValue(address, out var told) && time.GetElapsedTime(told, now) < DefendEventInterval)
            {
                return;
            }

            _defendedTold[address] = now;
        }

        var who = speaker is null ? $"{claimant}, a host that is not a speaker" : $"{claimant}, the speaker of node {speaker}";
        LogDefended(address, who);
        if (owner?.Key is { } key && service(key) is { } target)
        {
            writer.Record(target, new PlannedEvent(key, "Warning", "AddressDefended",
                $"{address} was announced by {who}; node {options.NodeName} announced it again and keeps answering it (reported at most every {DefendEventInterval.TotalMinutes:0} minutes)",
                Topic: PlannedEvent.DefendTopic));
        }
    }

    /// <summary>
    /// nodeAssigned for each Service announced, once, when an address of it is first answered: not while its first
    /// probe or a conflict holds every address back.
    /// </summary>
    private IEnumerable<PlannedEvent> AssignedEvents(SpeakerPlan plan, GuardDecision guarded)
    {
        _told.IntersectWith(plan.Announced.Keys);
        foreach (var (key, ours) in plan.Announced)
        {
            if (!_told.Contains(key) && ours.Addresses.Any(guarded.Allowed.ContainsKey))
            {
                _told.Add(key);
                yield return SpeakerPlan.Assigned(key, ours, options.NodeName);
            }
        }
    }

    /// <summary>A Warning when a conflict starts or its claimant changes; a Normal event when it ends.</summary>
    private IEnumerable<PlannedEvent> ConflictEvents(SpeakerPlan plan, IReadOnlyDictionary<Ip, AddressConflict> before, GuardDecision now)
    {
        foreach (var (key, ours) in plan.Announced)
        {
            foreach (var ip in ours.Addresses)
            {
                if (now.Conflicts.TryGetValue(ip, out var conflict) && before.GetValueOrDefault(ip)?.Claimant != conflict.Claimant)
                {
                    yield return new PlannedEvent(key, "Warning", L2Conditions.AddressConflict, $"{ip} is already in use by {conflict.Claimant} (a host that is not a speaker): node {options.NodeName} does not announce it while that host answers for it, and probes again with backoff", Topic: PlannedEvent.ConflictTopic);
                }
                else if (now.Resolved.Contains(ip))
                {
                    yield return new PlannedEvent(key, "Normal", "AddressConflictResolved", $"{ip} is no longer claimed by another host: announcing it from node {options.NodeName}", Topic: PlannedEvent.ConflictTopic);
                }
            }
        }
    }

    private async Task AnnounceGratuitouslyAsync(Ip address, string interfaceName, CancellationToken cancellationToken)
    {
        try
        {
            for (var i = 0; i < options.GratuitousCount && !cancellationToken.IsCancellationRequested; i++)
            {
                if (i > 0)
                {
                    await Task.Delay(options.GratuitousInterval, time, cancellationToken);
                }

                if (!answerer.AnnounceGratuitously(address, interfaceName))
                {
                    return; // no longer ours there
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Announcing {Service} ({Addresses}) on {Interfaces}")]
    private partial void LogAnnouncing(string service, string addresses, string interfaces);

    [LoggerMessage(Level = LogLevel.Information, Message = "No longer announcing {Service}")]
    private partial void LogStopped(string service);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Address conflict: {Address} is claimed by {Claimant}, a host that is not a speaker; not answering for it until a probe finds it free")]
    private partial void LogConflict(Ip address, MacAddress claimant);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Address}, which this node answers, was announced by {Claimant}: announced again (defended); logged at most every few minutes")]
    private partial void LogDefended(Ip address, string claimant);

    [LoggerMessage(Level = LogLevel.Information, Message = "Taking over {Address} on {Interface}: sending gratuitous announcements")]
    private partial void LogTakingOver(Ip address, string @interface);
}

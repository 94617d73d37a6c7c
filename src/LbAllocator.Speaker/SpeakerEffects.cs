using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes.Crds;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>
/// Carries a plan out: the owned addresses through the <see cref="AddressGuard"/> (probed first, held back while
/// another host claims them), then the announcer (what is answered changes at once), gratuitous announcements
/// for addresses taken over (and again every refresh interval, see <see cref="GratuitousRefresh"/>) and probes, then
/// the status writer is handed the API side, which it does on its own time. Nothing here waits on I/O.
/// </summary>
public sealed partial class SpeakerEffects(
    IAnnouncer announcer, L2StatusWriter writer, SpeakerMetrics metrics, SpeakerOptions options, TimeProvider time, ILogger<SpeakerEffects> logger)
    : IDisposable
{
    private readonly GratuitousRefresh _refresh = new(announcer, options.GratuitousRefreshInterval, time);
    private readonly AddressGuard _guard = new(time);
    private SpeakerPlan _applied = SpeakerPlan.Empty;
    private IReadOnlyDictionary<Ip, AddressConflict> _conflicts = new Dictionary<Ip, AddressConflict>();
    private readonly HashSet<string> _told = new(StringComparer.Ordinal); // Services whose nodeAssigned event is out

    /// <param name="service">The Service object for a key, for events about it; null when it is gone.</param>
    /// <param name="cancellationToken">Ends the gratuitous announcements and probes still being sent.</param>
    /// <returns>When a probe window ends or a re-probe is due, if any: the next pass must run by then.</returns>
    public TimeSpan? Apply(SpeakerPlan plan, Func<string, V1Service?> service, CancellationToken cancellationToken)
    {
        var guarded = _guard.Check(plan.Owned, plan.Unproven);
        announcer.Guard([.. plan.Owned.Keys]);
        var ownedBefore = announcer.OwnedAddresses;
        foreach (var (ip, name) in announcer.SetOwned(guarded.Allowed))
        {
            LogTakingOver(ip, name);
            _ = AnnounceGratuitouslyAsync(ip, name, cancellationToken);
        }

        foreach (var (ip, interfaces) in guarded.Probe)
        {
            _ = ProbeAsync(ip, interfaces, cancellationToken);
        }

        _refresh.Track(guarded.Allowed);
        var ownedNow = announcer.OwnedAddresses;
        metrics.OwnershipChanged(acquired: ownedNow.Except(ownedBefore).Count(), released: ownedBefore.Except(ownedNow).Count());

        var previous = _applied;
        _applied = plan;
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

        writer.Sync(plan, guarded.Conflicts, announcer.Interfaces);
        return guarded.NextDue;
    }

    /// <summary>
    /// A host that is not a speaker said it uses <paramref name="address"/> (from a capture thread). True when a pass
    /// must follow: to stop answering the address (a conflict), or to probe it (a challenge).
    /// </summary>
    public bool Claimed(Ip address, MacAddress claimant)
    {
        switch (_guard.Claimed(address, claimant))
        {
            case ClaimOutcome.Conflict:
                metrics.ConflictDetected();
                LogConflict(address, claimant);
                return true;
            case ClaimOutcome.Challenged:
                LogChallenged(address, claimant);
                return true;
            default:
                return false;
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

    private async Task ProbeAsync(Ip address, string[] interfaces, CancellationToken cancellationToken)
    {
        try
        {
            for (var i = 0; i < AddressGuard.ProbeCount && !cancellationToken.IsCancellationRequested; i++)
            {
                if (i > 0)
                {
                    await Task.Delay(AddressGuard.ProbeSpacing, time, cancellationToken);
                }

                foreach (var name in interfaces)
                {
                    announcer.Probe(address, name);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public void Dispose() => _refresh.Dispose();

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

                if (!announcer.AnnounceGratuitously(address, interfaceName))
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

    [LoggerMessage(Level = LogLevel.Information, Message = "{Claimant}, a host that is not a speaker, claims {Address}, which this node answers for: probing it, and giving it up only if that host answers")]
    private partial void LogChallenged(Ip address, MacAddress claimant);

    [LoggerMessage(Level = LogLevel.Information, Message = "Taking over {Address} on {Interface}: sending gratuitous announcements")]
    private partial void LogTakingOver(Ip address, string @interface);
}

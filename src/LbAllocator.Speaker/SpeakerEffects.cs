using k8s.Models;
using LbAllocator.Core;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>
/// Carries a plan out: the announcer first (what is answered changes at once), gratuitous announcements
/// for addresses taken over (and again every refresh interval, see <see cref="GratuitousRefresh"/>), then the status
/// writer is handed the API side, which it does on its own time. Nothing here waits on I/O.
/// </summary>
public sealed partial class SpeakerEffects(
    IAnnouncer announcer, L2StatusWriter writer, SpeakerMetrics metrics, SpeakerOptions options, TimeProvider time, ILogger<SpeakerEffects> logger)
    : IDisposable
{
    private readonly GratuitousRefresh _refresh = new(announcer, options.GratuitousRefreshInterval, time);
    private SpeakerPlan _applied = SpeakerPlan.Empty;

    /// <param name="service">The Service object for a key, for events about it; null when it is gone.</param>
    /// <param name="cancellationToken">Ends the gratuitous announcements still being sent.</param>
    public void Apply(SpeakerPlan plan, Func<string, V1Service?> service, CancellationToken cancellationToken)
    {
        var ownedBefore = announcer.OwnedAddresses;
        foreach (var (ip, name) in announcer.SetOwned(plan.Owned))
        {
            LogTakingOver(ip, name);
            _ = AnnounceGratuitouslyAsync(ip, name, cancellationToken);
        }

        _refresh.Track(plan.Owned);
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

        foreach (var planned in plan.EventsSince(previous, options.NodeName))
        {
            if (service(planned.ServiceKey) is { } target)
            {
                writer.Record(target, planned);
            }
        }

        writer.Sync(plan);
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

    [LoggerMessage(Level = LogLevel.Information, Message = "Taking over {Address} on {Interface}: sending gratuitous announcements")]
    private partial void LogTakingOver(Ip address, string @interface);
}

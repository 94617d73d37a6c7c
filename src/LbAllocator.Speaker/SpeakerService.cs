using LbAllocator.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>
/// Runs the lease and the reconciler; on shutdown (SIGTERM) stops answering first, says so on the LAN with a
/// leaving heartbeat and deletes the lease, so the other speakers take the addresses over at once instead of
/// waiting for it to go unheard or expire.
/// </summary>
public sealed partial class SpeakerService(
    SpeakerLease lease, SpeakerReconciler reconciler, Announcer announcer, SpeakerOptions options, ILogger<SpeakerService> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Every entry logged from here on carries the node (a field in JSON logs).
        using var scope = logger.BeginScope(new Dictionary<string, object> { ["Node"] = options.NodeName });
        await Task.WhenAll(lease.RunAsync(stoppingToken), reconciler.RunAsync(stoppingToken));
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        announcer.SetOwned(new Dictionary<Ip, string[]>());
        _ = announcer.SendHeartbeat(reconciler.Heartbeat(leaving: true));
        announcer.Dispose();
        LogHandingOver();
        try
        {
            await lease.ReleaseAsync(cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The others take over when the lease expires instead.
            LogReleaseFailed(e);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Stopping: announcements withdrawn, handing over")]
    private partial void LogHandingOver();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not delete the speaker lease; the others take over when it expires")]
    private partial void LogReleaseFailed(Exception exception);
}

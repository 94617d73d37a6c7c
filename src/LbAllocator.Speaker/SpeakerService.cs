using LbAllocator.Core;
using LbAllocator.Speaker.Capture;
using LbAllocator.Speaker.Lan;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>
/// Runs the lease, the cluster key, the status writer and the reconciler; on shutdown (SIGTERM) stops answering
/// first, then says on the LAN that it leaves (the others take over at once instead of waiting for its neighbours to
/// stop hearing it), then closes the captures and deletes the lease.
/// </summary>
public sealed partial class SpeakerService(
    SpeakerLease lease, ClusterKey key, L2StatusWriter writer, SpeakerReconciler reconciler, Announcer announcer, Membership membership, Captures captures,
    SpeakerOptions options, ILogger<SpeakerService> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Every entry logged from here on carries the node (a field in JSON logs).
        using var scope = logger.BeginScope(new Dictionary<string, object> { ["Node"] = options.NodeName });
        await Task.WhenAll(lease.RunAsync(stoppingToken), key.RunAsync(stoppingToken), writer.RunAsync(stoppingToken), reconciler.RunAsync(stoppingToken));
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        announcer.SetOwned(new Dictionary<Ip, string[]>());
        membership.Stop();
        captures.Dispose();
        LogHandingOver();
        try
        {
            await lease.ReleaseAsync(cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogReleaseFailed(e);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Stopping: announcements withdrawn and the LAN told, handing over")]
    private partial void LogHandingOver();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not delete the speaker lease (it only shows this speaker running; the LAN knows it left)")]
    private partial void LogReleaseFailed(Exception exception);
}

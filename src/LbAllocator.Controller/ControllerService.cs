using LbAllocator.Hosting;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace LbAllocator.Controller;

/// <summary>
/// Runs the caches always and the reconcile loop only while this replica holds the leader Lease, so two
/// replicas run safely: the standby has warm caches and takes over within the lease duration. At start it makes sure
/// the speakers' key exists (<see cref="SpeakerKeySecret"/>); the leader publishes the node digest (<see cref="NodeDigestFeed"/>).
/// </summary>
public sealed partial class ControllerService(
    KubeApi client, Reconciler reconciler, NodeDigestFeed nodeDigest, ControllerMetrics metrics, Health health, IOptions<ControllerOptions> options, TimeProvider time,
    ILogger<ControllerService> logger)
    : BackgroundService
{
    private const string CachesGate = "caches";

    private readonly ControllerOptions _options = options.Value;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Ready once the caches are warm: a standby is ready too, so it can take over at once.
        health.SetReady(CachesGate, false, "listing Services, Namespaces and IPAddressPools");
        // Every replica makes sure the speakers' key exists: a standby as well, so a new install needs no leader for it.
        var key = SpeakerKeySecret.EnsureAsync(client, _options.Namespace, time, logger, stoppingToken);
        var caches = Task.WhenAll(reconciler.RunCachesAsync(stoppingToken), nodeDigest.RunCachesAsync(stoppingToken));
        _ = reconciler.WaitForCachesAsync(stoppingToken).ContinueWith(
            t => health.SetReady(CachesGate, true, "synced"), stoppingToken, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
        if (!_options.LeaderElection)
        {
            metrics.SetLeader(true);
            await Task.WhenAll(key, caches, reconciler.RunAsync(stoppingToken), nodeDigest.RunAsync(stoppingToken));
            return;
        }

        var leading = LeadAsync(stoppingToken);
        await Task.WhenAll(key, caches, leading);
    }

    private async Task LeadAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var elector = new LeaderElector(
                client,
                new LeaderElectionSettings(_options.Namespace, _options.LeaseName, _options.Identity, _options.LeaseDuration, _options.RenewDeadline, _options.RetryPeriod),
                time,
                logger);
            using var term = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            Task? work = null;
            elector.OnStartedLeading += () =>
            {
                LogLeading(_options.Identity);
                metrics.SetLeader(true);
                work = Task.WhenAll(reconciler.RunAsync(term.Token), nodeDigest.RunAsync(term.Token));
            };
            elector.OnNewLeader += leader => LogNewLeader(leader);
            try
            {
                await elector.RunUntilLeadershipLostAsync(stoppingToken);
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                LogElectionFailed(e);
            }
            finally
            {
                // Stop writing before anyone else may start: cancel the term and wait for the workers.
                await term.CancelAsync();
                if (work is not null)
                {
                    await work.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    metrics.SetLeader(false);
                    LogStoppedLeading(_options.Identity);
                }
            }

            if (!stoppingToken.IsCancellationRequested)
            {
                await Task.Delay(_options.RetryPeriod, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Identity} is now the leader")]
    private partial void LogLeading(string identity);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Identity} stopped leading")]
    private partial void LogStoppedLeading(string identity);

    [LoggerMessage(Level = LogLevel.Information, Message = "Leader is {Leader}")]
    private partial void LogNewLeader(string leader);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Leader election failed; trying again")]
    private partial void LogElectionFailed(Exception exception);
}

using System.Net;
using k8s;
using k8s.Models;
using LbAllocator.Hosting;
using LbAllocator.Kubernetes.Client;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>
/// This speaker's membership: a coordination.k8s.io Lease for the node, renewed every RenewInterval. Its
/// existence makes the node a member; its renewals are the liveness of last resort, for peers that never hear
/// this speaker's heartbeats on the LAN. So the lease never vouches for a node that cannot answer anywhere (no
/// capture opens: NET_RAW missing, interfaces down or gone; such a node is never heard on the LAN, and judged by its
/// renewals alone it would win addresses and answer nothing), it says so while that lasts, and from the start until
/// the reconciler has opened a capture (<see cref="CannotAnswerAnnotation"/>). <see cref="Healthy"/> says whether the last successful renewal is recent
/// enough that nobody judging by the lease can have given up on it yet; <see cref="LanLiveness"/> decides
/// what that means for answering (a speaker that still hears its peers keeps answering).
/// </summary>
public sealed partial class SpeakerLease(KubeApi client, SpeakerOptions options, SpeakerMetrics metrics, Health health, TimeProvider time, ILogger<SpeakerLease> logger)
{
    private const string RenewLoop = "lease-renewal";

    public const string ComponentLabel = "app.kubernetes.io/component";
    public const string ComponentValue = "speaker";
    public const string LabelSelector = $"{ComponentLabel}={ComponentValue}";

    /// <summary>On the lease while its holder can answer nowhere, with why: others do not count it alive by its renewals.</summary>
    public const string CannotAnswerAnnotation = "lballocator.io/cannot-answer";

    private V1Lease? _current;
    private long _lastRenewStarted = long.MinValue;
    private long _streakStarted = long.MinValue; // the first renewal of the current run of successful ones
    private bool _healthy;
    private volatile string? _cannotAnswer = "starting: no capture open yet"; // what the next renewal says
    private bool _saidCannotAnswer = true; // what the last successful renewal said

    /// <summary>Raised when the lease becomes or stops being fresh.</summary>
    public event Action? HealthChanged;

    /// <summary>Raised after every successful renewal: the API server is reachable on a fresh request.</summary>
    public event Action? Renewed;

    public static string NameFor(string node) => $"lballocator-speaker-{node}";

    /// <summary>Why the lease's holder says it cannot answer anywhere, or null when it does not say so.</summary>
    public static string? CannotAnswer(V1Lease lease) =>
        lease.Metadata?.Annotations is { } annotations && annotations.TryGetValue(CannotAnswerAnnotation, out var why) ? why : null;

    /// <summary>Whether (null: it can) and why this node can answer nowhere; the next renewal says so.</summary>
    public void SetCannotAnswer(string? why) => _cannotAnswer = why;

    public string Name { get; } = NameFor(options.NodeName);

    /// <summary>
    /// Alive: the last renewal that succeeded was sent less than LeaseDuration minus half a renew interval ago.
    /// Others give up on us LeaseDuration after they saw that renewal, which is later than we sent it.
    /// Coming back (at start, or after renewals failed) takes two renewals in a row: the first tells the others
    /// we are back, and by the second, a renew interval later, they have seen it and handed our addresses back,
    /// so we never answer beside the node that stood in for us. The same after renewals that said this node cannot
    /// answer: the others judging by the lease counted it dead meanwhile.
    /// </summary>
    public bool Healthy => _lastRenewStarted != long.MinValue && _lastRenewStarted != _streakStarted && time.GetElapsedTime(_lastRenewStarted) < Deadline;

    /// <summary>When the current health runs out unless renewed, for scheduling the next check.</summary>
    public TimeSpan UntilUnhealthy => Healthy ? Deadline - time.GetElapsedTime(_lastRenewStarted) : TimeSpan.Zero;

    private TimeSpan Deadline => options.LeaseDuration - (options.RenewInterval / 2);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            // Each turn is bounded by the renew interval, so a loop silent for much longer is stuck.
            health.Beat(RenewLoop, (options.RenewInterval * 10) + options.LeaseDuration);
            var started = time.GetTimestamp();
            // A hung request must not hold the loop past the next renewal. The timeout runs on our clock, so
            // a test's fake clock decides when it fires, not the machine's load.
            using (var timeout = new CancellationTokenSource(options.RenewInterval, time))
            using (var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token))
            {
                try
                {
                    var cannotAnswer = _cannotAnswer;
                    await RenewAsync(cannotAnswer, attempt.Token);
                    if (_lastRenewStarted == long.MinValue || time.GetElapsedTime(_lastRenewStarted, started) >= Deadline
                        || (_saidCannotAnswer && cannotAnswer is null))
                    {
                        _streakStarted = started;
                    }

                    _lastRenewStarted = started;
                    _saidCannotAnswer = cannotAnswer is not null;
                    Renewed?.Invoke();
                }
                catch (Exception e) when (!cancellationToken.IsCancellationRequested && e is KubeApiException or HttpRequestException or OperationCanceledException)
                {
                    _current = null; // read afresh next time: someone may have changed or deleted it
                    metrics.RenewFailed();
                    LogRenewFailed(e, Name);
                }
            }

            CheckHealth();
            var wait = options.RenewInterval - time.GetElapsedTime(started);
            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait, time, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }

        health.Stopped(RenewLoop);
    }

    /// <summary>Re-evaluates health; raises <see cref="HealthChanged"/> on a change.</summary>
    public void CheckHealth()
    {
        var healthy = Healthy;
        if (healthy != _healthy)
        {
            _healthy = healthy;
            if (healthy)
            {
                LogAlive(Name);
            }
            else if (_lastRenewStarted == _streakStarted)
            {
                // Renewed just now, but the first renewal saying this node can answer again: not yet seen by the others.
                LogCanAnswerAgain(Name);
            }
            else
            {
                LogFenced(Name, options.LeaseDuration);
            }

            HealthChanged?.Invoke();
        }
    }

    /// <summary>Planned handoff: delete the lease, so the others take over at once.</summary>
    public async Task ReleaseAsync(CancellationToken cancellationToken)
    {
        _lastRenewStarted = long.MinValue;
        CheckHealth();
        try
        {
            await client.DeleteAsync(KubeResources.Leases, options.Namespace, Name, cancellationToken);
            LogReleased(Name);
        }
        catch (KubeApiException e) when (e.StatusCode == HttpStatusCode.NotFound)
        {
        }
    }

    private async Task RenewAsync(string? cannotAnswer, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().UtcDateTime;
        if (_current is null)
        {
            try
            {
                _current = await client.GetAsync(KubeResources.Leases, options.Namespace, Name, cancellationToken: cancellationToken);
            }
            catch (KubeApiException e) when (e.StatusCode == HttpStatusCode.NotFound)
            {
                _current = await client.CreateAsync(KubeResources.Leases, options.Namespace, NewLease(now, cannotAnswer), cancellationToken);
                return;
            }
        }

        _current = await client.ReplaceAsync(KubeResources.Leases, options.Namespace, Name, Stamp(_current, now, cannotAnswer), cancellationToken: cancellationToken);
    }

    private V1Lease NewLease(DateTime now, string? cannotAnswer) => Stamp(
        new V1Lease
        {
            Metadata = new V1ObjectMeta
            {
                Name = Name,
                NamespaceProperty = options.Namespace,
                Labels = new Dictionary<string, string> { ["app.kubernetes.io/name"] = "lballocator" },
            },
            Spec = new V1LeaseSpec { AcquireTime = now },
        },
        now,
        cannotAnswer);

    /// <summary>Makes the lease ours and fresh, with the label the speakers' lease watch selects on, saying whether we cannot answer.</summary>
    private V1Lease Stamp(V1Lease lease, DateTime now, string? cannotAnswer)
    {
        lease.Spec ??= new V1LeaseSpec();
        lease.Spec.HolderIdentity = options.NodeName;
        lease.Spec.LeaseDurationSeconds = (int)Math.Ceiling(options.LeaseDuration.TotalSeconds);
        lease.Spec.RenewTime = now;
        lease.Metadata.Labels ??= new Dictionary<string, string>();
        lease.Metadata.Labels[ComponentLabel] = ComponentValue;
        if (cannotAnswer is null)
        {
            lease.Metadata.Annotations?.Remove(CannotAnswerAnnotation);
        }
        else
        {
            (lease.Metadata.Annotations ??= new Dictionary<string, string>())[CannotAnswerAnnotation] = cannotAnswer;
        }

        return lease;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not renew lease {Lease}")]
    private partial void LogRenewFailed(Exception exception, string lease);

    [LoggerMessage(Level = LogLevel.Information, Message = "Lease {Lease} renewed")]
    private partial void LogAlive(string lease);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Lease {Lease} not renewed in time (lease duration {LeaseDuration}): answering only while peers are heard on the LAN")]
    private partial void LogFenced(string lease, TimeSpan leaseDuration);

    [LoggerMessage(Level = LogLevel.Information, Message = "Lease {Lease} says this node can answer again; it counts as renewed from the next renewal, once the others have seen it")]
    private partial void LogCanAnswerAgain(string lease);

    [LoggerMessage(Level = LogLevel.Information, Message = "Lease {Lease} deleted: other speakers take over now")]
    private partial void LogReleased(string lease);
}

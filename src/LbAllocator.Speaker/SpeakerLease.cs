using System.Net;
using k8s.Models;
using LbAllocator.Hosting;
using LbAllocator.Kubernetes.Client;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>
/// This speaker's Lease (coordination.k8s.io, one per node), renewed at kubelet's pace: the API's view of which
/// speakers run, for people (`kubectl get leases`) and for one decision only: a speaker that hears nobody on the LAN
/// stands alone only when no other speaker renews its lease (<see cref="OthersRenewingAsync"/>), so a node that
/// went deaf fails silent instead of taking every address. Liveness itself is judged on the LAN, never by the lease:
/// deleting a lease, or an API outage, changes nothing on the wire. The lease says why while its holder can answer
/// nowhere (<see cref="CannotAnswerAnnotation"/>).
/// </summary>
public sealed partial class SpeakerLease(KubeApi client, SpeakerOptions options, SpeakerMetrics metrics, Health health, TimeProvider time, ILogger<SpeakerLease> logger)
{
    private const string RenewLoop = "lease-renewal";

    /// <summary>The readiness line about the lease: always ok (the LAN decides who answers), saying how renewals go.</summary>
    public const string Gate = "lease";

    public const string ComponentLabel = "app.kubernetes.io/component";
    public const string ComponentValue = "speaker";
    public const string LabelSelector = $"{ComponentLabel}={ComponentValue}";

    /// <summary>On the lease while its holder can answer nowhere, with why (for people; no speaker reads it).</summary>
    public const string CannotAnswerAnnotation = "lballocator.io/cannot-answer";

    // Another speaker's clock may run ahead of ours by this much: its lease is not called stale before.
    private static readonly TimeSpan ClockSkew = TimeSpan.FromSeconds(5);

    private readonly Dictionary<string, (string? Version, long SeenAt)> _observed = new(StringComparer.Ordinal); // holder: when its lease last changed, on our clock
    private V1Lease? _current;
    private volatile string? _cannotAnswer = "starting: no capture open yet"; // what the next renewal says

    /// <summary>Raised when a renewal succeeds after one or more failed: the API path is back, and watches may have hung meanwhile.</summary>
    public event Action? Recovered;

    public static string NameFor(string node) => $"lballocator-speaker-{node}";

    /// <summary>Whether (null: it can) and why this node can answer nowhere; the next renewal says so.</summary>
    public void SetCannotAnswer(string? why) => _cannotAnswer = why;

    public string Name { get; } = NameFor(options.NodeName);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var failed = false;
        long? lastRenewed = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            // Each turn is bounded by the renew interval, so a loop silent for much longer is stuck.
            health.Beat(RenewLoop, options.RenewInterval * 3);
            var started = time.GetTimestamp();
            using (var timeout = new CancellationTokenSource(options.RenewInterval, time))
            using (var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token))
            {
                try
                {
                    await RenewAsync(_cannotAnswer, attempt.Token);
                    if (failed)
                    {
                        LogRenewedAgain(Name);
                        Recovered?.Invoke();
                    }

                    failed = false;
                    lastRenewed = time.GetTimestamp();
                    health.SetReady(Gate, true, $"lease {Name} renewed");
                }
                catch (Exception e) when (!cancellationToken.IsCancellationRequested && e is KubeApiException or HttpRequestException or OperationCanceledException)
                {
                    _current = null; // read afresh next time: someone may have changed or deleted it
                    failed = true;
                    metrics.RenewFailed();
                    LogRenewFailed(e, Name);
                    var since = lastRenewed is { } at ? $"for {time.GetElapsedTime(at).TotalSeconds:0} s" : "yet";
                    health.SetReady(Gate, true, $"lease {Name} not renewed {since}: the API server is unreachable, answering goes on as the LAN decides");
                }
            }

            var wait = options.RenewInterval - time.GetElapsedTime(started);
            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait, time, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }

        health.Stopped(RenewLoop);
    }

    /// <summary>
    /// Whether another speaker still renews its lease: one whose lease changed (as this node saw it) within its lease
    /// duration, and whose renew time, allowing for clock skew, is not older than that. A lease seen for the first time
    /// counts as renewed then, unless its renew time is long past. The leases of <paramref name="left"/> (speakers heard
    /// leaving, which delete their lease as they go) do not count.
    /// </summary>
    public async Task<bool> OthersRenewingAsync(IReadOnlySet<string> left, CancellationToken cancellationToken)
    {
        var leases = await client.ListAsync(KubeResources.Leases, options.Namespace, LabelSelector, cancellationToken: cancellationToken);
        return OthersRenewing((leases.Items ?? []).Where(l => l.Spec?.HolderIdentity is not { } holder || !left.Contains(holder)));
    }

    /// <summary>The judgement of <see cref="OthersRenewingAsync"/> on leases listed now.</summary>
    internal bool OthersRenewing(IEnumerable<V1Lease> leases)
    {
        var now = time.GetTimestamp();
        var wall = time.GetUtcNow();
        var renewing = false;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var lease in leases)
        {
            if (lease.Spec?.HolderIdentity is not { } holder || holder == options.NodeName)
            {
                continue;
            }

            seen.Add(holder);
            var version = lease.Metadata?.ResourceVersion;
            if (!_observed.TryGetValue(holder, out var observed) || observed.Version != version)
            {
                _observed[holder] = observed = (version, now);
            }

            var duration = TimeSpan.FromSeconds(lease.Spec.LeaseDurationSeconds ?? (int)options.LeaseDuration.TotalSeconds);
            var renewedLongAgo = lease.Spec.RenewTime is { } renewed && new DateTimeOffset(DateTime.SpecifyKind(renewed, DateTimeKind.Utc)) + duration + ClockSkew < wall;
            if (time.GetElapsedTime(observed.SeenAt, now) < duration && !renewedLongAgo)
            {
                renewing = true;
            }
        }

        foreach (var gone in _observed.Keys.Where(h => !seen.Contains(h)).ToList())
        {
            _observed.Remove(gone);
        }

        return renewing;
    }

    /// <summary>Planned handoff: delete the lease (its holder has left the LAN already).</summary>
    public async Task ReleaseAsync(CancellationToken cancellationToken)
    {
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
        if (_current is not null)
        {
            try
            {
                _current = await client.ReplaceAsync(KubeResources.Leases, options.Namespace, Name, Stamp(_current, now, cannotAnswer), cancellationToken: cancellationToken);
                return;
            }
            catch (KubeApiException e) when (e.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.Conflict)
            {
                // Deleted (the API server says 409 for the UID it no longer has) or changed since we wrote it: read afresh, in this same turn.
            }
        }

        try
        {
            _current = await client.GetAsync(KubeResources.Leases, options.Namespace, Name, cancellationToken: cancellationToken);
        }
        catch (KubeApiException e) when (e.StatusCode == HttpStatusCode.NotFound)
        {
            _current = await client.CreateAsync(KubeResources.Leases, options.Namespace, NewLease(now, cannotAnswer), cancellationToken);
            return;
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

    /// <summary>Makes the lease ours and fresh, with the label the speakers list leases by, saying whether we cannot answer.</summary>
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

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not renew lease {Lease} (the LAN decides who answers: nothing changes on the wire)")]
    private partial void LogRenewFailed(Exception exception, string lease);

    [LoggerMessage(Level = LogLevel.Information, Message = "Lease {Lease} renewed again")]
    private partial void LogRenewedAgain(string lease);

    [LoggerMessage(Level = LogLevel.Information, Message = "Lease {Lease} deleted")]
    private partial void LogReleased(string lease);
}

using System.Net;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Kubernetes.Client;

/// <param name="LeaseDuration">How long others wait, after they last saw the lease change, before taking it.</param>
/// <param name="RenewDeadline">How long the leader keeps trying to renew before it gives up leading.</param>
/// <param name="RetryPeriod">How often to try to take the lease, and to renew it.</param>
public sealed record LeaderElectionSettings(string Namespace, string LeaseName, string Identity, TimeSpan LeaseDuration, TimeSpan RenewDeadline, TimeSpan RetryPeriod);

/// <summary>
/// Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it: take the lease when it is
/// free or its holder has not renewed it for LeaseDuration (judged by when this replica last saw it change, so clocks
/// need not agree), renew it every RetryPeriod while leading, and stop leading when renewals fail for RenewDeadline,
/// before anyone else may take it. Writes carry the lease's resourceVersion, so of two replicas taking it at once one
/// gets 409 Conflict.
/// </summary>
public sealed partial class LeaderElector(KubeApi api, LeaderElectionSettings settings, TimeProvider time, ILogger logger)
{
    private V1LeaseSpec? _observed;
    private long _observedAt;
    private string? _leader;

    /// <summary>This replica became the leader.</summary>
    public event Action? OnStartedLeading;

    /// <summary>Another replica (or this one) was seen holding the lease.</summary>
    public event Action<string>? OnNewLeader;

    /// <summary>Tries to become the leader until it does, then leads until a renewal deadline passes; returns then, or when cancelled.</summary>
    public async Task RunUntilLeadershipLostAsync(CancellationToken cancellationToken)
    {
        while (!await TryAcquireOrRenewAsync(cancellationToken))
        {
            await Task.Delay(settings.RetryPeriod, time, cancellationToken);
        }

        OnStartedLeading?.Invoke();
        var renewed = time.GetTimestamp();
        while (true)
        {
            await Task.Delay(settings.RetryPeriod, time, cancellationToken);
            if (await TryAcquireOrRenewAsync(cancellationToken))
            {
                renewed = time.GetTimestamp();
            }
            else if (time.GetElapsedTime(renewed) >= settings.RenewDeadline)
            {
                LogLost(settings.Identity, settings.RenewDeadline);
                return;
            }
        }
    }

    private async Task<bool> TryAcquireOrRenewAsync(CancellationToken cancellationToken)
    {
        // One attempt may take at most a retry period, so a hanging request cannot hold a leader past its deadline.
        using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        attempt.CancelAfter(settings.RetryPeriod);
        try
        {
            return await TryOnceAsync(attempt.Token);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested && e is KubeApiException or HttpRequestException or OperationCanceledException)
        {
            LogAttemptFailed(e, settings.LeaseName);
            return false;
        }
    }

    private async Task<bool> TryOnceAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().UtcDateTime;
        V1Lease lease;
        try
        {
            lease = await api.GetAsync(KubeResources.Leases, settings.Namespace, settings.LeaseName, cancellationToken: cancellationToken);
        }
        catch (KubeApiException e) when (e.StatusCode == HttpStatusCode.NotFound)
        {
            var created = new V1Lease
            {
                Metadata = new V1ObjectMeta { Name = settings.LeaseName, NamespaceProperty = settings.Namespace },
                Spec = Held(new V1LeaseSpec { AcquireTime = now, LeaseTransitions = 0 }, now),
            };
            Observe((await api.CreateAsync(KubeResources.Leases, settings.Namespace, created, cancellationToken)).Spec);
            return true;
        }

        var spec = lease.Spec ?? new V1LeaseSpec();
        Observe(spec);
        var mine = spec.HolderIdentity == settings.Identity;
        if (!mine && !string.IsNullOrEmpty(spec.HolderIdentity) && time.GetElapsedTime(_observedAt) < settings.LeaseDuration)
        {
            return false; // held by another, renewed within the lease duration as far as we can tell
        }

        if (!mine)
        {
            spec.AcquireTime = now;
            spec.LeaseTransitions = (spec.LeaseTransitions ?? 0) + 1;
        }

        lease.Spec = Held(spec, now);
        Observe((await api.ReplaceAsync(KubeResources.Leases, settings.Namespace, settings.LeaseName, lease, cancellationToken: cancellationToken)).Spec);
        return true;
    }

    private V1LeaseSpec Held(V1LeaseSpec spec, DateTime now)
    {
        spec.HolderIdentity = settings.Identity;
        spec.LeaseDurationSeconds = (int)Math.Ceiling(settings.LeaseDuration.TotalSeconds);
        spec.RenewTime = now;
        return spec;
    }

    /// <summary>Notes when the lease last changed, by our own clock; reports a new holder.</summary>
    private void Observe(V1LeaseSpec? spec)
    {
        if (spec is null)
        {
            return;
        }

        if (_observed is null || _observed.HolderIdentity != spec.HolderIdentity || _observed.RenewTime != spec.RenewTime || _observed.LeaseTransitions != spec.LeaseTransitions)
        {
            _observed = new V1LeaseSpec { HolderIdentity = spec.HolderIdentity, RenewTime = spec.RenewTime, LeaseTransitions = spec.LeaseTransitions };
            _observedAt = time.GetTimestamp();
        }

        if (spec.HolderIdentity is { Length: > 0 } holder && holder != _leader)
        {
            _leader = holder;
            OnNewLeader?.Invoke(holder);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "No renewal of the leader lease for {RenewDeadline}: {Identity} stops leading")]
    private partial void LogLost(string identity, TimeSpan renewDeadline);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Could not take or renew lease {Lease}")]
    private partial void LogAttemptFailed(Exception exception, string lease);
}

using k8s.Models;

namespace LbAllocator.Speaker;

/// <summary>
/// Which other speakers are alive, from the changes the lease watch shows. A speaker counts as dead once its
/// lease has not changed for LeaseDuration of <em>watched time</em>: time during which this speaker's own
/// lease watch was known to be current, because it echoed this speaker's own renewals. Time counts only for a
/// short while after each echo, so a stalled watch, or an API outage that stops everyone renewing and seeing
/// renewals, cannot by itself make another speaker look dead; otherwise every speaker that came back from an
/// outage before its watch did would take over every address it saw no renewal for.
/// Measured on this node's clock from when changes were seen, never against the renewTime a lease carries, so
/// clock skew between nodes does not matter: a lease seen for the first time (at start-up) counts as renewed then.
/// Each speaker is judged by the lease duration it publishes, so speakers with different timings side by side
/// (a rollout that changes them) never count a live one dead; never by less than our own, which is what our
/// trust in a stalled watch is bounded against. A lease whose holder says it cannot answer anywhere
/// (<see cref="SpeakerLease.CannotAnswerAnnotation"/>) keeps nobody alive: its renewals show a running process,
/// not one that can answer.
/// </summary>
public sealed class SpeakerLiveness(string self, TimeSpan leaseDuration, TimeSpan renewInterval, TimeProvider time)
{
    // The next echo is due one renew interval after the last; the rest allows for a slow renewal. Shorter than
    // LeaseDuration (options ask RenewInterval <= LeaseDuration / 2), so a stall alone never expires anyone.
    private readonly TimeSpan _trust = renewInterval * 1.5;
    private readonly Dictionary<string, TimeSpan> _expiry = new(StringComparer.Ordinal); // node -> watched time it dies at
    private readonly Lock _lock = new();
    private TimeSpan _watchedAtEcho;
    private long? _echoAt;

    /// <summary>Records a change to a speaker lease; true when the set of live speakers may have changed.</summary>
    public bool Observe(V1Lease? old, V1Lease? lease)
    {
        var node = (lease ?? old)?.Spec?.HolderIdentity;
        if (node is null)
        {
            return false;
        }

        lock (_lock)
        {
            var now = time.GetTimestamp();
            if (node == self)
            {
                if (lease is null)
                {
                    return false;
                }

                // Our own renewal came back: the watch is current. Expiries held back by a stall may be due now.
                var wasStalled = Stalled(now);
                _watchedAtEcho = Watched(now);
                _echoAt = now;
                return wasStalled;
            }

            var watched = Watched(now);
            var wasAlive = _expiry.TryGetValue(node, out var expiry) && expiry > watched;
            if (lease is null || SpeakerLease.CannotAnswer(lease) is not null)
            {
                _expiry.Remove(node);
                return wasAlive;
            }

            _expiry[node] = watched + DurationOf(lease);
            return !wasAlive;
        }
    }

    /// <summary>
    /// The other speakers alive now, and when the first of them expires if nothing changes; null while the
    /// watch is stalled (nobody expires then; the next echo reports a change).
    /// </summary>
    public (HashSet<string> Alive, TimeSpan? NextExpiry) Others()
    {
        var alive = new HashSet<string>(StringComparer.Ordinal);
        TimeSpan? next = null;
        lock (_lock)
        {
            var now = time.GetTimestamp();
            var watched = Watched(now);
            foreach (var (node, expiry) in _expiry.Where(kv => kv.Value > watched))
            {
                alive.Add(node);
                var left = expiry - watched;
                next = next is null || left < next ? left : next;
            }

            return (alive, Stalled(now) ? null : next);
        }
    }

    /// <summary>How long since the lease watch last showed one of our own renewals; null before the first.</summary>
    public TimeSpan? SinceEcho()
    {
        lock (_lock)
        {
            return _echoAt is { } at ? time.GetElapsedTime(at) : null;
        }
    }

    /// <summary>How long the lease's holder counts as alive after a change is seen: its own duration, at least ours.</summary>
    private TimeSpan DurationOf(V1Lease lease) =>
        lease.Spec?.LeaseDurationSeconds is int seconds && TimeSpan.FromSeconds(seconds) > leaseDuration ? TimeSpan.FromSeconds(seconds) : leaseDuration;

    private TimeSpan Watched(long now) =>
        _echoAt is { } at ? _watchedAtEcho + Min(time.GetElapsedTime(at, now), _trust) : _watchedAtEcho;

    private bool Stalled(long now) => _echoAt is not { } at || time.GetElapsedTime(at, now) >= _trust;

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;
}

using k8s.Models;
using Microsoft.Extensions.Time.Testing;

namespace LbAllocator.Speaker.Tests;

/// <summary>
/// Liveness as this speaker sees it (defaults: lease 3 s, renewals every 1 s), driven by a fake clock and
/// the lease changes a watch would deliver.
/// </summary>
public class SpeakerLivenessTests
{
    private static readonly TimeSpan LeaseDuration = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan RenewInterval = TimeSpan.FromSeconds(1);

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero));
    private readonly SpeakerLiveness _liveness;
    private readonly Dictionary<string, V1Lease> _seen = new(StringComparer.Ordinal);

    public SpeakerLivenessTests() => _liveness = new SpeakerLiveness("self", LeaseDuration, RenewInterval, _time);

    [Fact]
    public void A_speaker_that_stops_renewing_dies_one_lease_duration_after_its_last_renewal_while_the_watch_is_current()
    {
        Renew("self");
        Assert.True(Renew("other"));

        // Our own renewals keep coming back; the other's stop.
        for (var second = 1; second <= 2; second++)
        {
            _time.Advance(RenewInterval);
            Renew("self");
        }

        Assert.Equal(["other"], _liveness.Others().Alive);
        Assert.Equal(TimeSpan.FromSeconds(1), _liveness.Others().NextExpiry);
        _time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.Equal(["other"], _liveness.Others().Alive);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Empty(_liveness.Others().Alive);
    }

    [Fact]
    public void Renewals_keep_a_speaker_alive_and_do_not_ask_for_a_pass()
    {
        Renew("self");
        Assert.True(Renew("other"));
        for (var second = 0; second < 10; second++)
        {
            _time.Advance(RenewInterval);
            Assert.False(Renew("self"));
            Assert.False(Renew("other"));
        }

        Assert.Equal(["other"], _liveness.Others().Alive);
    }

    [Fact]
    public void A_stalled_watch_alone_never_makes_anyone_dead()
    {
        Renew("self");
        Renew("other");

        // Nothing arrives for a minute: not our echoes, not theirs.
        _time.Advance(TimeSpan.FromMinutes(1));

        Assert.Equal(["other"], _liveness.Others().Alive);
        Assert.Null(_liveness.Others().NextExpiry);
    }

    [Fact]
    public void After_an_outage_the_others_get_time_to_be_seen_renewing_again()
    {
        Renew("self");
        Renew("a");
        Renew("b");

        // An API outage of 8 s: nobody renews, nobody sees anything.
        _time.Advance(TimeSpan.FromSeconds(8));

        // Our renewal succeeds first and comes back: that asks for a pass, and both others still count alive,
        // though we saw no renewal of theirs for 8 s.
        Assert.True(Renew("self"));
        Assert.Equal(["a", "b"], _liveness.Others().Alive.Order());

        // a renews a moment later; b never does, and dies once the watch has been current long enough.
        _time.Advance(TimeSpan.FromMilliseconds(400));
        Renew("a");
        for (var second = 0; second < 2; second++)
        {
            _time.Advance(TimeSpan.FromMilliseconds(600));
            Renew("self");
            _time.Advance(TimeSpan.FromMilliseconds(400));
            Renew("a");
        }

        Assert.Equal(["a"], _liveness.Others().Alive);
    }

    [Fact]
    public void On_first_sight_the_renew_time_says_how_old_a_lease_is_and_a_deleted_lease_is_dead_at_once()
    {
        Renew("self");
        Assert.True(_liveness.Observe(null, Lease("recent", _time.GetUtcNow().AddSeconds(-1))));
        Assert.False(_liveness.Observe(null, Lease("stale", _time.GetUtcNow().AddSeconds(-10))));
        Assert.Equal(["recent"], _liveness.Others().Alive);
        Assert.Equal(TimeSpan.FromSeconds(2), _liveness.Others().NextExpiry);

        Assert.True(_liveness.Observe(Lease("recent", _time.GetUtcNow()), null));
        Assert.Empty(_liveness.Others().Alive);
    }

    [Fact]
    public void Our_own_lease_never_counts_among_the_others()
    {
        Renew("self");
        _time.Advance(RenewInterval);
        Renew("self");

        Assert.Empty(_liveness.Others().Alive);
    }

    /// <summary>A renewal of <paramref name="node"/>'s lease as the watch delivers it (old and new object).</summary>
    private bool Renew(string node)
    {
        var lease = Lease(node, _time.GetUtcNow());
        _seen.TryGetValue(node, out var old);
        _seen[node] = lease;
        return _liveness.Observe(old, lease);
    }

    private static V1Lease Lease(string node, DateTimeOffset renewed) => new()
    {
        Metadata = new V1ObjectMeta { Name = $"lballocator-speaker-{node}" },
        Spec = new V1LeaseSpec { HolderIdentity = node, RenewTime = renewed.UtcDateTime },
    };
}

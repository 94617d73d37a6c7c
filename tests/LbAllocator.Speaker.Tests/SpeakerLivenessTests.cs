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

    [Theory]
    [InlineData(0)]
    [InlineData(-3)] // our clock 3 s ahead of the peer's
    [InlineData(-3600)] // an hour ahead
    [InlineData(3600)] // an hour behind
    public void Clock_skew_changes_nothing_a_lease_seen_first_counts_as_renewed_then(int peerClockAheadSeconds)
    {
        Renew("self");
        var peerNow = _time.GetUtcNow().AddSeconds(peerClockAheadSeconds);
        Assert.True(_liveness.Observe(null, Lease("peer", peerNow)));
        Assert.Equal(["peer"], _liveness.Others().Alive);

        // It renews (with its own clock's times) for a while, then stops; it dies one lease duration after
        // its last renewal was seen, whatever its clock says.
        var seen = Lease("peer", peerNow);
        for (var second = 1; second <= 5; second++)
        {
            _time.Advance(RenewInterval);
            Renew("self");
            var renewed = Lease("peer", _time.GetUtcNow().AddSeconds(peerClockAheadSeconds));
            _liveness.Observe(seen, renewed);
            seen = renewed;
        }

        AdvanceWatched(LeaseDuration - TimeSpan.FromMilliseconds(1));
        Assert.Equal(["peer"], _liveness.Others().Alive);
        AdvanceWatched(TimeSpan.FromMilliseconds(1));
        Assert.Empty(_liveness.Others().Alive);
    }

    [Theory]
    [InlineData(10, 10)] // a peer with a longer lease is judged by it
    [InlineData(3, 3)]
    [InlineData(1, 3)] // a shorter one: never by less than ours (it has fenced itself by then anyway)
    public void Each_peer_is_judged_by_the_lease_duration_it_publishes(int peerLeaseSeconds, int expectedSeconds)
    {
        Renew("self");
        Assert.True(_liveness.Observe(null, Lease("peer", _time.GetUtcNow(), peerLeaseSeconds)));
        AdvanceWatched(TimeSpan.FromSeconds(expectedSeconds) - TimeSpan.FromMilliseconds(1));
        Assert.Equal(["peer"], _liveness.Others().Alive);
        AdvanceWatched(TimeSpan.FromMilliseconds(1));
        Assert.Empty(_liveness.Others().Alive);
    }

    [Fact]
    public void A_deleted_lease_is_dead_at_once()
    {
        Renew("self");
        Assert.True(_liveness.Observe(null, Lease("peer", _time.GetUtcNow())));
        Assert.True(_liveness.Observe(Lease("peer", _time.GetUtcNow()), null));
        Assert.Empty(_liveness.Others().Alive);
    }

    [Fact]
    public void A_lease_whose_holder_says_it_cannot_answer_keeps_nobody_alive_until_it_says_it_can()
    {
        Renew("self");
        Assert.True(Renew("peer"));

        // It lost its capture (NET_RAW, its interface) but renews on: by its lease it is dead at once.
        Assert.True(Renew("peer", cannotAnswer: "eth0: cannot capture"));
        Assert.Empty(_liveness.Others().Alive);
        for (var second = 0; second < 5; second++)
        {
            _time.Advance(RenewInterval);
            Renew("self");
            Assert.False(Renew("peer", cannotAnswer: "eth0: cannot capture"));
            Assert.Empty(_liveness.Others().Alive);
        }

        // The first renewal saying it can answer again makes it alive and asks for a pass.
        _time.Advance(RenewInterval);
        Renew("self");
        Assert.True(Renew("peer"));
        Assert.Equal(["peer"], _liveness.Others().Alive);
    }

    [Fact]
    public void Our_own_lease_never_counts_among_the_others()
    {
        Renew("self");
        _time.Advance(RenewInterval);
        Renew("self");

        Assert.Empty(_liveness.Others().Alive);
    }

    /// <summary>A renewal of <paramref name="node"/>'s lease as the watch delivers it (old and new object), saying whether it cannot answer.</summary>
    private bool Renew(string node, string? cannotAnswer = null)
    {
        var lease = Lease(node, _time.GetUtcNow());
        if (cannotAnswer is not null)
        {
            lease.Metadata.Annotations = new Dictionary<string, string> { [SpeakerLease.CannotAnswerAnnotation] = cannotAnswer };
        }

        _seen.TryGetValue(node, out var old);
        _seen[node] = lease;
        return _liveness.Observe(old, lease);
    }

    /// <summary>Advances the clock with our own renewals echoed every renew interval (or sooner), so the time counts as watched.</summary>
    private void AdvanceWatched(TimeSpan span)
    {
        while (span > TimeSpan.Zero)
        {
            var step = span < RenewInterval ? span : RenewInterval;
            _time.Advance(step);
            Renew("self");
            span -= step;
        }
    }

    private static V1Lease Lease(string node, DateTimeOffset renewed, int leaseSeconds = 3) => new()
    {
        Metadata = new V1ObjectMeta { Name = $"lballocator-speaker-{node}" },
        Spec = new V1LeaseSpec { HolderIdentity = node, RenewTime = renewed.UtcDateTime, LeaseDurationSeconds = leaseSeconds },
    };
}

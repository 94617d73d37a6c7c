using Microsoft.Extensions.Time.Testing;

namespace LbAllocator.Speaker.Tests;

/// <summary>Liveness heard on the LAN (heartbeats every 100 ms, dead after 400 ms) with the leases as membership and fallback, on a fake clock.</summary>
public class LanLivenessTests
{
    private static readonly TimeSpan Dead = TimeSpan.FromMilliseconds(400);
    private static readonly HashSet<string> NoneByLease = new(StringComparer.Ordinal);

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 26, 12, 0, 0, TimeSpan.Zero));
    private readonly LanLiveness _lan;

    public LanLivenessTests() => _lan = new LanLiveness("self", Dead, _time);

    private static string[] Members => ["self", "a", "b"];

    [Fact]
    public void A_member_is_alive_while_heard_within_the_dead_interval_and_dead_after()
    {
        Serving();
        Assert.True(Hear("a"));
        Assert.False(Hear("a")); // still alive: no pass needed
        var view = Judge(Members, NoneByLease, leaseHealthy: true);
        Assert.Equal(["a", "self"], view.Alive.Order());
        Assert.Equal(Dead, view.NextChange);

        _time.Advance(Dead - TimeSpan.FromMilliseconds(1));
        Assert.Contains("a", Judge(Members, NoneByLease, true).Alive);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.DoesNotContain("a", Judge(Members, NoneByLease, true).Alive);
        Assert.True(Hear("a")); // back: a pass is due
    }

    [Fact]
    public void A_peer_is_judged_by_the_longer_of_its_dead_interval_and_ours()
    {
        Serving();
        Hear("a", dead: TimeSpan.FromSeconds(2));
        Hear("b", dead: TimeSpan.FromMilliseconds(300));
        _time.Advance(TimeSpan.FromMilliseconds(399));
        Assert.Equal(["a", "b", "self"], Judge(Members, NoneByLease, true).Alive.Order());
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(["a", "self"], Judge(Members, NoneByLease, true).Alive.Order());
        _time.Advance(TimeSpan.FromMilliseconds(1600));
        Assert.Equal(["self"], Judge(Members, NoneByLease, true).Alive.Order());
    }

    [Fact]
    public void A_member_never_heard_on_the_lan_falls_back_to_its_lease_and_one_heard_once_does_not()
    {
        Serving();
        Hear("a");
        _time.Advance(Dead);
        var byLease = new HashSet<string>(["a", "b"], StringComparer.Ordinal);
        Assert.Equal(["b", "self"], Judge(Members, byLease, true).Alive.Order());
    }

    [Fact]
    public void A_leaving_heartbeat_counts_the_peer_dead_at_once_and_a_node_without_a_lease_is_no_candidate()
    {
        Serving();
        Hear("a");
        Assert.True(_lan.Heard(new Heartbeat("a", 2, TimeSpan.FromMilliseconds(100), Dead, Leaving: true)));
        Hear("stranger");
        Assert.Equal(["self"], Judge(Members, NoneByLease, true).Alive.Order());
    }

    [Fact]
    public void A_heartbeat_read_late_counts_from_when_it_arrived()
    {
        Serving();
        Assert.True(Hear("a", age: TimeSpan.FromMilliseconds(150)));
        Assert.Equal(Dead - TimeSpan.FromMilliseconds(150), Judge(Members, NoneByLease, true).NextChange);
        _time.Advance(Dead - TimeSpan.FromMilliseconds(150));
        Assert.DoesNotContain("a", Judge(Members, NoneByLease, true).Alive);
    }

    [Fact]
    public void A_beat_read_after_a_newer_leaving_one_does_not_bring_the_peer_back()
    {
        Serving();
        Hear("a", age: TimeSpan.FromMilliseconds(100));
        Assert.True(_lan.Heard(new Heartbeat("a", 3, TimeSpan.FromMilliseconds(100), Dead, Leaving: true), TimeSpan.FromMilliseconds(20)));
        Assert.False(Hear("a", age: TimeSpan.FromMilliseconds(50))); // sent before it left, read in the next batch
        Assert.Equal(["self"], Judge(Members, NoneByLease, true).Alive.Order());
        Assert.True(Hear("a")); // sent after: back
    }

    [Fact]
    public void This_node_stands_only_after_hearing_the_lan_for_one_dead_interval_since_it_could_answer()
    {
        Assert.Equal(SelfState.CannotAnswer, Judge(Members, NoneByLease, true).Self);
        _lan.SetServing(true);
        var view = Judge(Members, NoneByLease, true);
        Assert.Equal(SelfState.WarmingUp, view.Self);
        Assert.DoesNotContain("self", view.Alive);
        Assert.Equal(Dead, view.NextChange);
        _time.Advance(Dead);
        Assert.Equal(SelfState.Candidate, Judge(Members, NoneByLease, true).Self);

        // Capture lost: out at once; back: warming up again.
        _lan.SetServing(false);
        Assert.Equal(SelfState.CannotAnswer, Judge(Members, NoneByLease, true).Self);
        _lan.SetServing(true);
        Assert.Equal(SelfState.WarmingUp, Judge(Members, NoneByLease, true).Self);
    }

    [Fact]
    public void Without_its_lease_this_node_keeps_standing_while_it_hears_a_peer_or_is_the_only_member_and_fences_otherwise()
    {
        Serving();
        Hear("a");
        Assert.Equal(SelfState.Candidate, Judge(Members, NoneByLease, leaseHealthy: false).Self);
        Assert.Equal(SelfState.Candidate, Judge(["self"], NoneByLease, leaseHealthy: false).Self);
        _time.Advance(Dead);
        var view = Judge(Members, NoneByLease, leaseHealthy: false);
        Assert.Equal(SelfState.Fenced, view.Self);
        Assert.Empty(view.Alive);
        Assert.Equal(SelfState.Candidate, Judge(Members, NoneByLease, leaseHealthy: true).Self);
    }

    [Fact]
    public void A_node_whose_heartbeats_stopped_going_out_for_half_a_dead_interval_listens_again_before_standing()
    {
        Serving();
        Assert.Equal(SelfState.Candidate, Judge(Members, NoneByLease, true).Self);
        _time.Advance((Dead / 2) + TimeSpan.FromMilliseconds(1));
        Assert.Equal(SelfState.WarmingUp, _lan.Judge(Members, NoneByLease, true).Self); // nothing sent meanwhile
        Assert.Equal(SelfState.WarmingUp, Judge(Members, NoneByLease, true).Self);
        _time.Advance(Dead);
        Assert.Equal(SelfState.Candidate, Judge(Members, NoneByLease, true).Self);
    }

    private void Serving()
    {
        _lan.SetServing(true);
        _lan.Sent();
        _time.Advance(Dead);
    }

    /// <summary>Judges right after a heartbeat of ours went out, as a speaker whose heartbeats flow does.</summary>
    private LivenessView Judge(IReadOnlyCollection<string> members, IReadOnlySet<string> leaseAlive, bool leaseHealthy)
    {
        _lan.Sent();
        return _lan.Judge(members, leaseAlive, leaseHealthy);
    }

    private bool Hear(string node, TimeSpan? dead = null, TimeSpan age = default) =>
        _lan.Heard(new Heartbeat(node, 1, TimeSpan.FromMilliseconds(100), dead ?? Dead, Leaving: false), age);
}

using LbAllocator.Core;
using Microsoft.Extensions.Time.Testing;

namespace LbAllocator.Speaker.Tests;

/// <summary>The guard's decisions on a fake clock: probe before a handback, take from the dead at once, hold back a conflict, defend an answered address.</summary>
public class AddressGuardTests
{
    private static readonly Ip Vip = Ip.Parse("192.0.2.10");
    private static readonly Ip Vip6 = Ip.Parse("2001:db8::10");
    private static readonly MacAddress Other = new(0x02_00_00_00_00_99);
    private static readonly MacAddress Speaker = new(0x02_00_00_00_00_0b);
    private static readonly string[] Eth0 = ["eth0"];

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 27, 6, 0, 0, TimeSpan.Zero));
    private readonly AddressGuard _guard;

    public AddressGuardTests() => _guard = new AddressGuard(_time);

    [Fact]
    public void An_address_not_taken_from_the_dead_is_probed_and_answered_only_after_a_quiet_probe_window()
    {
        var first = Check(fromTheDead: false);
        Assert.Empty(first.Allowed);
        Assert.Equal([(Vip, Eth0)], first.Probe);
        Assert.Equal(AddressGuard.ProbeWait, first.NextDue);

        _time.Advance(AddressGuard.ProbeWait - TimeSpan.FromMilliseconds(1));
        var during = Check(fromTheDead: false);
        Assert.Empty(during.Allowed);
        Assert.Empty(during.Probe); // probed once per window, not every pass

        _time.Advance(TimeSpan.FromMilliseconds(1));
        var after = Check(fromTheDead: false);
        Assert.Equal([Vip], after.Allowed.Keys);
        Assert.Null(after.NextDue);
        Assert.Empty(after.Resolved); // there was no conflict to resolve
    }

    [Fact]
    public void An_address_taken_from_a_dead_speaker_is_answered_at_once_without_probing()
    {
        var decision = Check(fromTheDead: true);
        Assert.Equal([Vip], decision.Allowed.Keys);
        Assert.Empty(decision.Probe);
    }

    [Fact]
    public void A_speaker_that_still_answers_the_probe_is_probed_again_shortly_until_it_lets_go()
    {
        Check(fromTheDead: false);
        _time.Advance(TimeSpan.FromMilliseconds(10));
        Assert.Equal(ClaimOutcome.Held, _guard.Claimed(Vip, Speaker, speaker: true));
        var held = Check(fromTheDead: false);
        Assert.Empty(held.Allowed);
        Assert.Empty(held.Conflicts);
        Assert.Equal(AddressGuard.ReprobeDelay, held.NextDue);

        _time.Advance(AddressGuard.ReprobeDelay);
        var again = Check(fromTheDead: false);
        Assert.Equal([(Vip, Eth0)], again.Probe);
        Assert.Equal(AddressGuard.ProbeWait, again.NextDue);

        // It let go: the second probe goes unanswered. From its release to this answer: at most a re-probe and a window.
        _time.Advance(AddressGuard.ProbeWait);
        Assert.Equal([Vip], Check(fromTheDead: false).Allowed.Keys);
    }

    [Fact]
    public void A_foreign_host_answering_a_probe_holds_the_address_back_and_it_is_probed_again_with_backoff_until_the_host_is_gone()
    {
        Check(fromTheDead: false);
        Assert.Equal(ClaimOutcome.Conflict, _guard.Claimed(Vip, Other, speaker: false));
        Assert.Equal(ClaimOutcome.Ignored, _guard.Claimed(Vip, Other, speaker: false)); // the same conflict, counted once

        var held = Check(fromTheDead: false);
        Assert.Empty(held.Allowed);
        Assert.Equal(Other, held.Conflicts[Vip].Claimant);
        Assert.Equal(TimeSpan.FromSeconds(1), held.NextDue);
        var since = held.Conflicts[Vip].Since;

        // Second probe, one second later: still claimed; the next waits two seconds, then four.
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal([(Vip, Eth0)], Check(fromTheDead: false).Probe);
        Assert.Equal(ClaimOutcome.Conflict, _guard.Claimed(Vip, Other, speaker: false));
        var again = Check(fromTheDead: false);
        Assert.Equal(TimeSpan.FromSeconds(2), again.NextDue);
        Assert.Equal(2, again.Conflicts[Vip].Detections);
        Assert.Equal(since, again.Conflicts[Vip].Since);

        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal([(Vip, Eth0)], Check(fromTheDead: false).Probe);
        Assert.Equal(ClaimOutcome.Conflict, _guard.Claimed(Vip, Other, speaker: false));
        Assert.Equal(TimeSpan.FromSeconds(4), Check(fromTheDead: false).NextDue);

        // The other host is gone: the next probe goes unanswered and the address is announced.
        _time.Advance(TimeSpan.FromSeconds(4));
        var probing = Check(fromTheDead: false);
        Assert.Equal([(Vip, Eth0)], probing.Probe);
        Assert.Empty(probing.Allowed);
        Assert.Equal(Other, probing.Conflicts[Vip].Claimant); // still reported while probed again, so the condition does not flap
        _time.Advance(AddressGuard.ProbeWait);
        var back = Check(fromTheDead: false);
        Assert.Equal([Vip], back.Allowed.Keys);
        Assert.Equal([Vip], back.Resolved);
        Assert.Empty(back.Conflicts);
    }

    [Fact]
    public void A_claim_of_an_answered_address_is_defended_at_once_and_once_more_after_the_interval_if_claims_go_on()
    {
        Assert.Equal([Vip], Check(fromTheDead: true).Allowed.Keys);
        Assert.Equal(ClaimOutcome.Defend, _guard.Claimed(Vip, Other, speaker: false));
        Assert.Equal(ClaimOutcome.DefendLater, _guard.Claimed(Vip, Other, speaker: false));
        Assert.Equal(ClaimOutcome.Ignored, _guard.Claimed(Vip, Speaker, speaker: true)); // put off once already
        _time.Advance(AddressGuard.DefendInterval);
        Assert.True(_guard.DefendNow(Vip));
        Assert.False(_guard.DefendNow(Vip)); // once
        Assert.Equal(ClaimOutcome.DefendLater, _guard.Claimed(Vip, Other, speaker: false));
        _time.Advance(AddressGuard.DefendInterval);
        Assert.True(_guard.DefendNow(Vip));
        _time.Advance(AddressGuard.DefendInterval);
        Assert.Equal(ClaimOutcome.Defend, _guard.Claimed(Vip, Speaker, speaker: true));

        var decision = Check(fromTheDead: true);
        Assert.Equal([Vip], decision.Allowed.Keys);
        Assert.Empty(decision.Probe);
        Assert.Empty(decision.Conflicts);
        Assert.Null(decision.NextDue);
    }

    [Fact]
    public void Claims_for_addresses_not_wanted_are_ignored_and_addresses_given_up_are_forgotten()
    {
        Assert.Equal(ClaimOutcome.Ignored, _guard.Claimed(Vip, Other, speaker: false));
        Check(fromTheDead: false);
        Assert.Equal(ClaimOutcome.Conflict, _guard.Claimed(Vip, Other, speaker: false));

        // Given up (another node won it), then won again from a dead speaker: judged afresh.
        _guard.Check(new Dictionary<Ip, string[]>(), new HashSet<Ip>());
        Assert.Equal(ClaimOutcome.Ignored, _guard.Claimed(Vip, Other, speaker: false));
        Assert.Equal([Vip], Check(fromTheDead: true).Allowed.Keys);
    }

    [Fact]
    public void Each_address_is_judged_on_its_own()
    {
        var wanted = new Dictionary<Ip, string[]> { [Vip] = Eth0, [Vip6] = Eth0 };
        _guard.Check(wanted, new HashSet<Ip>());
        Assert.Equal(ClaimOutcome.Conflict, _guard.Claimed(Vip6, Other, speaker: false));
        _time.Advance(AddressGuard.ProbeWait);
        var decision = _guard.Check(wanted, new HashSet<Ip>());
        Assert.Equal([Vip], decision.Allowed.Keys);
        Assert.Equal([Vip6], decision.Conflicts.Keys);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 2)]
    [InlineData(3, 4)]
    [InlineData(6, 32)]
    [InlineData(7, 60)]
    [InlineData(1000, 60)]
    public void Backoff_doubles_from_one_second_to_a_minute(int detections, int seconds) =>
        Assert.Equal(TimeSpan.FromSeconds(seconds), AddressGuard.Backoff(detections));

    private GuardDecision Check(bool fromTheDead) =>
        _guard.Check(new Dictionary<Ip, string[]> { [Vip] = Eth0 }, fromTheDead ? new HashSet<Ip> { Vip } : new HashSet<Ip>());
}

using LbAllocator.Core;
using Microsoft.Extensions.Time.Testing;

namespace LbAllocator.Speaker.Tests;

/// <summary>Conflict detection's decisions on a fake clock: probe, hold back, back off, announce again.</summary>
public class AddressGuardTests
{
    private static readonly Ip Vip = Ip.Parse("192.0.2.10");
    private static readonly Ip Vip6 = Ip.Parse("2001:db8::10");
    private static readonly MacAddress Other = new(0x02_00_00_00_00_99);
    private static readonly string[] Eth0 = ["eth0"];

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 27, 6, 0, 0, TimeSpan.Zero));
    private readonly AddressGuard _guard;

    public AddressGuardTests() => _guard = new AddressGuard(_time);

    [Fact]
    public void An_address_never_announced_is_probed_and_answered_only_after_a_quiet_probe_window()
    {
        var first = Check(unproven: true);
        Assert.Empty(first.Allowed);
        Assert.Equal([(Vip, Eth0)], first.Probe);
        Assert.Equal(TimeSpan.FromMilliseconds(300), first.NextDue);

        _time.Advance(TimeSpan.FromMilliseconds(299));
        var during = Check(unproven: true);
        Assert.Empty(during.Allowed);
        Assert.Empty(during.Probe); // probed once per window, not every pass

        _time.Advance(TimeSpan.FromMilliseconds(1));
        var after = Check(unproven: true);
        Assert.Equal([Vip], after.Allowed.Keys);
        Assert.Null(after.NextDue);
        Assert.Empty(after.Resolved); // there was no conflict to resolve
    }

    [Fact]
    public void A_takeover_of_an_address_announced_before_is_answered_at_once_without_probing()
    {
        var decision = Check(unproven: false);
        Assert.Equal([Vip], decision.Allowed.Keys);
        Assert.Empty(decision.Probe);
    }

    [Fact]
    public void A_claim_heard_while_probing_holds_the_address_back_and_probes_again_with_backoff_until_the_host_is_gone()
    {
        Check(unproven: true);
        Assert.Equal(ClaimOutcome.Conflict, _guard.Claimed(Vip, Other));
        Assert.Equal(ClaimOutcome.Ignored, _guard.Claimed(Vip, Other)); // the same conflict, counted once

        var held = Check(unproven: true);
        Assert.Empty(held.Allowed);
        Assert.Equal(Other, held.Conflicts[Vip].Claimant);
        Assert.Equal(TimeSpan.FromSeconds(1), held.NextDue);
        var since = held.Conflicts[Vip].Since;

        // Second probe, one second later: still claimed; the next waits two seconds, then four.
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal([(Vip, Eth0)], Check(unproven: true).Probe);
        Assert.Equal(ClaimOutcome.Conflict, _guard.Claimed(Vip, Other));
        var again = Check(unproven: true);
        Assert.Equal(TimeSpan.FromSeconds(2), again.NextDue);
        Assert.Equal(2, again.Conflicts[Vip].Detections);
        Assert.Equal(since, again.Conflicts[Vip].Since);

        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal([(Vip, Eth0)], Check(unproven: true).Probe);
        Assert.Equal(ClaimOutcome.Conflict, _guard.Claimed(Vip, Other));
        Assert.Equal(TimeSpan.FromSeconds(4), Check(unproven: true).NextDue);

        // The other host is gone: the next probe goes unanswered and the address is announced.
        _time.Advance(TimeSpan.FromSeconds(4));
        var probing = Check(unproven: true);
        Assert.Equal([(Vip, Eth0)], probing.Probe);
        Assert.Empty(probing.Allowed);
        Assert.Equal(Other, probing.Conflicts[Vip].Claimant); // still reported while probed again, so the condition does not flap
        _time.Advance(TimeSpan.FromMilliseconds(300));
        var back = Check(unproven: true);
        Assert.Equal([Vip], back.Allowed.Keys);
        Assert.Equal([Vip], back.Resolved);
        Assert.Empty(back.Conflicts);
    }

    [Fact]
    public void A_claim_heard_while_announcing_is_challenged_with_a_probe_and_withdraws_the_address_when_the_same_host_answers_it()
    {
        Assert.Equal([Vip], Check(unproven: false).Allowed.Keys);
        Assert.Equal(ClaimOutcome.Challenged, _guard.Claimed(Vip, Other));
        var challenged = Check(unproven: false);
        Assert.Equal([Vip], challenged.Allowed.Keys); // still answered while the claim is checked
        Assert.Equal([(Vip, Eth0)], challenged.Probe);
        Assert.Empty(challenged.Conflicts);
        Assert.Equal(TimeSpan.FromMilliseconds(300), challenged.NextDue);

        Assert.Equal(ClaimOutcome.Ignored, _guard.Claimed(Vip, new MacAddress(0x02_00_00_00_00_aa))); // another sender: not the one checked
        Assert.Equal(ClaimOutcome.Conflict, _guard.Claimed(Vip, Other)); // the same host answers the probe
        var decision = Check(unproven: false);
        Assert.Empty(decision.Allowed);
        Assert.Equal(Other, decision.Conflicts[Vip].Claimant);
        Assert.Equal(TimeSpan.FromSeconds(1), decision.NextDue);
    }

    [Fact]
    public void A_stray_claim_nobody_confirms_costs_a_probe_and_not_the_address()
    {
        Check(unproven: false);
        Assert.Equal(ClaimOutcome.Challenged, _guard.Claimed(Vip, Other));
        Check(unproven: false);
        _time.Advance(TimeSpan.FromMilliseconds(300));
        var decision = Check(unproven: false);
        Assert.Equal([Vip], decision.Allowed.Keys);
        Assert.Empty(decision.Probe);
        Assert.Empty(decision.Conflicts);
        Assert.Null(decision.NextDue);
        Assert.Equal(ClaimOutcome.Challenged, _guard.Claimed(Vip, Other)); // the next claim is checked afresh
    }

    [Fact]
    public void Claims_for_addresses_not_wanted_are_ignored_and_addresses_given_up_are_forgotten()
    {
        Assert.Equal(ClaimOutcome.Ignored, _guard.Claimed(Vip, Other));
        Check(unproven: true);
        Assert.Equal(ClaimOutcome.Conflict, _guard.Claimed(Vip, Other));

        // Given up (another node won it), then won again as a takeover: judged afresh.
        _guard.Check(new Dictionary<Ip, string[]>(), new HashSet<Ip>());
        Assert.Equal(ClaimOutcome.Ignored, _guard.Claimed(Vip, Other));
        Assert.Equal([Vip], Check(unproven: false).Allowed.Keys);
    }

    [Fact]
    public void Each_address_is_judged_on_its_own()
    {
        var wanted = new Dictionary<Ip, string[]> { [Vip] = Eth0, [Vip6] = Eth0 };
        _guard.Check(wanted, new HashSet<Ip> { Vip, Vip6 });
        Assert.Equal(ClaimOutcome.Conflict, _guard.Claimed(Vip6, Other));
        _time.Advance(TimeSpan.FromMilliseconds(300));
        var decision = _guard.Check(wanted, new HashSet<Ip> { Vip, Vip6 });
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

    private GuardDecision Check(bool unproven) =>
        _guard.Check(new Dictionary<Ip, string[]> { [Vip] = Eth0 }, unproven ? new HashSet<Ip> { Vip } : new HashSet<Ip>());
}

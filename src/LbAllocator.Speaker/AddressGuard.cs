using LbAllocator.Core;

namespace LbAllocator.Speaker;

/// <summary>Another host claims an address this node should announce (RFC 5227 conflict).</summary>
/// <param name="Claimant">The other host's link-layer address.</param>
/// <param name="Since">When the claim was first heard.</param>
/// <param name="Detections">How many probes or announcements in a row found it claimed (sets the backoff).</param>
public sealed record AddressConflict(MacAddress Claimant, DateTimeOffset Since, int Detections);

/// <summary>What a claim heard on the LAN did.</summary>
public enum ClaimOutcome
{
    /// <summary>Not a guarded address, or nothing new (already in conflict, or another claimant while one is checked).</summary>
    Ignored,

    /// <summary>A claim for an address being answered: it is probed, and withdrawn only if the same host answers the probe.</summary>
    Challenged,

    /// <summary>A conflict: the address is no longer answered.</summary>
    Conflict,
}

/// <summary>What the guard lets through this pass.</summary>
/// <param name="Allowed">Address to interfaces: the owned addresses that may be answered now.</param>
/// <param name="Probe">Addresses to probe now (held back until the probe window passes quietly).</param>
/// <param name="Conflicts">Addresses held back because another host claims them (or did at the last probe: while probed again).</param>
/// <param name="Resolved">Addresses whose conflict ended this pass (a probe went unanswered): announced again.</param>
/// <param name="NextDue">When a probe window ends or a re-probe is due, if any.</param>
public sealed record GuardDecision(
    IReadOnlyDictionary<Ip, string[]> Allowed,
    IReadOnlyList<(Ip Address, string[] Interfaces)> Probe,
    IReadOnlyDictionary<Ip, AddressConflict> Conflicts,
    IReadOnlyList<Ip> Resolved,
    TimeSpan? NextDue);

/// <summary>
/// Address conflict detection (RFC 5227 for IPv4, duplicate address detection for IPv6) for the addresses this node
/// wins: an address is probed before its Service is first announced, is not answered while another host claims it
/// (heard while probing or while announcing), and is probed again with backoff until the other host is gone.
/// <para>
/// RFC 5227's timings (three probes over 1-2 s, then 2 s of waiting) would hold a takeover up for seconds. Here only
/// an address never announced before (no ServiceL2Status) or last reported in conflict is probed, twice 100 ms apart,
/// and answered when 200 ms pass without a claim: a host using the address answers a probe at once. A takeover
/// between speakers is not probed (the address was announced, and the other MAC is a speaker's), so failover stays
/// as fast as before; a host that starts using an address later is caught by the claims heard while announcing.
/// </para>
/// <para>
/// A claim heard while announcing is challenged rather than believed: the address is probed (still answered
/// meanwhile) and withdrawn only when the same host answers the probe. One stray or forged frame (RFC 5227 section
/// 2.4 warns of them) thus costs a probe, not the address; a host that really uses it answers the probe at once.
/// </para>
/// No I/O: the effects send the probes, the announcer reports claims; time comes from the <see cref="TimeProvider"/>.
/// </summary>
public sealed class AddressGuard(TimeProvider time)
{
    public const int ProbeCount = 2;
    public static readonly TimeSpan ProbeSpacing = TimeSpan.FromMilliseconds(100);
    public static readonly TimeSpan ProbeWait = TimeSpan.FromMilliseconds(200);
    public static readonly TimeSpan FirstRetry = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan MaxRetry = TimeSpan.FromSeconds(60);

    private static readonly TimeSpan ProbeWindow = (ProbeSpacing * (ProbeCount - 1)) + ProbeWait;

    private readonly Lock _lock = new();
    private readonly Dictionary<Ip, State> _states = [];

    /// <summary>How long after its <paramref name="detections"/>-th detection in a row a claimed address is probed again: 1 s, doubling, at most 60 s.</summary>
    public static TimeSpan Backoff(int detections) =>
        detections >= 8 ? MaxRetry : TimeSpan.FromTicks(Math.Min(FirstRetry.Ticks << (detections - 1), MaxRetry.Ticks));

    /// <summary>
    /// Decides which of the <paramref name="wanted"/> addresses are answered now. <paramref name="unproven"/>: the ones
    /// to probe before their first announcement (never announced, or last reported in conflict); the rest are answered
    /// at once unless a claim is heard. Forgets addresses no longer wanted.
    /// </summary>
    public GuardDecision Check(IReadOnlyDictionary<Ip, string[]> wanted, IReadOnlySet<Ip> unproven)
    {
        var now = time.GetUtcNow();
        var allowed = new Dictionary<Ip, string[]>();
        var probe = new List<(Ip, string[])>();
        var conflicts = new Dictionary<Ip, AddressConflict>();
        var resolved = new List<Ip>();
        DateTimeOffset? next = null;
        lock (_lock)
        {
            foreach (var gone in _states.Keys.Where(ip => !wanted.ContainsKey(ip)).ToList())
            {
                _states.Remove(gone);
            }

            foreach (var (ip, interfaces) in wanted)
            {
                if (!_states.TryGetValue(ip, out var state))
                {
                    state = unproven.Contains(ip) ? StartProbing(ip, interfaces, now, conflict: null, probe) : State.Announcing;
                }
                else if (state.Phase == Phase.Conflict && state.Due <= now)
                {
                    state = StartProbing(ip, interfaces, now, state.Conflict, probe);
                }
                else if (state.Phase == Phase.Challenged && state.Due == DateTimeOffset.MaxValue)
                {
                    probe.Add((ip, interfaces));
                    state = state with { Due = now + ProbeWindow };
                }
                else if ((state.Phase is Phase.Probing or Phase.Challenged) && state.Due <= now)
                {
                    if (state.Conflict is not null)
                    {
                        resolved.Add(ip);
                    }

                    state = State.Announcing;
                }

                _states[ip] = state;
                if (state.Phase is Phase.Announcing or Phase.Challenged)
                {
                    allowed[ip] = interfaces;
                }

                if (state.Phase != Phase.Announcing)
                {
                    next = next is { } n && n < state.Due ? n : state.Due;
                    // Still in conflict while probed again: the condition and events do not flap with each retry.
                    if (state.Conflict is not null)
                    {
                        conflicts[ip] = state.Conflict;
                    }
                }
            }
        }

        return new GuardDecision(allowed, probe, conflicts, resolved, next is { } due ? Max(due - now, TimeSpan.Zero) : null);
    }

    /// <summary>
    /// Another host (not a speaker) said it uses <paramref name="address"/>; called from a capture thread. Heard while
    /// the address is probed, or from the challenged host while it is checked, it is a conflict; heard while the
    /// address is answered, a challenge. The caller runs a pass for either (it stops answering, or sends the probe).
    /// </summary>
    public ClaimOutcome Claimed(Ip address, MacAddress claimant)
    {
        var now = time.GetUtcNow();
        lock (_lock)
        {
            if (!_states.TryGetValue(address, out var state) || state.Phase == Phase.Conflict
                || (state.Phase == Phase.Challenged && state.Suspect != claimant))
            {
                return ClaimOutcome.Ignored;
            }

            if (state.Phase == Phase.Announcing)
            {
                _states[address] = new State(Phase.Challenged, DateTimeOffset.MaxValue, null, claimant); // probed by the next pass
                return ClaimOutcome.Challenged;
            }

            // A probe that finds the address still claimed keeps the conflict's start, and backs off further.
            var detections = (state.Conflict?.Detections ?? 0) + 1;
            var conflict = new AddressConflict(claimant, state.Conflict?.Since ?? now, detections);
            _states[address] = new State(Phase.Conflict, now + Backoff(detections), conflict);
            return ClaimOutcome.Conflict;
        }
    }

    private static State StartProbing(Ip ip, string[] interfaces, DateTimeOffset now, AddressConflict? conflict, List<(Ip, string[])> probe)
    {
        probe.Add((ip, interfaces));
        return new State(Phase.Probing, now + ProbeWindow, conflict);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private enum Phase
    {
        Probing,
        Announcing,
        Challenged, // answered, and probed: a claim heard while answering, not yet confirmed
        Conflict,
    }

    /// <param name="Due">Probing and challenged: when the window ends (challenged: MaxValue until the probe goes out); conflict: when to probe again.</param>
    /// <param name="Conflict">The conflict being probed again, or held back for.</param>
    /// <param name="Suspect">Challenged: the host whose claim is being checked.</param>
    private sealed record State(Phase Phase, DateTimeOffset Due, AddressConflict? Conflict, MacAddress? Suspect = null)
    {
        public static readonly State Announcing = new(Phase.Announcing, DateTimeOffset.MinValue, null);
    }
}

using LbAllocator.Core;

namespace LbAllocator.Speaker;

/// <summary>A host that is not a speaker claims an address this node should announce (RFC 5227 conflict).</summary>
/// <param name="Claimant">The other host's link-layer address.</param>
/// <param name="Since">When the claim was first heard.</param>
/// <param name="Detections">How many probes in a row found it claimed (sets the backoff).</param>
public sealed record AddressConflict(MacAddress Claimant, DateTimeOffset Since, int Detections);

/// <summary>What a claim heard on the LAN did.</summary>
public enum ClaimOutcome
{
    /// <summary>Not a guarded address, or nothing new.</summary>
    Ignored,

    /// <summary>A speaker still answers an address being probed: it has not let go yet, so the probe is sent again shortly.</summary>
    Held,

    /// <summary>A host that is not a speaker answered a probe: the address is not answered, and probed again with backoff.</summary>
    Conflict,

    /// <summary>Another MAC announces an address this node answers: announce it again at once (RFC 5227 2.4(c)), never yield it.</summary>
    Defend,

    /// <summary>Another claim within <see cref="AddressGuard.DefendInterval"/> of a defence: announce it again when the interval ends, so ours is the last word.</summary>
    DefendLater,
}

/// <summary>What the guard lets through this pass.</summary>
/// <param name="Allowed">Address to interfaces: the owned addresses that may be answered now.</param>
/// <param name="Probe">Addresses to probe now (held back until a probe goes unanswered).</param>
/// <param name="Conflicts">Addresses held back because a host that is not a speaker claims them (kept while probed again).</param>
/// <param name="Resolved">Addresses whose conflict ended this pass (a probe went unanswered): announced again.</param>
/// <param name="NextDue">When a probe window ends or a probe is due, if any.</param>
public sealed record GuardDecision(
    IReadOnlyDictionary<Ip, string[]> Allowed,
    IReadOnlyList<(Ip Address, string[] Interfaces)> Probe,
    IReadOnlyDictionary<Ip, AddressConflict> Conflicts,
    IReadOnlyList<Ip> Resolved,
    TimeSpan? NextDue);

/// <summary>
/// When this node starts answering an address it wins, and what it does when another MAC says it uses one.
/// <para>
/// Break before make: an address taken from a speaker found dead (it left, or a majority of its neighbours stopped
/// hearing it, having stopped answering first) is answered at once. Any other (the previous owner is alive and lets go
/// when it sees this node win, the previous owner is unknown, or the address is new) is probed first (an ARP probe
/// or duplicate address detection, which no neighbour learns from) and answered when a probe goes unanswered for
/// <see cref="ProbeWait"/>: a speaker still answering is probed again <see cref="ReprobeDelay"/> later, so a handback
/// is silent for at most about the two; a host that is not a speaker answering is a conflict, and the address is
/// probed again with backoff while it lasts.
/// </para>
/// <para>
/// An address being answered is never given up to a claim: one forged ARP would otherwise silence it. The owner
/// defends it (RFC 5227 section 2.4 (c)) by announcing it again at once, at most once every
/// <see cref="DefendInterval"/> and once more at the end of it if claims went on meanwhile, so the last word is the
/// owner's and a neighbour that took a claim points back at the owner within a fraction of a second.
/// </para>
/// No I/O: the effects send the probes and announcements, the address watch reports claims; time comes from the
/// <see cref="TimeProvider"/>.
/// </summary>
public sealed class AddressGuard(TimeProvider time)
{
    public static readonly TimeSpan ProbeWait = TimeSpan.FromMilliseconds(100);
    public static readonly TimeSpan ReprobeDelay = TimeSpan.FromMilliseconds(50);
    public static readonly TimeSpan DefendInterval = TimeSpan.FromMilliseconds(250);
    public static readonly TimeSpan FirstRetry = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan MaxRetry = TimeSpan.FromSeconds(60);

    private readonly Lock _lock = new();
    private readonly Dictionary<Ip, State> _states = [];

    /// <summary>How long after its <paramref name="detections"/>-th detection in a row a claimed address is probed again: 1 s, doubling, at most 60 s.</summary>
    public static TimeSpan Backoff(int detections) =>
        detections >= 8 ? MaxRetry : TimeSpan.FromTicks(Math.Min(FirstRetry.Ticks << (detections - 1), MaxRetry.Ticks));

    /// <summary>
    /// Decides which of the <paramref name="wanted"/> addresses are answered now. <paramref name="fromTheDead"/>: those
    /// new to this node whose previous owner is a speaker now dead, answered at once; every other new one is probed
    /// first. Forgets addresses no longer wanted.
    /// </summary>
    public GuardDecision Check(IReadOnlyDictionary<Ip, string[]> wanted, IReadOnlySet<Ip> fromTheDead)
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
                    state = fromTheDead.Contains(ip) ? State.Answering : Probing(ip, interfaces, now, null, probe);
                }
                else if (state.Phase == Phase.Probing && state.Due <= now)
                {
                    if (state.Held)
                    {
                        state = Probing(ip, interfaces, now, state.Conflict, probe); // a speaker answered: once more
                    }
                    else
                    {
                        if (state.Conflict is not null)
                        {
                            resolved.Add(ip);
                        }

                        state = State.Answering;
                    }
                }
                else if (state.Phase == Phase.Conflict && state.Due <= now)
                {
                    state = Probing(ip, interfaces, now, state.Conflict, probe);
                }

                _states[ip] = state;
                if (state.Phase == Phase.Answering)
                {
                    allowed[ip] = interfaces;
                    continue;
                }

                next = next is { } n && n < state.Due ? n : state.Due;
                if (state.Conflict is not null)
                {
                    conflicts[ip] = state.Conflict; // still in conflict while probed again: no flapping condition
                }
            }
        }

        return new GuardDecision(allowed, probe, conflicts, resolved, next is { } due ? Max(due - now, TimeSpan.Zero) : null);
    }

    /// <summary>The defence put off by <see cref="ClaimOutcome.DefendLater"/> is due: true when the address is still answered and it goes out now.</summary>
    public bool DefendNow(Ip address)
    {
        var now = time.GetUtcNow();
        lock (_lock)
        {
            if (!_states.TryGetValue(address, out var state) || state.Phase != Phase.Answering || !state.Held)
            {
                return false;
            }

            _states[address] = state with { Due = now, Held = false };
            return true;
        }
    }

    /// <summary>
    /// Another MAC said it uses <paramref name="address"/> (<paramref name="speaker"/>: a live speaker's); called from a
    /// capture thread. The caller acts on the outcome at once: a pass for <see cref="ClaimOutcome.Held"/> and
    /// <see cref="ClaimOutcome.Conflict"/>, an announcement for <see cref="ClaimOutcome.Defend"/>.
    /// </summary>
    public ClaimOutcome Claimed(Ip address, MacAddress claimant, bool speaker)
    {
        var now = time.GetUtcNow();
        lock (_lock)
        {
            if (!_states.TryGetValue(address, out var state) || state.Phase == Phase.Conflict)
            {
                return ClaimOutcome.Ignored;
            }

            if (state.Phase == Phase.Answering)
            {
                if (state.Due != DateTimeOffset.MinValue && now - state.Due < DefendInterval)
                {
                    if (state.Held)
                    {
                        return ClaimOutcome.Ignored; // a defence is due at the interval's end already
                    }

                    _states[address] = state with { Held = true };
                    return ClaimOutcome.DefendLater;
                }

                _states[address] = state with { Due = now, Held = false }; // when it was last defended
                return ClaimOutcome.Defend;
            }

            if (speaker)
            {
                var reprobe = now + ReprobeDelay;
                _states[address] = state with { Held = true, Due = state.Due < reprobe ? state.Due : reprobe };
                return ClaimOutcome.Held;
            }

            // A probe that finds the address still claimed keeps the conflict's start, and backs off further.
            var detections = (state.Conflict?.Detections ?? 0) + 1;
            var conflict = new AddressConflict(claimant, state.Conflict?.Since ?? now, detections);
            _states[address] = new State(Phase.Conflict, now + Backoff(detections), conflict);
            return ClaimOutcome.Conflict;
        }
    }

    private static State Probing(Ip ip, string[] interfaces, DateTimeOffset now, AddressConflict? conflict, List<(Ip, string[])> probe)
    {
        probe.Add((ip, interfaces));
        return new State(Phase.Probing, now + ProbeWait, conflict);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private enum Phase
    {
        Probing,
        Answering,
        Conflict,
    }

    /// <param name="Due">Probing: when the window ends (or the next probe goes out, when <paramref name="Held"/>); conflict: when to probe again; answering: when it was last defended.</param>
    /// <param name="Conflict">The conflict being probed again, or held back for.</param>
    /// <param name="Held">Probing: a speaker answered the probe, which is sent again; answering: a defence is put off to the interval's end.</param>
    private sealed record State(Phase Phase, DateTimeOffset Due, AddressConflict? Conflict, bool Held = false)
    {
        public static readonly State Answering = new(Phase.Answering, DateTimeOffset.MinValue, null);
    }
}

namespace LbAllocator.Speaker;

/// <summary>Whether this speaker stands for election, and if not, why.</summary>
public enum SelfState
{
    /// <summary>Stands for every address it can win.</summary>
    Candidate,

    /// <summary>No capture is open on an interface it announces on: it cannot answer anything.</summary>
    CannotAnswer,

    /// <summary>Answering again only after hearing the LAN for one dead interval, so peers have heard it first.</summary>
    WarmingUp,

    /// <summary>Its lease is not renewed and it hears no other member on the LAN: it may be cut off, so it stays silent.</summary>
    Fenced,
}

/// <summary>Who is alive for the election as this speaker sees it, and until when that holds if nothing is heard.</summary>
/// <param name="Alive">Live members, this node included when it is a candidate.</param>
/// <param name="HeardPeers">Other members heard on the LAN within their dead interval.</param>
/// <param name="NextChange">When the view changes by itself (a peer going unheard for too long, the warm-up ending); null if never.</param>
public sealed record LivenessView(HashSet<string> Alive, SelfState Self, int HeardPeers, TimeSpan? NextChange);

/// <summary>
/// Liveness as heard on the LAN, combined with the members the speaker leases name. A member is alive when it
/// was heard within the longer of its dead interval and ours; a member never heard on the LAN (heartbeats
/// filtered, or a speaker without them) is judged by its lease instead. Membership itself comes from the leases
/// and is kept as last seen while the API server is away, so an outage changes nothing on the wire.
/// This speaker stands for election only while it can answer (a capture open on an interface it announces on),
/// after sending heartbeats and hearing the LAN for one dead interval since it could (so whoever holds its
/// addresses heard it and let go first: a short silence rather than two answers), while its heartbeats keep going
/// out, and unless it is fenced: lease not renewed and no other member
/// heard, which is what a node cut off from everything sees. Measured on this node's clock only.
/// </summary>
public sealed class LanLiveness(string self, TimeSpan deadInterval, TimeProvider time)
{
    private readonly Dictionary<string, (long At, TimeSpan Dead)> _heard = new(StringComparer.Ordinal); // a peer that left has Dead zero
    private readonly Lock _lock = new();
    private bool _canServe;
    private long? _servingSince; // first heartbeat sent since this node could answer, and has kept sending
    private long? _lastSent;

    /// <summary>
    /// Records a heartbeat from the LAN that arrived <paramref name="age"/> ago; true when it changes who is alive (a peer
    /// came back or left), so a pass is due. One older than the last heard from that node is ignored: heartbeats are read
    /// in batches, and a leaving one at once, so a batch may hold a beat sent before the leaving one.
    /// </summary>
    public bool Heard(in Heartbeat heartbeat, TimeSpan age = default)
    {
        if (heartbeat.Node == self)
        {
            return false;
        }

        lock (_lock)
        {
            var now = time.GetTimestamp();
            var at = now - (long)(age.TotalSeconds * time.TimestampFrequency);
            if (_heard.TryGetValue(heartbeat.Node, out var last) && last.At > at)
            {
                return false;
            }

            var wasAlive = AliveAt(heartbeat.Node, now);
            _heard[heartbeat.Node] = (at, heartbeat.Leaving ? TimeSpan.Zero : Max(heartbeat.DeadInterval, deadInterval));
            return wasAlive != AliveAt(heartbeat.Node, now);
        }
    }

    /// <summary>Whether this node can answer now (a capture open on an interface it announces on).</summary>
    public void SetServing(bool serving)
    {
        lock (_lock)
        {
            _canServe = serving;
            _servingSince = serving ? _servingSince : null;
        }
    }

    /// <summary>A heartbeat of ours went out: the warm-up starts with the first one once this node can answer.</summary>
    public void Sent()
    {
        lock (_lock)
        {
            _lastSent = time.GetTimestamp();
            _servingSince = _canServe ? _servingSince ?? _lastSent : null;
        }
    }

    /// <param name="members">Nodes with a speaker lease (the last known, while the API is away).</param>
    /// <param name="leaseAlive">Members alive by their lease: the judgement for those never heard on the LAN.</param>
    /// <param name="leaseHealthy">Whether this speaker's own lease is renewed.</param>
    public LivenessView Judge(IReadOnlyCollection<string> members, IReadOnlySet<string> leaseAlive, bool leaseHealthy)
    {
        lock (_lock)
        {
            var now = time.GetTimestamp();
            // A speaker whose lease is gone and who is no longer heard is forgotten: it rejoins by its lease or its
            // heartbeats. One still heard stays, so a restarting speaker heard before its lease is seen is not re-added
            // (and a pass asked for) at every heartbeat.
            foreach (var gone in _heard.Keys.Where(n => !members.Contains(n) && !AliveAt(n, now)).ToList())
            {
                _heard.Remove(gone);
            }

            var alive = new HashSet<string>(StringComparer.Ordinal);
            TimeSpan? next = null;
            var heardPeers = 0;
            foreach (var member in members.Where(m => m != self))
            {
                if (!_heard.TryGetValue(member, out var heard))
                {
                    if (leaseAlive.Contains(member))
                    {
                        alive.Add(member);
                    }

                    continue;
                }

                var left = heard.Dead - time.GetElapsedTime(heard.At, now);
                if (left > TimeSpan.Zero)
                {
                    alive.Add(member);
                    heardPeers++;
                    next = Min(next, left);
                }
            }

            // Heartbeats that stopped going out for half a dead interval (a starved process) may already have made
            // us dead to the others: listen again from the next one rather than answer beside a successor.
            if (_lastSent is not { } sent || time.GetElapsedTime(sent, now) > deadInterval / 2)
            {
                _servingSince = null;
            }

            var state = SelfState.Candidate;
            if (!_canServe)
            {
                state = SelfState.CannotAnswer;
            }
            else if (_servingSince is not { } since)
            {
                state = SelfState.WarmingUp;
                next = Min(next, deadInterval);
            }
            else if (time.GetElapsedTime(since, now) is var serving && serving < deadInterval)
            {
                state = SelfState.WarmingUp;
                next = Min(next, deadInterval - serving);
            }
            else if (!leaseHealthy && heardPeers == 0 && members.Any(m => m != self))
            {
                state = SelfState.Fenced;
            }

            if (state == SelfState.Candidate)
            {
                alive.Add(self);
            }

            return new LivenessView(alive, state, heardPeers, next);
        }
    }

    private bool AliveAt(string node, long now) => _heard.TryGetValue(node, out var heard) && time.GetElapsedTime(heard.At, now) < heard.Dead;

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private static TimeSpan? Min(TimeSpan? a, TimeSpan b) => a is { } x && x < b ? x : b;
}

namespace LbAllocator.Speaker.Lan;

/// <summary>Where this speaker stands in its segment's membership.</summary>
public enum MemberState
{
    /// <summary>Asking for the view (a Join broadcast); not answering anything.</summary>
    Joining,

    /// <summary>In the view, watched by its ring neighbours; answers while they show they hear it (<see cref="Membership.GateOpenUntil"/>).</summary>
    Member,

    /// <summary>Left for good (shutting down).</summary>
    Stopped,
}

/// <summary>Sends the speakers' LAN messages; <see cref="MacAddress.Broadcast"/> for everyone on the segment.</summary>
public interface ILanSender
{
    void Send(LanMessage message, MacAddress destination);
}

/// <summary>The membership as a pass reads it.</summary>
/// <param name="Alive">The live speakers of the segment, this one included while it is a member.</param>
/// <param name="Neighbors">This speaker's ring neighbours.</param>
/// <param name="Heard">How many of them were heard within their dead interval.</param>
/// <param name="Why">Why this speaker does not stand, when it does not.</param>
/// <param name="AloneCheckDue">Nobody answered this joiner: the API should say whether it is alone (<see cref="Membership.AloneChecked"/>).</param>
/// <param name="Left">
/// Speakers heard leaving lately and not back since: they stopped answering, and said so; their leases, which they
/// delete as they go, are no sign of life when the API is asked.
/// </param>
public sealed record MembershipView(long Version, IReadOnlySet<string> Alive, MemberState State, int Neighbors, int Heard, string? Why, bool AloneCheckDue, IReadOnlySet<string> Left);

/// <summary>
/// The speakers of one LAN segment agree who is alive by watching each other on a ring (SWIM's probe-and-disseminate,
/// Das et al. 2002, with a fixed set of watchers per speaker): each speaker beats to its <see cref="Neighbors"/> nearest
/// ring neighbours every interval (unicast, so what each receives stays flat however large the segment) and each beat
/// echoes the neighbour's latest, so both sides know they hear each other. Changes travel once, by broadcast: a speaker
/// joins, leaves, or is suspected by a neighbour that stopped hearing it; it is dead when a majority of its neighbours
/// suspect it.
/// <para>
/// Safety: a speaker answers only while at least half of its neighbours echoed one of its beats sent less than a dead
/// interval ago and do not suspect it (<see cref="GateOpenUntil"/>). A neighbour suspects it no sooner than a dead
/// interval after it last heard it, which is after that beat was sent; so before a majority can call it dead it has
/// stopped answering by itself, whether it crashed, froze, lost its link or went deaf. A speaker that hears fewer than
/// half of its neighbours suspects nobody (it is more likely deaf than they all dead): it leaves and asks to join again,
/// and it stands alone only when the API says no other speaker renews its lease (<see cref="AloneChecked"/>).
/// </para>
/// No I/O and no threads of its own: the transport hands in what arrives (<see cref="Receive"/>) and the heartbeat
/// thread calls <see cref="Tick"/> every interval; time comes from the <see cref="TimeProvider"/>.
/// </summary>
public sealed partial class Membership
{
    /// <summary>Ring neighbours each speaker watches and is watched by (fewer when the segment has fewer speakers).</summary>
    public const int DefaultNeighbors = 4;

    /// <summary>The longest dead interval honoured, whatever a beat says.</summary>
    public static readonly TimeSpan MaxDeadInterval = TimeSpan.FromSeconds(10);

    /// <summary>The longest a joiner nobody answers waits before it asks the API again (from one second, doubling).</summary>
    public static readonly TimeSpan AloneCheckInterval = TimeSpan.FromSeconds(8);

    /// <summary>A Join whose epoch (the sender's clock when it joined, in ms) is older than this is a replay.</summary>
    public static readonly TimeSpan JoinFreshness = TimeSpan.FromMinutes(10);

    private const int Repeats = 3; // broadcasts go out this many times, an interval apart: one lost frame changes nothing
    private const int NeverHeardFactor = 3;
    private const int SentHistory = 256;
    private static readonly TimeSpan MaxJoinBackoff = TimeSpan.FromSeconds(4);
    private static readonly TimeSpan ForgetEvery = TimeSpan.FromSeconds(1);

    private readonly Lock _lock = new();
    private readonly string _self;
    private readonly TimeSpan _interval;
    private readonly TimeSpan _dead;
    private readonly int _count;
    private readonly TimeProvider _time;
    private readonly MemberView _view = new();
    private readonly Dictionary<string, Neighbor> _neighbors = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (ulong Epoch, ulong Beat, ulong Other)> _seen = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (ulong Epoch, Dictionary<string, long> Until)> _suspicions = new(StringComparer.Ordinal);
    private readonly (ulong Sequence, long At)[] _sent = new (ulong, long)[SentHistory];
    private readonly List<(LanMessage Message, MacAddress To, int Left)> _repeats = [];
    private readonly Dictionary<ulong, long> _requests = []; // our Joins and SyncRequests (sequence to when), which a Sync must echo
    private readonly Dictionary<string, long> _syncedTo = new(StringComparer.Ordinal); // joiners answered lately, by name
    private readonly Dictionary<string, long> _askedFor = new(StringComparer.Ordinal); // speakers whose view we asked for lately
    private readonly Dictionary<string, (ulong Epoch, MacAddress Mac, long At)> _coJoiners = new(StringComparer.Ordinal); // others asking while we are
    private readonly Dictionary<string, long> _left = new(StringComparer.Ordinal); // speakers heard leaving, and when
    private List<(LanMessage Message, MacAddress To)> _outbox = [];
    private MemberState _state = MemberState.Joining;
    private ulong _epoch;
    private ulong _beatSequence;
    private ulong _otherSequence;
    private long _joinSentAt;
    private TimeSpan _joinBackoff;
    private bool _aloneCheckDue;
    private bool _serving = true;
    private long _nextAloneCheck;
    private int _aloneChecks; // asked since the last rejoin: sets the backoff
    private bool _aloneConfirmed; // a member with no neighbours, which the API said is alone
    private long? _lastDrop;
    private long _gateOpenUntil;
    private long _stateVersion; // bumped with every change of state, reason or alone check
    private long _reported = -1;
    private long _lastTick;
    private long? _forgotAt;
    private bool _gateOpen; // as last reported
    private int _joinsLeft; // the first Joins of an epoch go out an interval apart, then with backoff
    private string? _why;

    public Membership(string self, TimeSpan interval, TimeSpan deadInterval, TimeProvider time, int neighbors = DefaultNeighbors)
    {
        _self = self;
        _interval = interval;
        _dead = deadInterval;
        _count = neighbors;
        _time = time;
    }

    /// <summary>Raised (outside the lock) when what <see cref="View"/> returns changed: a pass is due.</summary>
    public event Action? Changed;

    /// <summary>The sender; set before the first <see cref="Start"/>.</summary>
    public ILanSender? Sender { get; set; }

    public ulong Epoch => _epoch;

    /// <summary>
    /// Until when (a <see cref="TimeProvider"/> timestamp) this speaker may answer: read on every ARP request and
    /// Neighbor Solicitation, so a frozen or cut-off speaker stops by itself even before a pass runs.
    /// </summary>
    public long GateOpenUntil => Volatile.Read(ref _gateOpenUntil);

    public MembershipView View()
    {
        lock (_lock)
        {
            var alive = _view.Alive.Where(n => n != _self || _state == MemberState.Member).ToHashSet(StringComparer.Ordinal);
            return new MembershipView(
                Version, alive, _state, _neighbors.Count, _neighbors.Values.Count(n => !Silent(n, _time.GetTimestamp())), _why, _aloneCheckDue,
                _left.Keys.Where(n => !alive.Contains(n)).ToHashSet(StringComparer.Ordinal));
        }
    }

    /// <summary>The live speaker that sends from <paramref name="mac"/>, if any: its announcements are no foreign host's.</summary>
    public string? SpeakerOf(MacAddress mac)
    {
        lock (_lock)
        {
            return _view.NameOf(mac) is { } name && name != _self ? name : null;
        }
    }

    public void Start() => Run(now => Rejoin(now, why: "joining: asking for the view"));

    /// <summary>Leaves for good: this speaker has stopped answering, and the others take over at once.</summary>
    public void Stop() => Run(now =>
    {
        if (_state != MemberState.Stopped)
        {
            for (var i = 0; i < Repeats; i++)
            {
                _outbox.Add((new Leave(_self, _epoch, ++_otherSequence), MacAddress.Broadcast));
            }

            _state = MemberState.Stopped;
            Note("stopped");
        }
    });

    /// <summary>
    /// Whether this speaker can send and hear on the LAN at all (a capture open on an interface it announces on). One
    /// that cannot leaves (if it can still say so) and waits; once it can again, it joins anew.
    /// </summary>
    public void SetServing(bool serving) => Run(now =>
    {
        if (serving == _serving || _state == MemberState.Stopped)
        {
            return;
        }

        _serving = serving;
        if (serving)
        {
            Rejoin(now, "joining: asking for the view");
            return;
        }

        if (_state == MemberState.Member)
        {
            _outbox.Add((new Leave(_self, _epoch, ++_otherSequence), MacAddress.Broadcast));
            _view.End(_self, _epoch, now);
        }

        _state = MemberState.Joining;
        _neighbors.Clear();
        _aloneCheckDue = false;
        Note("cannot answer: no capture open on an interface it announces on");
    });

    /// <summary>The transport's capture dropped frames: nobody is suspected for a dead interval from now.</summary>
    public void SawDrops() => Run(now => _lastDrop = now);

    /// <summary>
    /// The answer to <see cref="AloneCheckDue"/>: whether the API knows no other speaker that still renews its lease.
    /// Alone, this speaker is a member by itself and every other member it knew of is over; else it keeps asking.
    /// </summary>
    public void AloneChecked(bool alone) => Run(now =>
    {
        _aloneCheckDue = false;
        _stateVersion++;
        _nextAloneCheck = now + Ticks(AloneCheckBackoff(++_aloneChecks));
        if (_state != MemberState.Joining)
        {
            return;
        }

        if (!alone)
        {
            Note("joining: no speaker answers on the LAN, yet the API shows others renewing their leases (this node may not hear the LAN)");
            return;
        }

        foreach (var other in _view.Entries.Where(e => !e.Dead && e.Name != _self))
        {
            _view.End(other.Name, other.Epoch, now);
        }

        _aloneConfirmed = true;
        BecomeMember(now);
    });

    /// <summary>One interval's work: judge the neighbours, beat to them, repeat broadcasts, open or close the gate.</summary>
    public void Tick() => Run(now =>
    {
        if (_state == MemberState.Stopped)
        {
            return;
        }

        _lastTick = now;
        if (_forgotAt is not { } forgot || Elapsed(forgot, now) >= ForgetEvery)
        {
            // Both scan the whole view: once a second, not every tick, so that a tick costs the same however many
            // speakers the segment holds.
            _forgotAt = now;
            _view.Forget(now - Ticks(JoinFreshness + JoinFreshness));
            ForgetOld(now);
        }

        if (_state == MemberState.Joining && !_serving)
        {
            return;
        }

        if (_state == MemberState.Joining)
        {
            if (_joinsLeft > 0 || Elapsed(_joinSentAt, now) >= _joinBackoff)
            {
                SendJoin(now);
            }

            if (now >= _nextAloneCheck && _coJoiners.Values.Any(j => Elapsed(j.At, now) < CoJoinerFreshness))
            {
                Found(now);
            }
            else if (!_aloneCheckDue && now >= _nextAloneCheck)
            {
                _aloneCheckDue = true;
                _stateVersion++;
            }
        }
        else
        {
            Judge(now);
        }

        Count(now);
        foreach (var neighbor in _neighbors.Values)
        {
            var beat = new Beat(_self, _epoch, ++_beatSequence, _interval, _dead, neighbor.Epoch, neighbor.LastBeat, _view.Digest);
            _sent[_beatSequence % SentHistory] = (_beatSequence, now);
            _outbox.Add((beat, MacOf(neighbor.Name)));
        }

        for (var i = _repeats.Count - 1; i >= 0; i--)
        {
            var (message, to, left) = _repeats[i];
            _outbox.Add((message with { Sequence = ++_otherSequence }, to));
            _repeats[i] = (message, to, left - 1);
            if (left <= 1)
            {
                _repeats.RemoveAt(i);
            }
        }
    });

    /// <summary>A message that arrived at <paramref name="receivedAt"/> (a timestamp) from <paramref name="mac"/>, already authenticated.</summary>
    public void Receive(LanMessage message, MacAddress mac, long receivedAt) => Run(now =>
    {
        if (message.From == _self || _state == MemberState.Stopped || !Fresh(message))
        {
            return;
        }

        switch (message)
        {
            case Beat beat:
                OnBeat(beat, mac, receivedAt, now);
                break;
            case Join join:
                OnJoin(join, mac, now);
                break;
            case Leave leave:
                if (_view.End(leave.From, leave.Epoch, now))
                {
                    _left[leave.From] = now;
                    Neighbors(now);
                }

                break;
            case Suspect suspect:
                OnSuspect(suspect, receivedAt, now);
                Count(now);
                break;
            case SyncRequest request when _view.IsAlive(request.From, request.Epoch):
                SendView(request.From, request.Epoch, request.Sequence, mac);
                break;
            case Sync sync:
                OnSync(sync, now);
                break;
        }
    });

    private long Version => _view.Version + _stateVersion;

    private void Note(string? why)
    {
        _why = why;
        _stateVersion++;
    }

    private void Broadcast(LanMessage message, int repeats)
    {
        _outbox.Add((message with { Sequence = ++_otherSequence }, MacAddress.Broadcast));
        if (repeats > 1)
        {
            _repeats.Add((message, MacAddress.Broadcast, repeats - 1));
        }
    }

    /// <summary>Replays are dropped: per sender epoch, beats and other messages each count up.</summary>
    private bool Fresh(LanMessage message)
    {
        var beat = message is Beat;
        if (_seen.TryGetValue(message.From, out var seen))
        {
            if (message.Epoch < seen.Epoch || (message.Epoch == seen.Epoch && message.Sequence <= (beat ? seen.Beat : seen.Other)))
            {
                return false;
            }

            if (message.Epoch > seen.Epoch)
            {
                seen = (message.Epoch, 0, 0);
            }
        }
        else if (_seen.Count >= MemberView.DefaultCapacity || !(message is Join || _view.IsAlive(message.From, message.Epoch)))
        {
            return message is Sync; // a joiner hears its first views from speakers it does not know yet
        }
        else
        {
            seen = (message.Epoch, 0, 0);
        }

        _seen[message.From] = beat ? seen with { Beat = message.Sequence } : seen with { Other = message.Sequence };
        return true;
    }

    private void ForgetOld(long now)
    {
        foreach (var name in _seen.Keys.Where(n => !_view.TryGet(n, out _)).ToList())
        {
            _seen.Remove(name);
        }

        foreach (var (sequence, at) in _requests.Where(r => Elapsed(r.Value, now) > TimeSpan.FromSeconds(10)).ToList())
        {
            _requests.Remove(sequence);
        }

        foreach (var cache in new[] { _syncedTo, _askedFor, _left })
        {
            foreach (var (name, at) in cache.Where(r => Elapsed(r.Value, now) > MaxDeadInterval).ToList())
            {
                cache.Remove(name);
            }
        }
    }

    private MacAddress MacOf(string name) => _view.TryGet(name, out var entry) && entry.Mac != default ? entry.Mac : MacAddress.Broadcast;

    /// <summary>Runs a change under the lock, then sends what it queued and tells the listeners, both outside it.</summary>
    private void Run(Action<long> change)
    {
        List<(LanMessage Message, MacAddress To)> outbox;
        bool changed;
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            change(now);
            UpdateGate(now);
            (outbox, _outbox) = (_outbox, []);
            var version = Version;
            changed = version != _reported;
            _reported = version;
        }

        foreach (var (message, to) in outbox)
        {
            Sender?.Send(message, to);
        }

        if (changed)
        {
            Changed?.Invoke();
        }
    }

    /// <summary>Whether this speaker has been ticking: a frozen one learns of what happened meanwhile only after it thaws.</summary>
    private bool Current(long now) => _lastTick != 0 && Elapsed(_lastTick, now) <= _interval * 2;

    private static int Half(int count) => (count + 1) / 2;

    private static TimeSpan AloneCheckBackoff(int checks) => checks >= 4 ? AloneCheckInterval : TimeSpan.FromSeconds(1 << (checks - 1));

    private TimeSpan Elapsed(long from, long to) => _time.GetElapsedTime(from, to);

    private long Ticks(TimeSpan span) => (long)(span.TotalSeconds * _time.TimestampFrequency);

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;
}

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
public sealed class Membership
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

    /// <summary>
    /// How long a joiner waits for a member's view before it founds the membership with the other joiners or asks the
    /// API whether it is alone: one dead interval. Members answer a Join as it arrives, and it goes out three times an
    /// interval apart, so a member that hears it has answered by then.
    /// </summary>
    private TimeSpan JoinWait => _dead;

    /// <summary>A joiner asks at least every <see cref="MaxJoinBackoff"/>: one heard within this still asks.</summary>
    private TimeSpan CoJoinerFreshness => MaxJoinBackoff + JoinWait;

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

    private void OnBeat(Beat beat, MacAddress mac, long receivedAt, long now)
    {
        if (!_view.IsAlive(beat.From, beat.Epoch))
        {
            // A speaker beating with an epoch that is over here (it was found dead while frozen or cut off): tell it,
            // so it rejoins now rather than after its neighbours fall silent. At most once a dead interval.
            if (_state == MemberState.Member && _view.TryGet(beat.From, out var entry) && entry.Epoch == beat.Epoch && entry.Dead
                && (!_askedFor.TryGetValue(beat.From, out var told) || Elapsed(told, now) >= _dead))
            {
                _askedFor[beat.From] = now;
                _outbox.Add((new Suspect(_self, _epoch, ++_otherSequence, beat.From, beat.Epoch, _dead * 2), mac));
            }

            return;
        }

        _view.Apply(new ViewEntry(beat.From, beat.Epoch, false, mac), now);
        if (!_neighbors.TryGetValue(beat.From, out var neighbor) || neighbor.Epoch != beat.Epoch)
        {
            // It counts us among its neighbours and we do not: our views differ. Ask for its view, at most once a dead interval.
            if (!_askedFor.TryGetValue(beat.From, out var asked) || Elapsed(asked, now) >= _dead)
            {
                _askedFor[beat.From] = now;
                RequestView(mac);
            }

            return;
        }

        neighbor.LastHeard = Math.Max(neighbor.LastHeard ?? long.MinValue, receivedAt);
        neighbor.TheirDeadInterval = beat.DeadInterval;
        neighbor.TheirInterval = beat.Interval;
        neighbor.LastBeat = Math.Max(neighbor.LastBeat, beat.Sequence);
        if (beat.EchoEpoch == _epoch && _sent[beat.EchoSequence % SentHistory] is var (sequence, at) && sequence == beat.EchoSequence && sequence != 0)
        {
            neighbor.EchoedSentAt = Math.Max(neighbor.EchoedSentAt ?? long.MinValue, at);
        }

        neighbor.Mismatches = beat.Digest == _view.Digest ? 0 : neighbor.Mismatches + 1;
        if (neighbor.Mismatches >= Repeats && (neighbor.SyncRequestedAt is not { } requested || Elapsed(requested, now) >= _dead))
        {
            neighbor.SyncRequestedAt = now;
            RequestView(mac);
        }
    }

    private void OnJoin(Join join, MacAddress mac, long now)
    {
        // The epoch is the joiner's clock in ms: a Join from long ago is a replay, whatever it says.
        if ((long)join.Epoch < _time.GetUtcNow().ToUnixTimeMilliseconds() - (long)JoinFreshness.TotalMilliseconds)
        {
            return;
        }

        if (_view.TryGet(join.From, out var known) && (known.Epoch > join.Epoch || (known.Epoch == join.Epoch && known.Dead)))
        {
            return; // an epoch that is over
        }

        if (join.Joined)
        {
            if (_view.Apply(new ViewEntry(join.From, join.Epoch, false, mac), now))
            {
                Neighbors(now);
            }

            return;
        }

        if (_state == MemberState.Joining)
        {
            _coJoiners[join.From] = (join.Epoch, mac, now);
            return;
        }

        // Asking: those that would be its neighbours answer with their view, once for the Join and its repeats.
        if (_state == MemberState.Member && _view.NeighborsIfJoined(join.From, _count).Contains(_self)
            && (!_syncedTo.TryGetValue(join.From, out var last) || Elapsed(last, now) >= _interval * (Repeats + 1)))
        {
            _syncedTo[join.From] = now;
            SendView(join.From, join.Epoch, join.Sequence, mac);
        }
    }

    private void OnSuspect(Suspect suspect, long receivedAt, long now)
    {
        if (!_view.IsAlive(suspect.From, suspect.Epoch) || !_view.IsAlive(suspect.Subject, suspect.SubjectEpoch))
        {
            return;
        }

        var until = receivedAt + Ticks(suspect.Lifetime);
        if (suspect.Subject == _self && _neighbors.TryGetValue(suspect.From, out var neighbor))
        {
            // Heard a little later by us than by others: count it a while longer than they do.
            neighbor.SuspectsUsUntil = Math.Max(neighbor.SuspectsUsUntil, until + Ticks(_interval));
        }

        AddSuspicion(suspect.Subject, suspect.SubjectEpoch, suspect.From, until);
    }

    private void OnSync(Sync sync, long now)
    {
        if (sync.EchoEpoch != _epoch || !_requests.ContainsKey(sync.EchoSequence))
        {
            return; // not an answer to a request of ours: a replay, or for an epoch we left
        }

        foreach (var entry in sync.Entries)
        {
            if (entry.Name != _self)
            {
                _view.Apply(entry, now);
            }
            else if (entry.Epoch > _epoch || (entry.Epoch == _epoch && entry.Dead))
            {
                // Our current epoch is over in their eyes (found dead while we did not hear it): start a newer one.
                Rejoin(now, "rejoining: the view says this speaker's epoch is over", after: entry.Epoch);
                return;
            }
        }

        if (_state == MemberState.Joining)
        {
            BecomeMember(now);
        }
        else
        {
            Neighbors(now);
        }
    }

    /// <summary>Suspects the neighbours not heard within their dead interval, unless this speaker is the one that hears too little.</summary>
    private void Judge(long now)
    {
        if (_lastDrop is { } drop && Elapsed(drop, now) < _dead)
        {
            return; // frames were lost here: silence may be ours
        }

        // Heard lately, not merely within the dead interval: a node that went deaf stops hearing every neighbour at
        // once, and must know it before the first of them has been silent long enough to be suspected.
        var heard = _neighbors.Values.Count(n => Heard(n, now));
        if (heard < Half(_neighbors.Count))
        {
            // All or most neighbours silent at once (the only one, with one): this node may have stopped hearing rather
            // than they all died. It leaves and asks again; if nobody answers, the API decides whether it is alone.
            Rejoin(now, $"rejoining: heard only {heard} of {_neighbors.Count} ring neighbours within their dead interval");
            return;
        }

        foreach (var neighbor in _neighbors.Values.Where(n => Silent(n, now)))
        {
            var dead = DeadIntervalOf(neighbor);
            if (neighbor.SuspectedAt is not { } at || Elapsed(at, now) >= dead)
            {
                neighbor.SuspectedAt = now;
                var lifetime = dead * 2;
                Broadcast(new Suspect(_self, _epoch, 0, neighbor.Name, neighbor.Epoch, lifetime), repeats: 1);
                AddSuspicion(neighbor.Name, neighbor.Epoch, _self, now + Ticks(lifetime));
            }
        }
    }

    private void AddSuspicion(string subject, ulong epoch, string by, long until)
    {
        if (!_suspicions.TryGetValue(subject, out var suspicion) || suspicion.Epoch != epoch)
        {
            _suspicions[subject] = suspicion = (epoch, new Dictionary<string, long>(StringComparer.Ordinal));
        }

        suspicion.Until[by] = Math.Max(suspicion.Until.GetValueOrDefault(by), until);
    }

    /// <summary>Ends every epoch a majority of its neighbours suspect now (this speaker's own included: then it rejoins).</summary>
    private void Count(long now)
    {
        foreach (var (subject, (epoch, until)) in _suspicions.ToList())
        {
            if (!_view.IsAlive(subject, epoch))
            {
                _suspicions.Remove(subject);
                continue;
            }

            var watchers = _view.Neighbors(subject, _count);
            if (watchers.Count(w => until.TryGetValue(w, out var u) && u > now) < (watchers.Count / 2) + 1)
            {
                continue;
            }

            _suspicions.Remove(subject);
            if (subject == _self)
            {
                Rejoin(now, "rejoining: a majority of its ring neighbours stopped hearing this speaker");
                return;
            }

            _view.End(subject, epoch, now);
            Neighbors(now);
        }
    }

    /// <summary>
    /// Open while at least half of the neighbours echoed a beat we sent less than a dead interval ago (or are the first
    /// neighbours of a speaker that was alone, see <see cref="Neighbor.GraceUntil"/>) and do not suspect us; a member
    /// with no neighbours is alone and stays open.
    /// </summary>
    private void UpdateGate(long now)
    {
        long open;
        if (_state != MemberState.Member)
        {
            open = 0;
        }
        else if (_neighbors.Count == 0)
        {
            open = long.MaxValue;
        }
        else
        {
            var fresh = Ticks(_dead * 0.9);
            var until = _neighbors.Values
                .Select(n => n.SuspectsUsUntil > now ? 0 : Math.Max(n.EchoedSentAt is { } sent ? sent + fresh : 0, n.GraceUntil))
                .OrderDescending()
                .ToList();
            open = until[Half(_neighbors.Count) - 1];
        }

        Volatile.Write(ref _gateOpenUntil, open);
        if (open > now != _gateOpen)
        {
            _gateOpen = open > now;
            _stateVersion++; // readiness says whether it answers: a pass is due
        }
    }

    /// <summary>
    /// Nobody answered, and others asked to join while we did (the segment's speakers starting together): they hear
    /// each other, so they found the membership together, each with the others it heard. One that hears nobody
    /// founds nothing; it asks the API instead.
    /// </summary>
    private void Found(long now)
    {
        foreach (var (name, (epoch, mac, at)) in _coJoiners.Where(j => Elapsed(j.Value.At, now) < CoJoinerFreshness))
        {
            _view.Apply(new ViewEntry(name, epoch, false, mac), now);
        }

        BecomeMember(now);
    }

    private void BecomeMember(long now)
    {
        _coJoiners.Clear();
        _state = MemberState.Member;
        _aloneCheckDue = false;
        Note(null);
        Broadcast(new Join(_self, _epoch, 0, _interval, _dead, Joined: true), Repeats);
        Neighbors(now);
    }

    private void Note(string? why)
    {
        _why = why;
        _stateVersion++;
    }

    /// <summary>Leaves the current epoch (if it was a member) and joins again with a newer one.</summary>
    /// <param name="checkAloneAt">When to ask the API whether it is alone if nobody answers (by default after <see cref="JoinWait"/>).</param>
    private void Rejoin(long now, string why, ulong after = 0, long? checkAloneAt = null)
    {
        if (_epoch != 0)
        {
            if (_state == MemberState.Member)
            {
                Broadcast(new Leave(_self, _epoch, 0), Repeats);
            }

            _view.End(_self, _epoch, now);
        }

        _epoch = Math.Max(Math.Max((ulong)_time.GetUtcNow().ToUnixTimeMilliseconds(), _epoch + 1), after + 1);
        _view.Apply(new ViewEntry(_self, _epoch, false, default), now);
        _state = MemberState.Joining;
        Note(why);
        _neighbors.Clear();
        _coJoiners.Clear();
        _suspicions.Remove(_self);
        _repeats.RemoveAll(r => r.Message is Join);
        _nextAloneCheck = checkAloneAt ?? now + Ticks(JoinWait);
        _aloneChecks = 0;
        _joinsLeft = Repeats;
        _joinBackoff = JoinWait / 2;
        _aloneCheckDue = false;
        SendJoin(now);
    }

    /// <summary>Asks for the view: the first <see cref="Repeats"/> an interval apart, then with a backoff up to <see cref="MaxJoinBackoff"/>.</summary>
    private void SendJoin(long now)
    {
        var join = new Join(_self, _epoch, ++_otherSequence, _interval, _dead, Joined: false);
        _requests[join.Sequence] = now;
        _outbox.Add((join, MacAddress.Broadcast));
        _joinSentAt = now;
        if (_joinsLeft > 0)
        {
            _joinsLeft--;
        }
        else
        {
            _joinBackoff = Min(_joinBackoff * 2, MaxJoinBackoff);
        }
    }

    private void RequestView(MacAddress to)
    {
        var request = new SyncRequest(_self, _epoch, ++_otherSequence);
        _requests[request.Sequence] = _time.GetTimestamp();
        _outbox.Add((request, to));
    }

    private void SendView(string to, ulong epoch, ulong request, MacAddress mac)
    {
        var parts = LanFrames.SyncParts(_view.Entries, _self);
        for (var i = 0; i < parts.Count; i++)
        {
            _outbox.Add((new Sync(_self, _epoch, ++_otherSequence, epoch, request, i, parts.Count, parts[i]), mac));
        }
    }

    private void Broadcast(LanMessage message, int repeats)
    {
        _outbox.Add((message with { Sequence = ++_otherSequence }, MacAddress.Broadcast));
        if (repeats > 1)
        {
            _repeats.Add((message, MacAddress.Broadcast, repeats - 1));
        }
    }

    /// <summary>The ring neighbours after a view change: kept ones keep what we know of them, new ones start now.</summary>
    private void Neighbors(long now)
    {
        var names = _view.IsAlive(_self, _epoch) ? _view.Neighbors(_self, _count) : [];
        // A speaker that was alone, as the API confirmed, and is current, counts its first neighbours as hearing it
        // for a dead interval: they joined just now from its own view, and cannot suspect it sooner. Never otherwise:
        // a speaker whose view has drifted must not count on neighbours that may not count it alive.
        var grace = _aloneConfirmed && _neighbors.Count == 0 && _state == MemberState.Member && Current(now) ? now + Ticks(_dead * 0.9) : 0;
        if (names.Count > 0)
        {
            _aloneConfirmed = false;
        }
        else if (_state == MemberState.Member && !_aloneConfirmed)
        {
            // The last neighbour left or died: this node may as well be the one nobody hears (a mute or cut-off node
            // sees everyone leave). Alone only once the API says so, as for a joiner nobody answers.
            Rejoin(now, "rejoining: no other speaker left in its view", checkAloneAt: now);
            return;
        }

        foreach (var gone in _neighbors.Keys.Where(n => !names.Contains(n)).ToList())
        {
            _neighbors.Remove(gone);
        }

        foreach (var name in names)
        {
            var epoch = _view.AliveEpoch(name)!.Value;
            if (!_neighbors.TryGetValue(name, out var neighbor) || neighbor.Epoch != epoch)
            {
                _neighbors[name] = new Neighbor(name, epoch, now, grace);
            }
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

    private bool Silent(Neighbor neighbor, long now)
    {
        var dead = DeadIntervalOf(neighbor);
        return neighbor.LastHeard is { } heard ? Elapsed(heard, now) >= dead : Elapsed(neighbor.Since, now) >= dead * NeverHeardFactor;
    }

    /// <summary>
    /// Whether a neighbour's beats still come as they should: heard within two of its intervals and one of ours (beats
    /// wait up to one of ours to be read). A neighbour not heard yet counts as heard while it may still be starting.
    /// </summary>
    private bool Heard(Neighbor neighbor, long now) => neighbor.LastHeard is { } heard
        ? Elapsed(heard, now) <= (2 * (neighbor.TheirInterval > TimeSpan.Zero ? neighbor.TheirInterval : _interval)) + _interval
        : !Silent(neighbor, now);

    /// <summary>A neighbour is judged by the longer of its dead interval and ours, at most <see cref="MaxDeadInterval"/>.</summary>
    private TimeSpan DeadIntervalOf(Neighbor neighbor) => Min(neighbor.TheirDeadInterval > _dead ? neighbor.TheirDeadInterval : _dead, MaxDeadInterval);

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

namespace LbAllocator.Speaker.Lan;

/// <summary>Judging the ring neighbours and the answering gate (<see cref="Membership"/>).</summary>
public sealed partial class Membership
{
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
            // Runs on every message received: no allocation for the handful of neighbours.
            var fresh = Ticks(_dead * 0.9);
            Span<long> until = _neighbors.Count <= 16 ? stackalloc long[_neighbors.Count] : new long[_neighbors.Count];
            var i = 0;
            foreach (var n in _neighbors.Values)
            {
                until[i++] = n.SuspectsUsUntil > now ? 0 : Math.Max(n.EchoedSentAt is { } sent ? sent + fresh : 0, n.GraceUntil);
            }

            until.Sort();
            open = until[^Half(_neighbors.Count)];
        }

        Volatile.Write(ref _gateOpenUntil, open);
        if (open > now != _gateOpen)
        {
            _gateOpen = open > now;
            _stateVersion++; // readiness says whether it answers: a pass is due
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
}

namespace LbAllocator.Speaker.Lan;

/// <summary>Joining a segment's membership, and views asked for and sent (<see cref="Membership"/>).</summary>
public sealed partial class Membership
{
    /// <summary>
    /// How long a joiner waits for a member's view before it founds the membership with the other joiners or asks the
    /// API whether it is alone: one dead interval. Members answer a Join as it arrives, and it goes out three times an
    /// interval apart, so a member that hears it has answered by then.
    /// </summary>
    private TimeSpan JoinWait => _dead;

    /// <summary>A joiner asks at least every <see cref="MaxJoinBackoff"/>: one heard within this still asks.</summary>
    private TimeSpan CoJoinerFreshness => MaxJoinBackoff + JoinWait;

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
}

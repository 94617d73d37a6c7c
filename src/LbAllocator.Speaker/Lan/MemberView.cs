using LbAllocator.Core;

namespace LbAllocator.Speaker.Lan;

/// <summary>
/// The speakers on this segment as one speaker knows them: per node name its latest epoch and whether that epoch is
/// over. Views merge like a last-writer-wins set with an epoch as the clock: a newer epoch replaces an older one, and
/// the end of an epoch (left, or found dead) is final, so any two views that saw the same entries agree, whatever the
/// order. Ended epochs stay as tombstones for a while, so a replayed message of one cannot bring it back.
/// The ring (alive members ordered by a hash of their name) says who watches whom: each member's
/// <see cref="Neighbors"/>. Not thread-safe: <see cref="Membership"/> holds its lock.
/// </summary>
public sealed class MemberView(int capacity = MemberView.DefaultCapacity)
{
    /// <summary>More speakers than any one segment holds: the view refuses entries past it (every entry is signed, so only key holders add any).</summary>
    public const int DefaultCapacity = 10_000;

    private const string RingKey = "lballocator-ring";

    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly Dictionary<MacAddress, string> _byMac = []; // alive members' MACs

    // Alive members in ring order, kept sorted as they come and go: finding a member or where a joiner would stand is a
    // binary search, so a Join or a view change costs each speaker O(log n) plus a move of the list, not a sort of it.
    private readonly List<(ulong Position, string Name)> _ring = [];

    /// <summary>Bumped whenever the alive members change.</summary>
    public long Version { get; private set; }

    /// <summary>An order-free digest of the alive members and their epochs: two views with the same members have the same.</summary>
    public ulong Digest { get; private set; }

    public int AliveCount { get; private set; }

    public IEnumerable<string> Alive => _entries.Values.Where(e => !e.Dead).Select(e => e.Name);

    public bool TryGet(string name, out ViewEntry entry)
    {
        var found = _entries.TryGetValue(name, out var e);
        entry = found ? e!.ToEntry() : default;
        return found;
    }

    /// <summary>The alive member that sends from <paramref name="mac"/>, if any.</summary>
    public string? NameOf(MacAddress mac) => _byMac.GetValueOrDefault(mac);

    public bool IsAlive(string name, ulong epoch) => _entries.TryGetValue(name, out var e) && e.Epoch == epoch && !e.Dead;

    /// <summary>The epoch of an alive member, or null.</summary>
    public ulong? AliveEpoch(string name) => _entries.TryGetValue(name, out var e) && !e.Dead ? e.Epoch : null;

    public IReadOnlyList<ViewEntry> Entries => [.. _entries.Values.Select(e => e.ToEntry())];

    /// <summary>Merges one entry; true when the alive members changed. <paramref name="at"/> stamps an epoch that ends now.</summary>
    public bool Apply(ViewEntry entry, long at)
    {
        var before = _entries.TryGetValue(entry.Name, out var was) ? (was.Mac, was.Dead) : (default, true);
        var changed = Merge(entry, at);
        if (_entries.TryGetValue(entry.Name, out var now) && (now.Mac, now.Dead) != before)
        {
            if (!before.Dead && _byMac.GetValueOrDefault(before.Mac) == entry.Name)
            {
                _byMac.Remove(before.Mac);
            }

            if (!now.Dead && now.Mac != default)
            {
                _byMac[now.Mac] = entry.Name;
            }
        }

        return changed;
    }

    private bool Merge(ViewEntry entry, long at)
    {
        if (!_entries.TryGetValue(entry.Name, out var known))
        {
            if (_entries.Count >= capacity)
            {
                return false;
            }

            _entries[entry.Name] = new Entry(entry.Name, entry.Epoch, entry.Dead, entry.Mac, entry.Dead ? at : null);
            return Changed(entry.Dead ? null : (entry.Name, entry.Epoch), null);
        }

        if (entry.Epoch > known.Epoch)
        {
            var was = known.Dead ? ((string, ulong)?)null : (known.Name, known.Epoch);
            (known.Epoch, known.Dead, known.Mac, known.EndedAt) = (entry.Epoch, entry.Dead, entry.Mac, entry.Dead ? at : null);
            return Changed(entry.Dead ? null : (entry.Name, entry.Epoch), was);
        }

        if (entry.Epoch == known.Epoch && entry.Dead && !known.Dead)
        {
            (known.Dead, known.EndedAt) = (true, at);
            return Changed(null, (known.Name, known.Epoch));
        }

        if (entry.Epoch == known.Epoch && !known.Dead && entry.Mac != default)
        {
            known.Mac = entry.Mac;
        }

        return false;
    }

    /// <summary>Ends an alive member's epoch (it left, or a majority of its neighbours no longer hears it); true when it was alive.</summary>
    public bool End(string name, ulong epoch, long at) => Apply(new ViewEntry(name, epoch, Dead: true, default), at);

    /// <summary>Forgets tombstones that ended before <paramref name="before"/>: by then no replay of theirs is taken anyway.</summary>
    public void Forget(long before)
    {
        foreach (var gone in _entries.Values.Where(e => e.Dead && e.EndedAt < before).Select(e => e.Name).ToList())
        {
            _entries.Remove(gone);
        }
    }

    /// <summary>
    /// The members that watch <paramref name="name"/> and that it watches: the <paramref name="count"/> alive members
    /// nearest it on the ring, half before and half after (all of them when there are no more). The relation is
    /// symmetric for anyone with the same view. Empty when <paramref name="name"/> is not alive.
    /// </summary>
    public IReadOnlyList<string> Neighbors(string name, int count)
    {
        var at = _ring.BinarySearch((Position(name), name), RingOrder);
        return at < 0 ? [] : Around(at, inserted: false, count);
    }

    /// <summary>The neighbours <paramref name="name"/> would have if it were alive: who answers a speaker asking to join.</summary>
    public IReadOnlyList<string> NeighborsIfJoined(string name, int count)
    {
        var at = _ring.BinarySearch((Position(name), name), RingOrder);
        return at >= 0 ? Around(at, inserted: false, count) : Around(~at, inserted: true, count);
    }

    /// <summary>
    /// The <paramref name="count"/> members around ring index <paramref name="at"/>, half before and half after; when
    /// <paramref name="inserted"/>, around one that would stand at <paramref name="at"/> (before the member there now).
    /// </summary>
    private List<string> Around(int at, bool inserted, int count)
    {
        var others = inserted ? _ring.Count : _ring.Count - 1;
        if (others <= count)
        {
            return [.. _ring.Where((_, i) => inserted || i != at).Select(r => r.Name)];
        }

        var n = _ring.Count;
        var result = new List<string>(count);
        for (var i = 1; i <= count / 2; i++)
        {
            result.Add(_ring[(at + n - i) % n].Name);
        }

        var after = inserted ? at : at + 1; // the first member after it
        for (var i = 0; i < count - (count / 2); i++)
        {
            result.Add(_ring[(after + i) % n].Name);
        }

        return result;
    }

    private static ulong Position(string name) => Election.Score(name, RingKey);

    private static readonly Comparer<(ulong Position, string Name)> RingOrder =
        Comparer<(ulong Position, string Name)>.Create((a, b) => a.Position != b.Position ? a.Position.CompareTo(b.Position) : string.CompareOrdinal(a.Name, b.Name));

    private static ulong Hash(string name, ulong epoch) => Election.Score(name, epoch.ToString(System.Globalization.CultureInfo.InvariantCulture));

    private bool Changed((string Name, ulong Epoch)? added, (string Name, ulong Epoch)? removed)
    {
        if (added is null && removed is null)
        {
            return false;
        }

        if (removed is { } r)
        {
            Digest ^= Hash(r.Name, r.Epoch);
            AliveCount--;
            _ring.RemoveAt(_ring.BinarySearch((Position(r.Name), r.Name), RingOrder));
        }

        if (added is { } a)
        {
            Digest ^= Hash(a.Name, a.Epoch);
            AliveCount++;
            _ring.Insert(~_ring.BinarySearch((Position(a.Name), a.Name), RingOrder), (Position(a.Name), a.Name));
        }

        Version++;
        return true;
    }

    private sealed class Entry(string name, ulong epoch, bool dead, MacAddress mac, long? endedAt)
    {
        public string Name { get; } = name;

        public ulong Epoch { get; set; } = epoch;

        public bool Dead { get; set; } = dead;

        public MacAddress Mac { get; set; } = mac;

        public long? EndedAt { get; set; } = endedAt;

        public ViewEntry ToEntry() => new(Name, Epoch, Dead, Mac);
    }
}

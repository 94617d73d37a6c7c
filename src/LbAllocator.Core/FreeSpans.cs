namespace LbAllocator.Core;

/// <summary>
/// The free addresses of one range as a sorted set of maximal runs, so that memory grows with the number
/// of allocations (not the size of the range: a /64 is one run) and every operation is O(log n).
/// Runs start and end on usable addresses; with avoidBuggyIPs the .0/.255 addresses inside a run are
/// skipped when a run is cut.
/// </summary>
internal sealed class FreeSpans
{
    private readonly SortedSet<Span> _spans = new(SpanComparer.Instance);
    private readonly bool _avoidBuggy;

    public FreeSpans(IpRange range, bool avoidBuggy)
    {
        Range = range;
        _avoidBuggy = avoidBuggy && range.Family == IpFamily.IPv4;
        Usable = range.Count - (_avoidBuggy ? BuggyIps.CountIn(range) : 0);
        AddTrimmed(range.First.Value, range.Last.Value);
    }

    public IpRange Range { get; }

    /// <summary>Addresses this range gives out.</summary>
    public UInt128 Usable { get; }

    public UInt128 Taken { get; private set; }

    public bool IsUsable(Ip ip) => Range.Contains(ip) && !(_avoidBuggy && BuggyIps.IsBuggy(ip));

    public bool TryLowest(out Ip ip)
    {
        if (_spans.Count == 0)
        {
            ip = default;
            return false;
        }

        ip = new Ip(Range.Family, _spans.Min.Start);
        return true;
    }

    public bool IsFree(Ip ip) => IsUsable(ip) && Containing(ip.Value) is not null;

    /// <summary>Marks a usable free address taken.</summary>
    public void Take(Ip ip)
    {
        var span = Containing(ip.Value) ?? throw new InvalidOperationException($"{ip} is not free");
        _spans.Remove(span);
        if (ip.Value > span.Start)
        {
            AddTrimmed(span.Start, ip.Value - 1);
        }

        if (ip.Value < span.End)
        {
            AddTrimmed(ip.Value + 1, span.End);
        }

        Taken++;
    }

    /// <summary>Returns a taken address, merging it with the runs on either side.</summary>
    public void Release(Ip ip)
    {
        var value = ip.Value;
        var start = value;
        var end = value;
        // Neighbours are adjacent when only skipped (buggy) addresses lie between them.
        if (value > 0 && AtOrBefore(value - 1) is { } left && NextUsable(left.End + 1) == value)
        {
            start = left.Start;
            _spans.Remove(left);
        }

        if (value < Range.Last.Value && After(value) is { } right && NextUsable(value + 1) == right.Start)
        {
            end = right.End;
            _spans.Remove(right);
        }

        _spans.Add(new Span(start, end));
        Taken--;
    }

    public int SpanCount => _spans.Count;

    private void AddTrimmed(UInt128 start, UInt128 end)
    {
        if (_avoidBuggy)
        {
            start = NextUsable(start);
            end = PreviousUsable(end);
        }

        if (start <= end && start >= Range.First.Value && end <= Range.Last.Value)
        {
            _spans.Add(new Span(start, end));
        }
    }

    // For IPv4 only (values below 2^32), so +2 cannot overflow and -2 is guarded.
    private UInt128 NextUsable(UInt128 v) => !_avoidBuggy ? v : (uint)(v & 0xFF) switch { 0 => v + 1, 0xFF => v + 2, _ => v };

    // Wraps to UInt128.MaxValue below zero, which AddTrimmed then rejects as outside the range.
    private UInt128 PreviousUsable(UInt128 v) => !_avoidBuggy ? v : (uint)(v & 0xFF) switch
    {
        0xFF => v - 1,
        0 => v >= 2 ? v - 2 : UInt128.MaxValue,
        _ => v,
    };

    private Span? Containing(UInt128 value) => AtOrBefore(value) is { } s && s.End >= value ? s : null;

    /// <summary>The last run starting at or below <paramref name="value"/>.</summary>
    private Span? AtOrBefore(UInt128 value)
    {
        var max = _spans.GetViewBetween(new Span(0, 0), new Span(value, 0)).Max;
        return max.Present ? max : null;
    }

    /// <summary>The run starting first after <paramref name="value"/> (strictly above).</summary>
    private Span? After(UInt128 value)
    {
        if (value == UInt128.MaxValue)
        {
            return null;
        }

        var min = _spans.GetViewBetween(new Span(value + 1, 0), new Span(UInt128.MaxValue, 0)).Min;
        return min.Present ? min : null;
    }

    // Present is false only for default(Span), which is what Min/Max of an empty view return;
    // Count is avoided on views because it walks them.
    private readonly record struct Span(UInt128 Start, UInt128 End, bool Present = true);

    private sealed class SpanComparer : IComparer<Span>
    {
        public static readonly SpanComparer Instance = new();

        public int Compare(Span x, Span y) => x.Start.CompareTo(y.Start);
    }
}

using LbAllocator.Core;

namespace LbAllocator.Speaker;

/// <summary>
/// Announces every owned (address, interface) again once per refresh interval, besides the burst at takeover, so a
/// switch that ages a quiet address out of its table (often after 300 s) never forgets where it lives. In address
/// order, one pair interval / n after the previous one (n pairs owned now): n frames spread evenly over the
/// interval, never a burst of all of them. With more pairs than seconds in the interval, a step is a second and
/// takes n / interval pairs on average (each pair still once per interval): each step wakes the process, and a few
/// frames at once cost less than a wake-up each. A pair taken over joins the round; one given up leaves it.
/// </summary>
public sealed class GratuitousRefresh : IDisposable
{
    private static readonly IComparer<(Ip Address, string Interface)> Order = Comparer<(Ip Address, string Interface)>.Create(
        (a, b) => a.Address != b.Address ? a.Address.CompareTo(b.Address) : string.CompareOrdinal(a.Interface, b.Interface));

    private static readonly TimeSpan ShortestStep = TimeSpan.FromSeconds(1);

    private readonly IAnswerer _announcer;
    private readonly TimeSpan _interval;
    private readonly ITimer? _timer; // null when refreshing is off
    private readonly Lock _lock = new();
    private (Ip Address, string Interface)[] _owned = [];
    private (Ip Address, string Interface)? _last; // the pair announced last: the round goes on after it
    private long _owed; // with one-second steps: pairs due, times the interval's ticks; whole pairs go out at each step
    private bool _armed;
    private bool _disposed;

    /// <param name="interval">Each pair once per this; zero turns refreshing off.</param>
    public GratuitousRefresh(IAnswerer announcer, TimeSpan interval, TimeProvider time)
    {
        _announcer = announcer;
        _interval = interval;
        if (interval > TimeSpan.Zero)
        {
            _timer = time.CreateTimer(_ => Tick(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>The (address, interfaces) owned now, as the plan says; the round follows it from its next step.</summary>
    public void Track(IReadOnlyDictionary<Ip, string[]> owned)
    {
        if (_timer is null)
        {
            return;
        }

        var pairs = owned.SelectMany(kv => kv.Value.Select(i => (kv.Key, i))).ToArray();
        Array.Sort(pairs, Order);
        lock (_lock)
        {
            _owned = pairs;
            if (!_armed && !_disposed && pairs.Length > 0)
            {
                _armed = true;
                _timer.Change(Step(pairs.Length), Timeout.InfiniteTimeSpan);
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
        }

        _timer?.Dispose();
    }

    private TimeSpan Step(int pairs) => _interval / pairs > ShortestStep ? _interval / pairs : ShortestStep;

    /// <summary>Pairs announced at this step: one, or with one-second steps those due by now (the count repeats each interval).</summary>
    private int PairsThisStep(int pairs)
    {
        if (Step(pairs) > ShortestStep)
        {
            return 1;
        }

        _owed += pairs * ShortestStep.Ticks;
        var count = (int)Math.Min(_owed / _interval.Ticks, pairs);
        _owed -= count * _interval.Ticks;
        return count;
    }

    private void Tick()
    {
        var next = new List<(Ip Address, string Interface)>();
        lock (_lock)
        {
            if (_owned.Length == 0 || _disposed)
            {
                _armed = false; // idle until something is owned again
                return;
            }

            var at = _last is { } last ? Array.BinarySearch(_owned, last, Order) : -1;
            // After the last one announced, whether it is still owned (found) or not (where it would be).
            var index = at >= 0 ? at + 1 : _last is null ? 0 : ~at;
            for (var i = PairsThisStep(_owned.Length); i > 0; i--)
            {
                next.Add(_owned[index++ % _owned.Length]);
            }

            _last = next[^1];
            _timer!.Change(Step(_owned.Length), Timeout.InfiniteTimeSpan);
        }

        foreach (var (address, name) in next)
        {
            // False when it went meanwhile, or has no capture there: nothing to announce then.
            _ = _announcer.AnnounceGratuitously(address, name);
        }
    }
}

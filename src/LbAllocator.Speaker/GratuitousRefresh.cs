using LbAllocator.Core;

namespace LbAllocator.Speaker;

/// <summary>
/// Announces every owned (address, interface) again once per refresh interval, besides the burst at takeover, so a
/// switch that ages a quiet address out of its table (often after 300 s) never forgets where it lives. One pair at a
/// time, in address order, interval / n after the previous one (n pairs owned now): n frames spread evenly over
/// the interval, never a burst of all of them. A pair taken over joins the round; one given up leaves it.
/// </summary>
public sealed class GratuitousRefresh : IDisposable
{
    private static readonly IComparer<(Ip Address, string Interface)> Order = Comparer<(Ip Address, string Interface)>.Create(
        (a, b) => a.Address != b.Address ? a.Address.CompareTo(b.Address) : string.CompareOrdinal(a.Interface, b.Interface));

    private readonly IAnnouncer _announcer;
    private readonly TimeSpan _interval;
    private readonly ITimer? _timer; // null when refreshing is off
    private readonly Lock _lock = new();
    private (Ip Address, string Interface)[] _owned = [];
    private (Ip Address, string Interface)? _last; // the pair announced last: the round goes on after it
    private bool _armed;
    private bool _disposed;

    /// <param name="interval">Each pair once per this; zero turns refreshing off.</param>
    public GratuitousRefresh(IAnnouncer announcer, TimeSpan interval, TimeProvider time)
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

    private TimeSpan Step(int pairs) => _interval / pairs;

    private void Tick()
    {
        (Ip Address, string Interface) next;
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
            next = _owned[index < _owned.Length ? index : 0];
            _last = next;
            _timer!.Change(Step(_owned.Length), Timeout.InfiniteTimeSpan);
        }

        // False when it went meanwhile, or has no capture there: nothing to announce then.
        _ = _announcer.AnnounceGratuitously(next.Address, next.Interface);
    }
}

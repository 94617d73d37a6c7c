using System.Threading.Channels;
using Microsoft.Extensions.Time.Testing;

namespace LbAllocator.Kubernetes.Tests;

/// <summary>
/// A fake clock that tells each timer it is asked for (every Task.Delay on it makes one) with its due time: a test
/// waits for the code under test to start waiting, reads how long it waits, then moves the clock exactly that far.
/// </summary>
internal sealed class TimerClock : FakeTimeProvider
{
    private readonly Channel<TimeSpan> _timers = Channel.CreateUnbounded<TimeSpan>();

    public TimerClock()
        : base(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero))
    {
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = base.CreateTimer(callback, state, dueTime, period);
        _timers.Writer.TryWrite(dueTime);
        return timer;
    }

    /// <summary>The due time of the next timer made (waits for it).</summary>
    public async Task<TimeSpan> NextTimerAsync(CancellationToken cancellationToken) => await _timers.Reader.ReadAsync(cancellationToken);

    /// <summary>Waits for the next timer, checks its due time, and moves the clock to it.</summary>
    public async Task ElapseNextAsync(TimeSpan expected, CancellationToken cancellationToken)
    {
        Assert.Equal(expected, await NextTimerAsync(cancellationToken));
        Advance(expected);
    }

    /// <summary>No timer was made since the last one read.</summary>
    public bool NoTimers => !_timers.Reader.TryPeek(out _);
}

/// <summary>Randomness that draws the given fractions in turn (the last one again and again), and records what it drew.</summary>
internal sealed class ScriptedRandom(params double[] fractions) : Random
{
    private readonly Random? _seeded;
    private int _next;

    /// <summary>Seeded draws, recorded.</summary>
    public ScriptedRandom(int seed)
        : this([]) => _seeded = new Random(seed);

    public List<double> Drawn { get; } = [];

    public override double NextDouble()
    {
        var value = _seeded?.NextDouble() ?? fractions[Math.Min(_next++, fractions.Length - 1)];
        Drawn.Add(value);
        return value;
    }
}

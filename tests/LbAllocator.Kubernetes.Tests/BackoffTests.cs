using LbAllocator.Kubernetes.Watching;

namespace LbAllocator.Kubernetes.Tests;

public sealed class BackoffTests
{
    private static readonly TimeSpan Initial = TimeSpan.FromMilliseconds(800);
    private static readonly TimeSpan Max = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Reset = TimeSpan.FromMinutes(2);

    /// <summary>Two minutes without a failure and the step is back to 800 ms; a failure sooner keeps doubling it.</summary>
    [Fact]
    public void The_step_starts_again_after_two_minutes_without_a_failure()
    {
        var clock = new TimerClock();
        var backoff = new Backoff(Initial, Max, Reset, clock, new ScriptedRandom(0.5));

        Assert.Equal(TimeSpan.FromMilliseconds(400), backoff.Next());
        clock.Advance(Reset - TimeSpan.FromTicks(1));
        Assert.Equal(TimeSpan.FromMilliseconds(800), backoff.Next());
        clock.Advance(Reset);
        Assert.Equal(TimeSpan.FromMilliseconds(400), backoff.Next());
        Assert.Equal(TimeSpan.FromMilliseconds(1600), backoff.Step);
    }

    /// <summary>
    /// Full jitter: the delays cover all of [0, step), not a band near the step, so clients that failed together
    /// come back spread over the whole interval.
    /// </summary>
    [Fact]
    public void Delays_cover_zero_to_the_step()
    {
        var clock = new TimerClock();
        var backoff = new Backoff(Initial, Max, Reset, clock, new Random(3));

        var delays = Enumerable.Range(0, 10_000).Select(_ =>
        {
            clock.Advance(Reset); // the step stays at 800 ms
            return backoff.Next();
        }).ToList();

        Assert.All(delays, d => Assert.InRange(d, TimeSpan.Zero, Initial - TimeSpan.FromTicks(1)));
        Assert.True(delays.Min() < TimeSpan.FromMilliseconds(8));
        Assert.True(delays.Max() > TimeSpan.FromMilliseconds(792));
        Assert.InRange(delays.Average(d => d.TotalMilliseconds), 390, 410);
    }
}

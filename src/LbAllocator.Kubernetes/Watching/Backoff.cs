namespace LbAllocator.Kubernetes.Watching;

/// <summary>
/// Backoff after failures, with client-go's reflector's numbers by default: each failure waits a random time in
/// [0, step) ("full jitter", so clients that failed together come back spread out), the step doubling from
/// <c>initial</c> up to <c>max</c>; after <c>reset</c> without a failure the step starts again from <c>initial</c>.
/// </summary>
public sealed class Backoff(TimeSpan initial, TimeSpan max, TimeSpan reset, TimeProvider time, Random random)
{
    private TimeSpan _step; // zero: not failed yet
    private long? _lastFailure;

    /// <summary>The step the next failure draws its delay from.</summary>
    public TimeSpan Step => _lastFailure is not { } at || time.GetElapsedTime(at) >= reset ? initial : _step;

    /// <summary>A failure: the delay to wait before trying again, in whole milliseconds (what timers count in).</summary>
    public TimeSpan Next()
    {
        var step = Step;
        _lastFailure = time.GetTimestamp();
        _step = TimeSpan.FromTicks(Math.Min(max.Ticks, step.Ticks * 2));
        return TimeSpan.FromMilliseconds(Math.Floor(step.TotalMilliseconds * random.NextDouble()));
    }
}

namespace LbAllocator.Kubernetes.Client;

/// <summary>
/// A token bucket (golang.org/x/time/rate, as client-go's flowcontrol uses it): it holds up to <c>burst</c> tokens and
/// refills at <c>qps</c> a second; each request takes one, waiting for it when none is left. Tokens are reserved in
/// arrival order, so waiters start one every 1/qps seconds.
/// </summary>
public sealed class TokenBucket
{
    private readonly Lock _lock = new();
    private readonly double _qps;
    private readonly int _burst;
    private readonly TimeProvider _time;
    private double _tokens; // negative: reserved by waiting requests
    private long _at;

    public TokenBucket(double qps, int burst, TimeProvider time)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(qps);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(burst);
        _qps = qps;
        _burst = burst;
        _time = time;
        _tokens = burst;
        _at = time.GetTimestamp();
    }

    /// <summary>Takes a token, waiting until it is due; returns the wait. A cancelled wait gives its token back.</summary>
    public async ValueTask<TimeSpan> TakeAsync(CancellationToken cancellationToken)
    {
        var wait = Reserve();
        if (wait <= TimeSpan.Zero)
        {
            return TimeSpan.Zero;
        }

        try
        {
            await Task.Delay(wait, _time, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            lock (_lock)
            {
                _tokens = Math.Min(_burst, _tokens + 1);
            }

            throw;
        }

        return wait;
    }

    /// <summary>Takes a token now, the bucket going into debt if need be; returns how long until that token is due.</summary>
    public TimeSpan Reserve()
    {
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            _tokens = Math.Min(_burst, _tokens + (_time.GetElapsedTime(_at, now).TotalSeconds * _qps));
            _at = now;
            _tokens -= 1;
            return _tokens >= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(-_tokens / _qps);
        }
    }
}

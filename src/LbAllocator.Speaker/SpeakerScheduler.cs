using LbAllocator.Hosting;

namespace LbAllocator.Speaker;

/// <summary>
/// The heartbeat thread: every heartbeat interval it runs the membership's tick (read the beats that came, judge the
/// neighbours, beat to them), on a thread of its own so that a starved thread pool cannot make this node look dead
/// (the DaemonSet's priority class and CPU request keep the process itself from being starved); and once a second it
/// asks the pass loop to show that it still turns. Both report to the health checks: a thread or loop stuck for two
/// seconds makes /healthz fail.
/// </summary>
public sealed class SpeakerScheduler : IDisposable
{
    public const string HeartbeatLoop = "heartbeat";

    private static readonly TimeSpan MaxSilence = TimeSpan.FromSeconds(2);

    private readonly TimeSpan _interval;
    private readonly Action _tick;
    private readonly Action _everySecond;
    private readonly Health _health;
    private readonly CancellationTokenSource _stop = new();
    private readonly AutoResetEvent _wake = new(false);
    private Thread? _thread;

    /// <param name="tick">The membership's tick, every <paramref name="interval"/>.</param>
    /// <param name="everySecond">Asks the pass loop to report that it turns.</param>
    public SpeakerScheduler(TimeSpan interval, Action tick, Action everySecond, Health health)
    {
        _interval = interval;
        _tick = tick;
        _everySecond = everySecond;
        _health = health;
    }

    public void Start()
    {
        _thread = new Thread(Run) { IsBackground = true, Name = HeartbeatLoop };
        _thread.Start();
    }

    /// <summary>Stops the thread; no tick runs after this returns.</summary>
    public void Stop()
    {
        _stop.Cancel();
        _wake.Set();
        _thread?.Join();
        _health.Stopped(HeartbeatLoop);
    }

    public void Dispose()
    {
        _stop.Dispose();
        _wake.Dispose();
    }

    private void Run()
    {
        var next = DateTime.UtcNow;
        var second = next;
        while (!_stop.IsCancellationRequested)
        {
            _health.Beat(HeartbeatLoop, MaxSilence > _interval * 4 ? MaxSilence : _interval * 4);
            _tick();
            var now = DateTime.UtcNow;
            if (now >= second)
            {
                second = now + TimeSpan.FromSeconds(1);
                _everySecond();
            }

            // The next tick an interval after the last one was due, not after this one ended; never more than one late.
            next = next + _interval > now ? next + _interval : now + _interval;
            var wait = next - DateTime.UtcNow;
            if (wait > TimeSpan.Zero)
            {
                _ = _wake.WaitOne(TimeSpan.FromMilliseconds(Math.Ceiling(wait.TotalMilliseconds)));
            }
        }
    }
}

namespace LbAllocator.Kubernetes.Watching;

/// <summary>
/// A queue of keys to reconcile, after client-go's workqueue: a key is queued at most once however often
/// it is added; a key being processed is not handed out again until Done, and if it was added meanwhile it
/// is queued again then; failures are retried with per-key exponential backoff.
/// </summary>
public sealed class WorkQueue<T> : IDisposable where T : notnull
{
    private readonly Lock _lock = new();
    private readonly Queue<T> _queue = new();
    private readonly HashSet<T> _dirty = [];
    private readonly HashSet<T> _processing = [];
    private readonly Dictionary<T, int> _failures = [];
    private readonly SemaphoreSlim _ready = new(0);
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _shutdown = new();

    public WorkQueue(TimeSpan? baseDelay = null, TimeSpan? maxDelay = null, TimeProvider? time = null)
    {
        BaseDelay = baseDelay ?? TimeSpan.FromMilliseconds(5);
        MaxDelay = maxDelay ?? TimeSpan.FromSeconds(300);
        _time = time ?? TimeProvider.System;
    }

    public TimeSpan BaseDelay { get; }
    public TimeSpan MaxDelay { get; }

    /// <summary>Keys waiting to be handed out.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _queue.Count;
            }
        }
    }

    /// <summary>Nothing queued and nothing being handled: what a test waits for after it changed something.</summary>
    public bool Idle
    {
        get
        {
            lock (_lock)
            {
                return _queue.Count == 0 && _processing.Count == 0;
            }
        }
    }

    public void Add(T key)
    {
        lock (_lock)
        {
            if (!_dirty.Add(key) || _processing.Contains(key))
            {
                return; // already queued, or queued again when its processing is Done
            }

            _queue.Enqueue(key);
        }

        _ready.Release();
    }

    /// <summary>Adds the key after a delay that doubles with each failure of that key since it was last forgotten.</summary>
    public TimeSpan AddRateLimited(T key)
    {
        TimeSpan delay;
        lock (_lock)
        {
            var failures = _failures.GetValueOrDefault(key);
            _failures[key] = failures + 1;
            var factor = Math.Pow(2, Math.Min(failures, 62));
            delay = TimeSpan.FromTicks((long)Math.Min(MaxDelay.Ticks, BaseDelay.Ticks * factor));
        }

        AddAfter(key, delay);
        return delay;
    }

    public void AddAfter(T key, TimeSpan delay)
    {
        if (delay <= TimeSpan.Zero)
        {
            Add(key);
            return;
        }

        _ = DelayedAdd(key, delay);
    }

    /// <summary>Clears the key's failure count after it was processed successfully.</summary>
    public void Forget(T key)
    {
        lock (_lock)
        {
            _failures.Remove(key);
        }
    }

    public int Failures(T key)
    {
        lock (_lock)
        {
            return _failures.GetValueOrDefault(key);
        }
    }

    /// <summary>Waits for the next key; the caller must call <see cref="Done"/> with it.</summary>
    public async Task<T> TakeAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            await _ready.WaitAsync(cancellationToken);
            lock (_lock)
            {
                if (_queue.TryDequeue(out var key))
                {
                    _dirty.Remove(key);
                    _processing.Add(key);
                    return key;
                }
            }
        }
    }

    /// <summary>
    /// One worker, until cancelled: takes each key, handles it, then forgets its failures, or on failure queues it
    /// again after the key's backoff (told to <paramref name="onRetry"/> with the delay); always marks it Done.
    /// A failure while stopping is neither retried nor told: the worker just ends.
    /// </summary>
    public async Task ProcessAsync(Func<T, CancellationToken, Task> handle, Action<T, Exception, TimeSpan> onRetry, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            T key;
            try
            {
                key = await TakeAsync(cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }

            try
            {
                await handle(key, cancellationToken);
                Forget(key);
            }
            catch (Exception) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                onRetry(key, e, AddRateLimited(key));
            }
            finally
            {
                Done(key);
            }
        }
    }

    public void Done(T key)
    {
        var requeue = false;
        lock (_lock)
        {
            _processing.Remove(key);
            if (_dirty.Contains(key))
            {
                _queue.Enqueue(key);
                requeue = true;
            }
        }

        if (requeue)
        {
            _ready.Release();
        }
    }

    public void Dispose()
    {
        _shutdown.Cancel();
        _shutdown.Dispose();
        _ready.Dispose();
    }

    private async Task DelayedAdd(T key, TimeSpan delay)
    {
        try
        {
            await Task.Delay(delay, _time, _shutdown.Token);
            Add(key);
        }
        catch (OperationCanceledException)
        {
            // The queue was disposed: nobody will take the key any more.
        }
        catch (ObjectDisposedException)
        {
        }
    }
}

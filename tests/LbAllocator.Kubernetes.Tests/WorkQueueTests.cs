using LbAllocator.Kubernetes.Watching;

namespace LbAllocator.Kubernetes.Tests;

/// <summary>The one worker loop every queue of the project runs (<see cref="WorkQueue{T}.ProcessAsync"/>).</summary>
public class WorkQueueTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task A_failed_key_is_retried_with_growing_backoff_and_forgotten_once_it_succeeds()
    {
        using var queue = new WorkQueue<string>(baseDelay: TimeSpan.FromMilliseconds(1));
        using var stop = new CancellationTokenSource();
        var attempts = 0;
        var retries = new List<(string Key, string Error, TimeSpan Delay)>();
        var succeeded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var worker = queue.ProcessAsync(
            (key, _) =>
            {
                if (++attempts < 3)
                {
                    throw new InvalidOperationException($"attempt {attempts}");
                }

                succeeded.SetResult();
                return Task.CompletedTask;
            },
            (key, e, delay) => retries.Add((key, e.Message, delay)),
            stop.Token);

        queue.Add("a");
        await succeeded.Task.WaitAsync(Timeout);

        Assert.Equal([("a", "attempt 1", TimeSpan.FromMilliseconds(1)), ("a", "attempt 2", TimeSpan.FromMilliseconds(2))], retries);
        await Eventually(() => queue.Failures("a") == 0);
        await stop.CancelAsync();
        await worker.WaitAsync(Timeout); // ends quietly when cancelled
    }

    [Fact]
    public async Task A_key_added_while_it_is_processed_is_processed_again_after_and_never_twice_at_once()
    {
        using var queue = new WorkQueue<string>();
        using var stop = new CancellationTokenSource();
        var running = 0;
        var most = 0;
        var runs = 0;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async Task Handle(string key, CancellationToken token)
        {
            most = Math.Max(most, Interlocked.Increment(ref running));
            Interlocked.Increment(ref runs);
            started.TrySetResult();
            await release.Task;
            Interlocked.Decrement(ref running);
        }

        var workers = Enumerable.Range(0, 2).Select(_ => queue.ProcessAsync(Handle, (_, _, _) => { }, stop.Token)).ToList();
        queue.Add("a");
        await started.Task.WaitAsync(Timeout);
        queue.Add("a");
        release.SetResult();

        await Eventually(() => Volatile.Read(ref runs) == 2 && Volatile.Read(ref running) == 0);
        Assert.Equal(1, most);
        await stop.CancelAsync();
        await Task.WhenAll(workers).WaitAsync(Timeout);
    }

    [Fact]
    public async Task A_failure_while_stopping_is_neither_retried_nor_told()
    {
        using var queue = new WorkQueue<string>();
        using var stop = new CancellationTokenSource();
        var told = false;
        var worker = queue.ProcessAsync(
            async (_, token) =>
            {
                await stop.CancelAsync();
                token.ThrowIfCancellationRequested();
            },
            (_, _, _) => told = true,
            stop.Token);

        queue.Add("a");
        await worker.WaitAsync(Timeout);

        Assert.False(told);
        Assert.Equal(0, queue.Failures("a"));
        Assert.Equal(0, queue.Count);
    }

    private static async Task Eventually(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out");
            await Task.Delay(5);
        }
    }
}

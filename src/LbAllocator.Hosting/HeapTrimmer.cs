using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Hosting;

/// <summary>
/// Gives the memory a burst left behind back to the system. A burst (the first lists, a thousand Services created at
/// once) makes the GC commit regions, and an idle component almost never collects its oldest generation, so it keeps
/// them: a speaker with 1,000 VIPs held 31 MiB committed for 12 MiB of live objects, a third of its RSS
/// (bench/RESULTS.md, issue 14). Every <see cref="Interval"/>, once the committed heap has grown by more than
/// <see cref="Growth"/> since the last trim (or since the start), one full compacting collection returns what is
/// free. It pauses the process for about 15 ms at that size: once after a burst, and again whenever replaced versions
/// of cached objects have added up to that much.
/// </summary>
public sealed partial class HeapTrimmer(IHeap heap, TimeProvider time, ILogger<HeapTrimmer> logger) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Four times the gen0 budget (System.GC.Gen0MaxBudget in the CLI project, 1 MiB), so what is allocated between two
    /// ordinary collections never counts as a burst, while garbage that reached the oldest generation (cached objects
    /// replaced by newer versions) is returned once there are a few MiB of it.
    /// </summary>
    public const long Growth = 4L << 20;

    private readonly PeriodicTimer _timer = new(Interval, time); // from construction, so a fake clock's ticks are never missed
    private long _committedAfterTrim; // 0 until the first trim: the start is the first burst

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (await _timer.WaitForNextTickAsync(stoppingToken))
        {
            TrimAfterGrowth();
        }
    }

    public override void Dispose()
    {
        _timer.Dispose();
        base.Dispose();
    }

    /// <summary>Trims if the committed heap grew by more than <see cref="Growth"/> since the last trim; true if it did.</summary>
    public bool TrimAfterGrowth()
    {
        var committed = heap.Committed;
        if (committed - _committedAfterTrim <= Growth)
        {
            return false;
        }

        var start = time.GetTimestamp();
        _committedAfterTrim = heap.Trim();
        var took = time.GetElapsedTime(start);
        LogTrimmed(committed >> 20, _committedAfterTrim >> 20, took.TotalMilliseconds);
        return true;
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Returned the heap's free memory to the system: {BeforeMiB} MiB committed before, {AfterMiB} MiB after, in {Milliseconds:F1} ms")]
    private partial void LogTrimmed(long beforeMiB, long afterMiB, double milliseconds);
}

/// <summary>The managed heap, as <see cref="HeapTrimmer"/> sees it.</summary>
public interface IHeap
{
    /// <summary>Bytes the GC has committed, as of its last collection.</summary>
    long Committed { get; }

    /// <summary>Collects everything, compacts and decommits what is free; returns the bytes still committed.</summary>
    long Trim();
}

public sealed class GcHeap : IHeap
{
    public long Committed => GC.GetGCMemoryInfo().TotalCommittedBytes;

    public long Trim()
    {
        // Aggressive: a blocking compacting collection of every generation that also decommits the free regions now,
        // rather than leaving them for later collections to release.
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        return GC.GetGCMemoryInfo().TotalCommittedBytes;
    }
}

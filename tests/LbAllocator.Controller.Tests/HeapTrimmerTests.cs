using System.Runtime.CompilerServices;
using LbAllocator.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace LbAllocator.Controller.Tests;

/// <summary>The heap trimmer both components run: when it gives memory back, and that the GC does give it back.</summary>
public sealed class HeapTrimmerTests
{
    private const long MiB = 1 << 20;

    [Fact]
    public void Trims_after_a_burst_but_not_for_what_is_allocated_between_collections()
    {
        // A speaker's figures with 1,000 VIPs: 31 MiB committed after the start, 12 MiB once trimmed.
        var heap = new FakeHeap { Committed = 31 * MiB, LeftAfterTrim = 12 * MiB };
        var trimmer = new HeapTrimmer(heap, new FakeTimeProvider(), NullLogger<HeapTrimmer>.Instance);

        Assert.True(trimmer.TrimAfterGrowth());
        heap.Committed = 13 * MiB; // a gen0 budget allocated since
        Assert.False(trimmer.TrimAfterGrowth());
        heap.Committed = 12 * MiB + HeapTrimmer.Growth;
        Assert.False(trimmer.TrimAfterGrowth());

        // Growth counts from what the last trim left, not from the start.
        heap.Committed = 12 * MiB + HeapTrimmer.Growth + 1;
        heap.LeftAfterTrim = 14 * MiB;
        Assert.True(trimmer.TrimAfterGrowth());
        heap.Committed = 14 * MiB + HeapTrimmer.Growth;
        Assert.False(trimmer.TrimAfterGrowth());
        Assert.Equal(2, heap.Trims);
    }

    [Fact]
    public async Task Checks_once_per_interval()
    {
        var time = new FakeTimeProvider();
        var heap = new FakeHeap { Committed = 40 * MiB, LeftAfterTrim = 10 * MiB };
        using var trimmer = new HeapTrimmer(heap, time, NullLogger<HeapTrimmer>.Instance);
        await trimmer.StartAsync(CancellationToken.None);
        try
        {
            time.Advance(HeapTrimmer.Interval - TimeSpan.FromSeconds(1));
            Assert.Equal(0, heap.Trims);
            time.Advance(TimeSpan.FromSeconds(1));
            await heap.Trimmed.Task.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(1, heap.Trims);
        }
        finally
        {
            await trimmer.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public void The_GC_gives_back_what_a_burst_left()
    {
        var heap = new GcHeap();
        Burst();
        var before = heap.Committed;
        var after = heap.Trim();
        Assert.True(before - after >= 32 * MiB, $"committed {before / MiB} MiB before the trim, {after / MiB} MiB after");
    }

    /// <summary>About 50 MB of small objects, alive through a full collection (so in the oldest generation, as cached objects are), then dropped.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Burst()
    {
        var objects = new List<byte[]>(400_000);
        for (var i = 0; i < objects.Capacity; i++)
        {
            objects.Add(new byte[100]);
        }

        GC.Collect();
        GC.KeepAlive(objects);
    }

    private sealed class FakeHeap : IHeap
    {
        public long Committed { get; set; }

        public long LeftAfterTrim { get; set; }

        public int Trims { get; private set; }

        public TaskCompletionSource Trimmed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public long Trim()
        {
            Trims++;
            Committed = LeftAfterTrim;
            Trimmed.TrySetResult();
            return LeftAfterTrim;
        }
    }
}

using System.Net;
using k8s;
using LbAllocator.Kubernetes.Watching;
using Microsoft.Extensions.Logging.Abstractions;
using static LbAllocator.Kubernetes.Tests.ScriptedSource;

namespace LbAllocator.Kubernetes.Tests;

/// <summary>
/// The cache's manners, client-go's reflector's: which list it asks for when, when it resumes a watch instead, how
/// long it backs off (on a fake clock, with scripted randomness, so every delay is exact).
/// </summary>
public sealed class ResourceCacheTests : IDisposable
{
    private static readonly TimeSpan Ms = TimeSpan.FromMilliseconds(1);

    private readonly TimerClock _clock = new();
    private readonly ScriptedSource _server = new();
    private readonly CancellationTokenSource _stop = new(TimeSpan.FromSeconds(30));

    public void Dispose() => _stop.Dispose();

    private CancellationToken Stop => _stop.Token;

    private ResourceCache<k8s.Models.V1Node> Cache(Random random) =>
        new(_server.Source, NullLogger.Instance, new CacheOptions { Time = _clock, Random = random });

    /// <summary>
    /// The first list comes from the watch cache (resourceVersion=0). After 410 Gone, as every watch gets after an API
    /// server restart, the relist is from the watch cache again, at the last version seen or newer (never back in time),
    /// after a jittered backoff. When the server cannot list at that version either (410, or 504 ResourceVersionTooLarge
    /// after etcd was restored), the latest is read at once, in pages of 500.
    /// </summary>
    [Theory]
    [InlineData(HttpStatusCode.Gone)]
    [InlineData(HttpStatusCode.GatewayTimeout)]
    public async Task Lists_from_the_watch_cache_then_at_the_last_version_after_410_then_the_latest_in_pages(HttpStatusCode refused)
    {
        var cache = Cache(new ScriptedRandom(0.5));
        var running = cache.RunAsync(Stop);

        var first = await _server.NextListAsync(Stop);
        Assert.Equal("?resourceVersion=0", first.Query);
        first.Return("10", Node("a", "5"));
        var watch = await _server.NextWatchAsync(Stop);
        Assert.Equal(("10", 450), (watch.Version, watch.TimeoutSeconds)); // 300 s × (1 + 0.5)
        watch.Send(WatchEventType.Added, Node("b", "11"));
        watch.End(Status(HttpStatusCode.Gone));

        await _clock.ElapseNextAsync(400 * Ms, Stop); // [0, 800 ms) at 0.5
        var relist = await _server.NextListAsync(Stop);
        Assert.Equal("?resourceVersion=11&resourceVersionMatch=NotOlderThan", relist.Query);
        relist.Fail(refused == HttpStatusCode.Gone ? Status(refused) : TooLarge());

        var latest = await _server.NextListAsync(Stop);
        Assert.Equal("?limit=500", latest.Query);
        Assert.True(_clock.NoTimers); // no wait between the refused list and this one
        latest.Return("20", Node("b", "11"), Node("c", "19"));
        Assert.Equal("20", (await _server.NextWatchAsync(Stop)).Version);

        Assert.Equal(["b", "c"], cache.Items.Select(n => n.Metadata.Name).Order()); // "a" was deleted meanwhile
        Assert.Equal(2, cache.Lists); // lists loaded: the refused one is not
        await _stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    /// <summary>
    /// A watch the server ends after it ran a while (its timeout) or after it delivered something is resumed at once
    /// from the last version seen, without a list; one that ends at once with nothing backs off.
    /// </summary>
    [Fact]
    public async Task A_watch_that_ran_is_resumed_at_once_from_the_last_version_without_a_list()
    {
        var cache = Cache(new ScriptedRandom(0.5));
        var running = cache.RunAsync(Stop);
        (await _server.NextListAsync(Stop)).Return("10");

        var ran = await _server.NextWatchAsync(Stop);
        _clock.Advance(TimeSpan.FromSeconds(1));
        ran.End();
        var delivered = await _server.NextWatchAsync(Stop);
        Assert.Equal("10", delivered.Version);
        delivered.Send(WatchEventType.Bookmark, Node("", "12"));
        delivered.End();
        var quiet = await _server.NextWatchAsync(Stop);
        Assert.Equal("12", quiet.Version);
        Assert.True(_clock.NoTimers);

        quiet.End(); // at once, nothing delivered: a failure
        await _clock.ElapseNextAsync(400 * Ms, Stop);
        Assert.Equal("12", (await _server.NextWatchAsync(Stop)).Version);
        Assert.Equal(1, cache.Lists);
        await _stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    /// <summary>
    /// Watches that end at once over and over back off 800 ms, doubling, to 30 s, each delay drawn in [0, step) (full
    /// jitter): with seeded randomness every delay is exactly its step times the fraction drawn for it.
    /// </summary>
    [Fact]
    public async Task Watches_that_end_at_once_back_off_with_full_jitter_doubling_from_800_ms_to_30_s()
    {
        var random = new ScriptedRandom(seed: 7);
        var cache = Cache(random);
        var running = cache.RunAsync(Stop);
        (await _server.NextListAsync(Stop)).Return("10");

        double[] steps = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30, 30, 30];
        foreach (var step in steps)
        {
            (await _server.NextWatchAsync(Stop)).End();
            var delay = await _clock.NextTimerAsync(Stop);
            var fraction = random.Drawn[^1]; // drawn after the watch's timeout
            Assert.Equal(TimeSpan.FromMilliseconds(Math.Floor(step * 1000 * fraction)), delay);
            _clock.Advance(delay);
        }

        await _server.NextWatchAsync(Stop);
        Assert.Equal((2 * steps.Length) + 1, random.Drawn.Count); // a timeout and a delay per watch, and this one's timeout
        Assert.Equal(1, cache.Lists);
        await _stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    /// <summary>A watch that fails (500 on the stream) backs off and resumes from the last version; no list.</summary>
    [Fact]
    public async Task A_failed_watch_backs_off_and_resumes_from_the_last_version()
    {
        var cache = Cache(new ScriptedRandom(0.25));
        var running = cache.RunAsync(Stop);
        (await _server.NextListAsync(Stop)).Return("10");

        var watch = await _server.NextWatchAsync(Stop);
        watch.Send(WatchEventType.Modified, Node("a", "15"));
        watch.End(Status(HttpStatusCode.InternalServerError));
        await _clock.ElapseNextAsync(200 * Ms, Stop);

        Assert.Equal("15", (await _server.NextWatchAsync(Stop)).Version);
        Assert.Equal(1, cache.Lists);
        await _stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    /// <summary>Each watch asks for its own timeout, uniform over [5, 10) minutes, so watches started together end apart.</summary>
    [Fact]
    public async Task Watch_timeouts_are_spread_over_5_to_10_minutes()
    {
        var cache = Cache(new ScriptedRandom(seed: 1));
        var running = cache.RunAsync(Stop);
        (await _server.NextListAsync(Stop)).Return("10");

        var timeouts = new List<int>();
        for (var i = 0; i < 1000; i++)
        {
            var watch = await _server.NextWatchAsync(Stop);
            timeouts.Add(watch.TimeoutSeconds);
            _clock.Advance(TimeSpan.FromSeconds(1));
            watch.End();
        }

        Assert.All(timeouts, t => Assert.InRange(t, 300, 599));
        var perMinute = timeouts.GroupBy(t => t / 60).OrderBy(g => g.Key).Select(g => g.Count()).ToList();
        Assert.Equal(5, perMinute.Count);
        Assert.All(perMinute, n => Assert.InRange(n, 150, 250)); // 200 expected in each
        await _stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    /// <summary>
    /// A watch on a connection that hangs delivers nothing and never ends; RestartWatch abandons it and watches again
    /// from the last version seen, without listing again and without waiting for a backoff.
    /// </summary>
    [Fact]
    public async Task Restarting_a_hung_watch_resumes_from_the_last_version_on_a_new_request()
    {
        var cache = Cache(new ScriptedRandom(0.5));
        var running = cache.RunAsync(Stop);
        (await _server.NextListAsync(Stop)).Return("10", Node("a", "5"));

        var hung = await _server.NextWatchAsync(Stop);
        hung.Send(WatchEventType.Added, Node("b", "11"));
        while (!cache.TryGet("b", out _))
        {
            await Task.Delay(10, Stop);
        }

        cache.RestartWatch();
        Assert.Equal("11", (await _server.NextWatchAsync(Stop)).Version);
        Assert.Equal(1, cache.Lists);
        Assert.Equal(2, cache.Watches);
        Assert.True(_clock.NoTimers);
        await _stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    private static Client.KubeApiException TooLarge() => new(
        HttpStatusCode.GatewayTimeout,
        new k8s.Models.V1Status { Code = 504, Reason = "Timeout", Details = new k8s.Models.V1StatusDetails { Causes = [new k8s.Models.V1StatusCause { Reason = "ResourceVersionTooLarge" }] } },
        "Timeout: Too large resource version");
}

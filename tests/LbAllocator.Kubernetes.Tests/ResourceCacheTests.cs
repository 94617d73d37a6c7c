using System.Runtime.CompilerServices;
using System.Threading.Channels;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Watching;
using Microsoft.Extensions.Logging.Abstractions;

namespace LbAllocator.Kubernetes.Tests;

public sealed class ResourceCacheTests
{
    /// <summary>
    /// A watch on a connection that hangs delivers nothing and never ends; RestartWatch abandons it and watches again
    /// from the last version seen, without listing again and without waiting for a backoff.
    /// </summary>
    [Fact]
    public async Task Restarting_a_hung_watch_resumes_from_the_last_version_on_a_new_request()
    {
        var watchedFrom = Channel.CreateUnbounded<string>();
        var source = new ResourceSource<V1Node>(
            "nodes",
            (_, _) => Task.FromResult<(IList<V1Node>, string)>(([Node("a", "5")], "10")),
            (version, cancellationToken) => Hang(version, watchedFrom.Writer, cancellationToken));
        var cache = new ResourceCache<V1Node>(source, NullLogger.Instance);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var running = cache.RunAsync(stop.Token);

        Assert.Equal("10", await watchedFrom.Reader.ReadAsync(stop.Token));
        cache.RestartWatch();
        Assert.Equal("11", await watchedFrom.Reader.ReadAsync(stop.Token)); // the event the first watch delivered
        Assert.Equal(1, cache.Lists);
        Assert.Equal(2, cache.Watches);
        Assert.True(cache.TryGet("b", out _));

        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running); // cancelled: it stops
    }

    /// <summary>
    /// The first list may come from the API server's watch cache (resourceVersion=0, no etcd read when every speaker
    /// starts at once); the list after 410 Gone asks for the latest, so the cache never steps back to an older state.
    /// </summary>
    [Fact]
    public async Task Lists_first_from_the_servers_cache_and_after_410_Gone_from_the_latest()
    {
        var listedAt = Channel.CreateUnbounded<string?>();
        var watches = 0;
        var source = new ResourceSource<V1Node>(
            "nodes",
            async (version, cancellationToken) =>
            {
                await listedAt.Writer.WriteAsync(version, cancellationToken);
                return ([Node("a", "5")], "10");
            },
            (version, cancellationToken) => GoneFirst(Interlocked.Increment(ref watches), version, cancellationToken));
        var cache = new ResourceCache<V1Node>(source, NullLogger.Instance);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var running = cache.RunAsync(stop.Token);

        Assert.Equal("0", await listedAt.Reader.ReadAsync(stop.Token));
        Assert.Null(await listedAt.Reader.ReadAsync(stop.Token));
        Assert.Equal(2, cache.Lists);

        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    /// <summary>The first watch ends with 410 Gone, as an ERROR event does; later ones hang until cancelled.</summary>
    private static async IAsyncEnumerable<(WatchEventType, V1Node)> GoneFirst(int watch, string version, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (watch == 1)
        {
            throw new KubeApiException(System.Net.HttpStatusCode.Gone, null, $"watch from {version}: 410 Gone");
        }

        await Task.Delay(Timeout.Infinite, cancellationToken);
        yield break;
    }

    /// <summary>Delivers one event for the first watch, then hangs until cancelled, as a stream on a dead connection.</summary>
    private static async IAsyncEnumerable<(WatchEventType, V1Node)> Hang(string version, ChannelWriter<string> watchedFrom, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await watchedFrom.WriteAsync(version, cancellationToken);
        if (version == "10")
        {
            yield return (WatchEventType.Added, Node("b", "11"));
        }

        await Task.Delay(Timeout.Infinite, cancellationToken);
    }

    private static V1Node Node(string name, string version) => new() { Metadata = new V1ObjectMeta { Name = name, ResourceVersion = version } };
}

using System.Runtime.CompilerServices;
using System.Threading.Channels;
using k8s;
using k8s.Models;
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
            _ => Task.FromResult<(IList<V1Node>, string)>(([Node("a", "5")], "10")),
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

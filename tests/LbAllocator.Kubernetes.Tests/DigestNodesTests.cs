using System.Runtime.CompilerServices;
using System.Threading.Channels;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Watching;
using Microsoft.Extensions.Logging.Abstractions;

namespace LbAllocator.Kubernetes.Tests;

/// <summary>The speakers' Nodes read from the node digest: each new version of the ConfigMap becomes events for the nodes whose entry changed.</summary>
public sealed class DigestNodesTests : IDisposable
{
    private readonly CancellationTokenSource _stop = new(TimeSpan.FromSeconds(30));
    private readonly Channel<(WatchEventType, V1ConfigMap)> _events = Channel.CreateUnbounded<(WatchEventType, V1ConfigMap)>();
    private IList<V1ConfigMap> _listed = [];

    public void Dispose() => _stop.Dispose();

    private DigestNodes Digest() => new(
        new ResourceSource<V1ConfigMap>("configmaps", (_, _) => Task.FromResult((_listed, "100")), (_, _, ct) => Watch(ct)),
        NullLogger.Instance);

    private async IAsyncEnumerable<(WatchEventType, V1ConfigMap)> Watch([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var change in _events.Reader.ReadAllAsync(cancellationToken))
        {
            yield return change;
        }
    }

    private static V1ConfigMap Map(string version, Dictionary<string, string> data) =>
        new() { Metadata = new V1ObjectMeta { Name = NodeDigest.ConfigMapName, NamespaceProperty = "lballocator-system", ResourceVersion = version }, Data = data };

    private static string Entry(string uid, string? zone = null) =>
        NodeDigest.Entry(new V1Node { Metadata = new V1ObjectMeta { Uid = uid, Labels = zone is null ? null : new Dictionary<string, string> { ["zone"] = zone } } }, new HashSet<string> { "zone" });

    [Fact]
    public async Task Each_version_becomes_events_for_the_nodes_whose_entry_changed_only()
    {
        _listed = [Map("10", new() { ["a"] = Entry("ua", "x"), ["b"] = Entry("ub") })];
        var source = Digest().Source;

        var (nodes, version) = await source.List(new ListOptions { ResourceVersion = "0" }, _stop.Token);
        Assert.Equal("100", version);
        Assert.Equal(["a", "b"], nodes.Select(n => n.Metadata.Name).Order());
        Assert.All(nodes, n => Assert.Equal("10", n.Metadata.ResourceVersion));
        Assert.Equal("x", nodes.Single(n => n.Metadata.Name == "a").Metadata.Labels["zone"]);

        await using var watch = source.Watch("10", 300, _stop.Token).GetAsyncEnumerator(_stop.Token);
        // a relabelled, b gone, c new.
        _events.Writer.TryWrite((WatchEventType.Modified, Map("11", new() { ["a"] = Entry("ua", "y"), ["c"] = Entry("uc") })));
        var changes = new List<(WatchEventType, string, string)>();
        for (var i = 0; i < 3; i++)
        {
            Assert.True(await watch.MoveNextAsync());
            changes.Add((watch.Current.Type, watch.Current.Object.Metadata.Name, watch.Current.Object.Metadata.ResourceVersion));
        }

        // Only the last carries the new version: a watch cut short before it resumes at 10 and gets the rest again.
        Assert.Equal([(WatchEventType.Deleted, "b", "10"), (WatchEventType.Modified, "a", "10"), (WatchEventType.Added, "c", "11")], changes);

        // A version that changes no entry (someone's annotation) moves the watch's version on, nothing else.
        var same = Map("12", new() { ["a"] = Entry("ua", "y"), ["c"] = Entry("uc") });
        same.Metadata.Annotations = new Dictionary<string, string> { ["note"] = "x" };
        _events.Writer.TryWrite((WatchEventType.Modified, same));
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal((WatchEventType.Bookmark, "12"), (watch.Current.Type, watch.Current.Object.Metadata.ResourceVersion));

        // The ConfigMap deleted: no nodes.
        _events.Writer.TryWrite((WatchEventType.Deleted, Map("13", [])));
        var gone = new List<string>();
        for (var i = 0; i < 2; i++)
        {
            Assert.True(await watch.MoveNextAsync());
            Assert.Equal(WatchEventType.Deleted, watch.Current.Type);
            gone.Add(watch.Current.Object.Metadata.Name);
        }

        Assert.Equal(["a", "c"], gone.Order());
    }

    [Fact]
    public async Task A_watch_cut_short_within_a_version_resumes_before_it_and_gets_the_rest()
    {
        _listed = [Map("10", new() { ["a"] = Entry("ua"), ["b"] = Entry("ub") })];
        var source = Digest().Source;
        await source.List(new ListOptions { ResourceVersion = "0" }, _stop.Token);
        var both = Map("11", new() { ["a"] = Entry("ua", "x"), ["b"] = Entry("ub", "x") });

        await using (var cut = source.Watch("10", 300, _stop.Token).GetAsyncEnumerator(_stop.Token))
        {
            _events.Writer.TryWrite((WatchEventType.Modified, both));
            Assert.True(await cut.MoveNextAsync());
            Assert.Equal(("a", "10"), (cut.Current.Object.Metadata.Name, cut.Current.Object.Metadata.ResourceVersion));
        }

        // The server sends what came after 10 again.
        await using var resumed = source.Watch("10", 300, _stop.Token).GetAsyncEnumerator(_stop.Token);
        _events.Writer.TryWrite((WatchEventType.Modified, both));
        Assert.True(await resumed.MoveNextAsync());
        Assert.Equal((WatchEventType.Modified, "b", "11"), (resumed.Current.Type, resumed.Current.Object.Metadata.Name, resumed.Current.Object.Metadata.ResourceVersion));
    }

    [Fact]
    public async Task A_cache_of_them_holds_no_node_until_the_digest_exists_then_its_nodes_and_a_bad_entry_leaves_its_node_out()
    {
        var cache = new ResourceCache<V1Node>(Digest().Source, NullLogger.Instance);
        var running = cache.RunAsync(_stop.Token);
        await cache.WaitForSyncAsync(_stop.Token);
        Assert.Empty(cache.Items);

        _events.Writer.TryWrite((WatchEventType.Added, Map("11", new() { ["a"] = Entry("ua", "x"), ["b"] = "{not json" })));
        while (cache.Items.Count == 0)
        {
            await Task.Delay(10, _stop.Token);
        }

        Assert.Equal("ua", Assert.Single(cache.Items).Metadata.Uid);
        Assert.Equal("11", cache.ResourceVersion);
        await _stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }
}

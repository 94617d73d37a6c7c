using System.Net;
using System.Threading.Channels;
using k8s.Models;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace LbAllocator.Controller.Tests;

/// <summary>The node digest's publisher on a fake clock, writing to a recording target: what it writes, when, and what it does not.</summary>
public sealed class NodeDigestPublisherTests : IAsyncDisposable
{
    /// <summary>Long enough for a loop that would write to have written (a pause can only hide a write, never make one up).</summary>
    private static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(300);

    private readonly FakeTimeProvider _time = new();
    private readonly RecordingTarget _target = new();
    private readonly CancellationTokenSource _stop = new(TimeSpan.FromSeconds(30));
    private readonly NodeDigestPublisher _publisher;
    private Task? _running;

    public NodeDigestPublisherTests() => _publisher = new NodeDigestPublisher(_target, "lballocator-system", _time, NullLogger.Instance);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_running is not null)
        {
            await _running;
        }

        _stop.Dispose();
    }

    private static V1Node Node(string name, string? zone = null, string ready = "True") => new()
    {
        Metadata = new V1ObjectMeta { Name = name, Uid = $"uid-{name}", Labels = zone is null ? null : new Dictionary<string, string> { ["zone"] = zone } },
        Status = new V1NodeStatus { Conditions = [new V1NodeCondition { Type = "Ready", Status = ready, LastHeartbeatTime = DateTime.UtcNow }] },
    };

    private static V1Alpha1L2Advertisement ZoneAd() =>
        new() { Spec = new L2AdvertisementSpec { NodeSelectors = [new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["zone"] = "a" } }] } };

    private void Start() => _running = _publisher.RunAsync(_stop.Token);

    [Fact]
    public async Task Writes_once_when_an_entry_changes_and_never_for_a_status_update_or_an_unnamed_label()
    {
        _publisher.AdvertisementsChanged([ZoneAd()]);
        _publisher.NodeChanged(null, Node("a", "a"));
        _publisher.NodeChanged(null, Node("b", "b"));
        Start();

        var created = await _target.NextWriteAsync(_stop.Token);
        Assert.Equal(("create", null), (created.Verb, created.Map.Metadata.ResourceVersion));
        Assert.Equal(NodeDigest.ConfigMapName, created.Map.Metadata.Name);
        Assert.Equal(["a", "b"], created.Map.Data.Keys.Order());
        Assert.Contains("\"zone\":\"a\"", created.Map.Data["a"], StringComparison.Ordinal);
        _publisher.Observed(_target.Held); // the watch brings our own write back

        // kubelet's status update, and a label no selector names: no entry changes.
        _publisher.NodeChanged(Node("a", "a"), Node("a", "a", ready: "False"));
        var relabelled = Node("b", "b");
        relabelled.Metadata.Labels["kubernetes.io/hostname"] = "b";
        _publisher.NodeChanged(Node("b", "b"), relabelled);
        _time.Advance(TimeSpan.FromSeconds(10));
        await Task.Delay(Settle);
        Assert.Equal(1, _target.Count);

        // A named label: one update, at the version the server holds.
        _publisher.NodeChanged(Node("b", "b"), Node("b", "a"));
        var updated = await _target.NextWriteAsync(_stop.Token);
        Assert.Equal(("replace", "1"), (updated.Verb, updated.Map.Metadata.ResourceVersion));
        Assert.Contains("\"zone\":\"a\"", updated.Map.Data["b"], StringComparison.Ordinal);
        await Task.Delay(Settle);
        Assert.Equal(2, _target.Count);
    }

    [Fact]
    public async Task Changes_within_a_second_of_a_write_go_out_together_a_second_after_it()
    {
        _publisher.NodeChanged(null, Node("a"));
        Start();
        await _target.NextWriteAsync(_stop.Token);
        _publisher.Observed(_target.Held);

        _publisher.NodeChanged(null, Node("b"));
        await Task.Delay(Settle);
        _publisher.NodeChanged(null, Node("c"));
        _publisher.NodeChanged(Node("a"), null);
        _time.Advance(TimeSpan.FromMilliseconds(900));
        await Task.Delay(Settle);
        Assert.Equal(1, _target.Count);

        _time.Advance(TimeSpan.FromMilliseconds(100));
        var batched = await _target.NextWriteAsync(_stop.Token);
        Assert.Equal(["b", "c"], batched.Map.Data.Keys.Order());
        await Task.Delay(Settle);
        Assert.Equal(2, _target.Count);
    }

    [Fact]
    public async Task A_conflict_waits_for_the_servers_copy_and_writes_over_it()
    {
        _publisher.NodeChanged(null, Node("a"));
        Start();
        await _target.NextWriteAsync(_stop.Token);
        _publisher.Observed(_target.Held);

        // Someone else's edit, not watched yet: updates at the old version are refused, and not retried on a timer.
        _target.EditElsewhere(new Dictionary<string, string> { ["x"] = "{}" });
        _publisher.NodeChanged(null, Node("b"));
        _time.Advance(TimeSpan.FromSeconds(1));
        await Task.Delay(Settle);
        _time.Advance(TimeSpan.FromSeconds(30));
        await Task.Delay(Settle);
        Assert.Equal(1, _target.Count);
        Assert.InRange(_target.Conflicts, 1, 2); // a change already queued may try once more

        _publisher.Observed(_target.Held);
        var written = await _target.NextWriteAsync(_stop.Token);
        Assert.Equal(("replace", "2"), (written.Verb, written.Map.Metadata.ResourceVersion));
        Assert.Equal(["a", "b"], written.Map.Data.Keys.Order());
    }

    [Fact]
    public async Task A_digest_over_the_limit_is_not_written_and_told_once_until_it_fits_again()
    {
        // About 50 bytes a node: 25,000 nodes are over 1 MiB.
        var nodes = Enumerable.Range(0, 25_000).Select(i => Node($"worker-{i:D5}.example.com")).ToList();
        nodes.ForEach(n => _publisher.NodeChanged(null, n));
        Start();
        await Task.Delay(Settle);
        _publisher.NodeChanged(null, Node("one-more"));
        _time.Advance(TimeSpan.FromSeconds(5));
        await Task.Delay(Settle);

        Assert.Equal(0, _target.Count);
        var warning = Assert.Single(_target.Warnings);
        Assert.Equal("NodeDigestTooLarge", warning.Reason);
        Assert.Contains("25000 nodes", warning.Message, StringComparison.Ordinal);

        // Nodes leave while the loop runs: the first digest that fits is written, and the rest a second later.
        nodes.Skip(5_000).ToList().ForEach(n => _publisher.NodeChanged(n, null));
        var written = await _target.NextWriteAsync(_stop.Token);
        Assert.InRange(NodeDigest.DataBytes(written.Map.Data), 0, NodeDigest.MaxDataBytes);
        while (written.Map.Data.Count != 5_001)
        {
            // The clock moves in steps until the next write: the loop may read it for the last write after a step.
            var next = _target.NextWriteAsync(_stop.Token);
            while (!next.IsCompleted)
            {
                _time.Advance(TimeSpan.FromMilliseconds(100));
                await Task.WhenAny(next, Task.Delay(20));
            }

            written = await next;
        }

        Assert.Single(_target.Warnings);
    }

    /// <summary>Answers as the API server would (versions counting up, 409 for a stale one), recording every write and warning.</summary>
    private sealed class RecordingTarget : INodeDigestTarget
    {
        private readonly Channel<(string Verb, V1ConfigMap Map)> _writes = Channel.CreateUnbounded<(string, V1ConfigMap)>();
        private int _version;

        /// <summary>Writes that succeeded.</summary>
        public int Count { get; private set; }

        public int Conflicts { get; private set; }

        /// <summary>The server's copy.</summary>
        public V1ConfigMap? Held { get; private set; }

        public List<(string Reason, string Message)> Warnings { get; } = [];

        public async Task<(string Verb, V1ConfigMap Map)> NextWriteAsync(CancellationToken cancellationToken) => await _writes.Reader.ReadAsync(cancellationToken);

        public Task<V1ConfigMap> CreateAsync(V1ConfigMap map, CancellationToken cancellationToken) =>
            Held is null ? Write("create", map) : Conflict();

        public Task<V1ConfigMap> ReplaceAsync(V1ConfigMap map, CancellationToken cancellationToken) =>
            Held?.Metadata.ResourceVersion == map.Metadata.ResourceVersion ? Write("replace", map) : Conflict();

        public void Warn(V1ConfigMap map, string reason, string message) => Warnings.Add((reason, message));

        /// <summary>Someone else writes the ConfigMap.</summary>
        public void EditElsewhere(Dictionary<string, string> data) => Keep(new V1ConfigMap { Metadata = new V1ObjectMeta { Name = NodeDigest.ConfigMapName }, Data = data });

        private Task<V1ConfigMap> Write(string verb, V1ConfigMap map)
        {
            Count++;
            _writes.Writer.TryWrite((verb, KubeJson.Clone(map)));
            return Task.FromResult(Keep(map));
        }

        private V1ConfigMap Keep(V1ConfigMap map)
        {
            Held = KubeJson.Clone(map);
            Held.Metadata.ResourceVersion = (++_version).ToString(System.Globalization.CultureInfo.InvariantCulture);
            return KubeJson.Clone(Held);
        }

        private Task<V1ConfigMap> Conflict()
        {
            Conflicts++;
            return Task.FromException<V1ConfigMap>(new KubeApiException(HttpStatusCode.Conflict, null, "409 Conflict"));
        }
    }
}

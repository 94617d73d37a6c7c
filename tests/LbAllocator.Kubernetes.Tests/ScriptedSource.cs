using System.Net;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Watching;

namespace LbAllocator.Kubernetes.Tests;

/// <summary>
/// A source of Nodes that the test plays the server for: every list and every watch the cache starts is handed to the
/// test (<see cref="NextListAsync"/>, <see cref="NextWatchAsync"/>), which answers it.
/// </summary>
internal sealed class ScriptedSource
{
    private readonly Channel<ListCall> _lists = Channel.CreateUnbounded<ListCall>();
    private readonly Channel<WatchCall> _watches = Channel.CreateUnbounded<WatchCall>();

    public ResourceSource<V1Node> Source => new(
        "nodes",
        async (options, cancellationToken) =>
        {
            var call = new ListCall(options.Query());
            await _lists.Writer.WriteAsync(call, cancellationToken);
            return await call.Answer.Task.WaitAsync(cancellationToken);
        },
        (version, timeoutSeconds, cancellationToken) => Watch(new WatchCall(version, timeoutSeconds), cancellationToken));

    public async Task<ListCall> NextListAsync(CancellationToken cancellationToken) => await _lists.Reader.ReadAsync(cancellationToken);

    public async Task<WatchCall> NextWatchAsync(CancellationToken cancellationToken) => await _watches.Reader.ReadAsync(cancellationToken);

    /// <summary>No list or watch was started since the last one read.</summary>
    public bool Idle => !_lists.Reader.TryPeek(out _) && !_watches.Reader.TryPeek(out _);

    public static V1Node Node(string name, string version) => new() { Metadata = new V1ObjectMeta { Name = name, ResourceVersion = version } };

    public static KubeApiException Status(HttpStatusCode code) => new(code, new V1Status { Code = (int)code }, $"{(int)code}");

    private async IAsyncEnumerable<(WatchEventType, V1Node)> Watch(WatchCall call, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await _watches.Writer.WriteAsync(call, cancellationToken);
        await foreach (var e in call.Events.Reader.ReadAllAsync(cancellationToken))
        {
            yield return e;
        }
    }

    /// <param name="Query">The list's query string, as <see cref="ListOptions.Query"/> writes it.</param>
    public sealed record ListCall(string Query)
    {
        public TaskCompletionSource<(IList<V1Node>, string)> Answer { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Return(string version, params V1Node[] nodes) => Answer.SetResult((nodes, version));

        public void Fail(Exception e) => Answer.SetException(e);
    }

    public sealed record WatchCall(string Version, int TimeoutSeconds)
    {
        /// <summary>Written: delivered; completed: the stream ends (with an exception: it fails so).</summary>
        public Channel<(WatchEventType, V1Node)> Events { get; } = Channel.CreateUnbounded<(WatchEventType, V1Node)>();

        public void Send(WatchEventType type, V1Node node) => Events.Writer.TryWrite((type, node));

        public void End(Exception? error = null) => Events.Writer.TryComplete(error);
    }
}

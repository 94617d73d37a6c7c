using System.Collections.Concurrent;

namespace LbAllocator.Controller.Tests;

/// <summary>
/// The requests controllers made, recorded by a handler under their clients: counts writes on the real server,
/// which keeps no request log a test can read.
/// </summary>
public sealed class RequestLog
{
    private readonly ConcurrentQueue<(string Method, string Path)> _requests = new();

    /// <summary>A handler for one client's pipeline (a handler cannot be shared between clients).</summary>
    public DelegatingHandler NewHandler() => new Recorder(this);

    public int Count(string method, string pathContains) =>
        _requests.Count(r => r.Method == method && r.Path.Contains(pathContains, StringComparison.Ordinal));

    private sealed class Recorder(RequestLog log) : DelegatingHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            log._requests.Enqueue((request.Method.Method, request.RequestUri?.AbsolutePath ?? ""));
            return base.SendAsync(request, cancellationToken);
        }
    }
}

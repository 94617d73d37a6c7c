using System.Net;

namespace LbAllocator.Hosting;

/// <summary>
/// The client sends every request as HTTP/2 on one connection, so a burst's writes queue behind the
/// watch streams' data (and each other) in one TCP stream; measured on kube-apiserver, a Service's status
/// write then took 2-4 times as long as the same write from a client of its own. This sends every request
/// but watches over HTTP/1.1, a pooled connection per request in flight. Watches stay on HTTP/2, where the
/// client's keep-alive pings find a dead connection that a silent HTTP/1.1 stream would hide. For the speaker it
/// also keeps lease renewals from queueing behind a watch connection that hangs after a network cut.
/// </summary>
public sealed class RequestsOffWatchConnection : DelegatingHandler
{
    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        if (!IsWatch(request.RequestUri))
        {
            request.Version = HttpVersion.Version11;
            request.VersionPolicy = HttpVersionPolicy.RequestVersionExact;
        }

        return base.SendAsync(request, cancellationToken);
    }

    private static bool IsWatch(Uri? uri) =>
        uri?.Query is { Length: > 0 } query && query.TrimStart('?').Split('&').Contains("watch=true", StringComparer.OrdinalIgnoreCase);
}

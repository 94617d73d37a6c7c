using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Prometheus;

namespace LbAllocator.Hosting;

/// <summary>
/// Serves /metrics (Prometheus text format), /healthz (liveness) and /readyz (readiness) over plain HTTP/1.1: GET,
/// one request per connection, then closed. On a socket rather than Kestrel: ASP.NET Core cost the NativeAOT binary
/// 4.8 MB and 7-9 MiB of RSS at start for three fixed pages (bench/RESULTS.md, issue 14).
/// </summary>
public sealed partial class StatusServer(IOptions<StatusOptions> options, Health health, CollectorRegistry registry, ILogger<StatusServer> logger)
    : IHostedService, IAsyncDisposable
{
    /// <summary>Request line and headers; Prometheus and the kubelet send well under 1 KiB.</summary>
    private const int MaxRequestHeadBytes = 8192;

    /// <summary>A client that has not sent its request, or taken the response, by then loses the connection.</summary>
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(10);

    private static readonly string[] Paths = ["/metrics", "/healthz", "/readyz"];

    private readonly CancellationTokenSource _stopping = new();
    private Socket? _listener;
    private Task? _accepting;

    /// <summary>The address actually listened on (the port is known only after start when 0 was asked for).</summary>
    public Uri? Url { get; private set; }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var endPoint = options.Value.ParseEndPoint();
        var listener = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        if (endPoint.Address.Equals(IPAddress.IPv6Any))
        {
            listener.DualMode = true; // [::] takes IPv4 clients too, as Kestrel's did
        }

        try
        {
            listener.Bind(endPoint);
            listener.Listen();
        }
        catch (SocketException e)
        {
            listener.Dispose();
            throw new StatusEndpointException($"cannot listen on {options.Value.Address}: {e.Message}", e);
        }

        _listener = listener;
        Url = new Uri($"http://{listener.LocalEndPoint}");
        _accepting = AcceptAsync(listener, _stopping.Token);
        LogServing(Url);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_stopping.IsCancellationRequested)
        {
            return;
        }

        await _stopping.CancelAsync();
        _listener?.Dispose();
        if (_accepting is not null)
        {
            await _accepting.WaitAsync(cancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None);
        _stopping.Dispose();
    }

    private async Task AcceptAsync(Socket listener, CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await listener.AcceptAsync(stopping);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                // Out of file descriptors, for one: the listener stays, the next accept may work.
                LogAcceptFailed(e);
                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(100), stopping);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            _ = ServeAsync(connection, stopping);
        }
    }

    private async Task ServeAsync(Socket connection, CancellationToken stopping)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        timeout.CancelAfter(RequestTimeout);
        await using var stream = new NetworkStream(connection, ownsSocket: true);
        try
        {
            connection.NoDelay = true;
            var request = await ReadRequestAsync(stream, timeout.Token);
            var response = request.Rejected != 0 ? Empty(request.Rejected) : await RespondAsync(request, timeout.Token);
            await WriteAsync(stream, response, timeout.Token);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException)
        {
            // The client went away or stalled: nothing to answer.
        }
#pragma warning disable CA1031 // one request failing must not take the server down: it is logged and answered 500
        catch (Exception e)
        {
            LogRequestFailed(e);
            try
            {
                await WriteAsync(stream, Empty(500), timeout.Token);
            }
            catch (Exception)
            {
                // The client is gone too.
            }
        }
#pragma warning restore CA1031
    }

    private async Task<Response> RespondAsync(RequestHead request, CancellationToken cancellationToken)
    {
        // As ASP.NET Core's routing matched: any case, an optional trailing slash, the query ignored.
        var path = request.Path.Length > 1 ? request.Path.TrimEnd('/') : request.Path;
        var route = Array.Find(Paths, p => string.Equals(p, path, StringComparison.OrdinalIgnoreCase));
        if (route is null)
        {
            return Empty(404);
        }

        if (request.Method != "GET")
        {
            return Empty(405) with { Allow = "GET" };
        }

        switch (route)
        {
            case "/metrics":
                using (var body = new MemoryStream())
                {
                    await registry.CollectAndExportAsTextAsync(body, cancellationToken);
                    return new Response(200, "text/plain; version=0.0.4; charset=utf-8", body.ToArray());
                }

            case "/healthz":
                return Health(health.Liveness());
            default:
                return Health(health.Readiness());
        }
    }

    private static Response Health(HealthReport report) =>
        new(report.Ok ? 200 : 503, "text/plain; charset=utf-8", Encoding.UTF8.GetBytes(report.Text));

    private static Response Empty(int status) => new(status, null, []);

    /// <summary>Reads up to the blank line ending the headers; only the request line matters here.</summary>
    private static async Task<RequestHead> ReadRequestAsync(NetworkStream stream, CancellationToken cancellationToken)
    {
        var buffer = new byte[MaxRequestHeadBytes];
        var length = 0;
        int end;
        while ((end = buffer.AsSpan(0, length).IndexOf("\r\n\r\n"u8)) < 0)
        {
            if (length == buffer.Length)
            {
                return RequestHead.Reject(431);
            }

            var read = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken);
            if (read == 0)
            {
                return RequestHead.Reject(400);
            }

            length += read;
        }

        var lineEnd = buffer.AsSpan(0, end + 2).IndexOf("\r\n"u8);
        var parts = Encoding.ASCII.GetString(buffer, 0, lineEnd).Split(' ');
        if (parts.Length != 3 || !parts[2].StartsWith("HTTP/1.", StringComparison.Ordinal))
        {
            return RequestHead.Reject(400);
        }

        var target = parts[1];
        if (target.StartsWith("http://", StringComparison.OrdinalIgnoreCase) && Uri.TryCreate(target, UriKind.Absolute, out var absolute))
        {
            target = absolute.AbsolutePath; // absolute-form, as sent to a proxy
        }

        var query = target.IndexOf('?', StringComparison.Ordinal);
        var path = query < 0 ? target : target[..query];
        return path.StartsWith('/') ? new RequestHead(parts[0], Uri.UnescapeDataString(path)) : RequestHead.Reject(400);
    }

    private static async Task WriteAsync(NetworkStream stream, Response response, CancellationToken cancellationToken)
    {
        var head = new StringBuilder()
            .Append(CultureInfo.InvariantCulture, $"HTTP/1.1 {response.Status} {ReasonPhrase(response.Status)}\r\n")
            .Append(CultureInfo.InvariantCulture, $"Date: {DateTimeOffset.UtcNow:r}\r\n");
        if (response.ContentType is not null)
        {
            head.Append(CultureInfo.InvariantCulture, $"Content-Type: {response.ContentType}\r\n");
        }

        if (response.Allow is not null)
        {
            head.Append(CultureInfo.InvariantCulture, $"Allow: {response.Allow}\r\n");
        }

        head.Append(CultureInfo.InvariantCulture, $"Content-Length: {response.Body.Length}\r\nConnection: close\r\n\r\n");
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head.ToString()), cancellationToken);
        await stream.WriteAsync(response.Body, cancellationToken);
    }

    private static string ReasonPhrase(int status) => status switch
    {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };

    [LoggerMessage(Level = LogLevel.Information, Message = "Serving /metrics, /healthz and /readyz on {Url}")]
    private partial void LogServing(Uri url);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The status endpoint could not accept a connection")]
    private partial void LogAcceptFailed(Exception e);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A status request failed")]
    private partial void LogRequestFailed(Exception e);

    /// <summary>A request's method and path, or the status it is refused with (400, 431) when <see cref="Rejected"/> is not 0.</summary>
    private sealed record RequestHead(string Method, string Path, int Rejected = 0)
    {
        public static RequestHead Reject(int status) => new("", "", status);
    }

    private sealed record Response(int Status, string? ContentType, byte[] Body)
    {
        public string? Allow { get; init; }
    }
}

/// <summary>The status endpoint could not be served (the address is in use or not on this host).</summary>
public sealed class StatusEndpointException(string message, Exception inner) : IOException(message, inner);

using System.Net;
using System.Net.Http.Headers;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Kubernetes.Client;

/// <summary>How every request goes out: through the token bucket, and again after a Retry-After.</summary>
public sealed partial class KubeApi
{
    /// <summary>Waits for the bucket shorter than this are not worth a log line (client-go's threshold).</summary>
    private static readonly TimeSpan LoggedWait = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How long the server asked us to wait before trying the request again, when it may be tried again: after 429
    /// whatever the method (API Priority and Fairness refused it before doing anything) and, for reads only, after
    /// 503 (a write may have been done by the time a proxy answered 503); either only with a Retry-After, in seconds or
    /// as a date. Null: the answer stands (a 503 without Retry-After is an ordinary failure).
    /// </summary>
    public static TimeSpan? RetryDelay(HttpMethod method, HttpResponseMessage response, DateTimeOffset now)
    {
        var retryable = response.StatusCode == HttpStatusCode.TooManyRequests
            || (response.StatusCode == HttpStatusCode.ServiceUnavailable && method == HttpMethod.Get);
        if (!retryable || response.Headers.RetryAfter is not { } after)
        {
            return null;
        }

        var delay = after.Delta ?? after.Date - now;
        return delay is { } d && d > TimeSpan.Zero ? d : TimeSpan.Zero;
    }

    /// <summary>
    /// Sends a request built afresh for each attempt (a sent request cannot be sent again), each attempt taking a token
    /// when <paramref name="throttled"/>, retried after the server's Retry-After up to <see cref="KubeApiSettings.MaxRetries"/>.
    /// </summary>
    private async Task<Exchange> SendWithRetriesAsync(
        HttpMethod method, string path, Body? body, HttpCompletionOption completion, bool throttled, CancellationToken cancellationToken)
    {
        for (var retry = 1; ; retry++)
        {
            if (throttled && _bucket is not null)
            {
                var waited = await _bucket.TakeAsync(cancellationToken);
                if (waited >= LoggedWait)
                {
                    LogThrottled(_settings.Logger, waited, method.Method, path);
                }
            }

            var request = new HttpRequestMessage(method, path) { Content = body?.Content() };
            HttpResponseMessage response;
            try
            {
                response = await _http.SendAsync(request, completion, cancellationToken);
            }
            catch
            {
                request.Dispose();
                throw;
            }

            if (retry <= _settings.MaxRetries && RetryDelay(method, response, _settings.Time.GetUtcNow()) is { } delay)
            {
                LogRetryAfter(_settings.Logger, method.Method, path, (int)response.StatusCode, delay, retry);
                response.Dispose();
                request.Dispose();
                await Task.Delay(delay, _settings.Time, cancellationToken);
                continue;
            }

            return new Exchange(request, response);
        }
    }

    /// <summary>A request's body, kept as bytes so each attempt gets content of its own.</summary>
    private sealed record Body(byte[] Bytes, string MediaType)
    {
        public ByteArrayContent Content()
        {
            var content = new ByteArrayContent(Bytes);
            content.Headers.ContentType = new MediaTypeHeaderValue(MediaType);
            return content;
        }
    }

    /// <summary>The request that got the answer and the answer, disposed together.</summary>
    private sealed class Exchange(HttpRequestMessage request, HttpResponseMessage response) : IDisposable
    {
        public HttpRequestMessage Request { get; } = request;
        public HttpResponseMessage Response { get; } = response;

        public void Dispose()
        {
            Response.Dispose();
            Request.Dispose();
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "The API server answered {Method} {Path} with {Code} and Retry-After; retry {Retry} in {Delay}")]
    private static partial void LogRetryAfter(ILogger logger, string method, string path, int code, TimeSpan delay, int retry);

    [LoggerMessage(Level = LogLevel.Information, Message = "Waited {Wait} for the client-side rate limit before {Method} {Path}")]
    private static partial void LogThrottled(ILogger logger, TimeSpan wait, string method, string path);

    [LoggerMessage(Level = LogLevel.Information, Message = "The continue token of a list of {Resource} expired after {Read} objects; listing it whole")]
    private static partial void LogContinueExpired(ILogger logger, string resource, int read);
}

using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace LbAllocator.Kubernetes.Client;

/// <summary>
/// How a <see cref="KubeApi"/> paces itself, as client-go's rest client does: a token bucket in front of every request
/// it starts (lists, gets, writes, the start of each watch), and requests the server asked to come back for later
/// (429, 503 with Retry-After) retried after the delay it named.
/// </summary>
public sealed record KubeApiSettings
{
    /// <summary>No client-side limit: a bare client (one-shot commands, tests). The components set theirs.</summary>
    public static readonly KubeApiSettings Unlimited = new();

    /// <summary>Requests a second the bucket refills at; null: no client-side limit.</summary>
    public double? Qps { get; init; }

    /// <summary>Requests that may start at once after a quiet spell (the bucket's size).</summary>
    public int Burst { get; init; } = 1;

    /// <summary>Retries after a Retry-After, per request (client-go: 10); the last answer is then the request's.</summary>
    public int MaxRetries { get; init; } = 10;

    public TimeProvider Time { get; init; } = TimeProvider.System;

    public ILogger Logger { get; init; } = NullLogger.Instance;
}

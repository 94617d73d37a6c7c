using System.Net;
using System.Threading.Channels;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Kubernetes;

/// <summary>
/// Records core/v1 events on objects. Remembers the last event per key, so an object stuck in the same
/// state is not told again on every pass; an event that cannot be written is logged, never thrown.
/// <see cref="Post"/> queues an event for <see cref="SendQueuedAsync"/> instead of waiting for the write, so
/// events never hold up the state they describe (as client-go's broadcaster: bounded, a full queue drops
/// with a warning).
/// </summary>
public sealed partial class EventRecorder(IKubernetes client, string component, string instance, string defaultNamespace, ILogger logger)
{
    /// <summary>Events waiting to be sent; a burst of this many Services is recorded in full.</summary>
    public const int QueueCapacity = 4096;

    private const int Attempts = 3;
    private static readonly TimeSpan MaxYield = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan YieldStep = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(5);

    private readonly Dictionary<string, string> _lastEvent = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private int _unsent;
    private readonly Channel<(string Key, string Text, Corev1Event Body)> _queue =
        Channel.CreateBounded<(string, string, Corev1Event)>(new BoundedChannelOptions(QueueCapacity) { FullMode = BoundedChannelFullMode.Wait });

    /// <summary>Events waiting in the queue.</summary>
    public int Queued => _queue.Reader.Count;

    /// <param name="key">What the de-duplication is per: usually the object, sometimes object and topic.</param>
    public async Task RecordAsync(IKubernetesObject<V1ObjectMeta> target, string key, string type, string reason, string message, CancellationToken cancellationToken)
    {
        if (Prepare(target, key, type, reason, message) is not { } prepared)
        {
            return;
        }

        try
        {
            await client.CoreV1.CreateNamespacedEventAsync(prepared.Body, prepared.Body.Metadata.NamespaceProperty, cancellationToken: cancellationToken);
        }
        catch (HttpOperationException e)
        {
            // An event is information, not state: losing one must not fail the caller.
            LogEventFailed(e, reason, key);
        }
    }

    /// <summary>Queues the event and returns at once; <see cref="SendQueuedAsync"/> writes it.</summary>
    public void Post(IKubernetesObject<V1ObjectMeta> target, string key, string type, string reason, string message)
    {
        if (Prepare(target, key, type, reason, message) is not { } prepared)
        {
            return;
        }

        if (!_queue.Writer.TryWrite((key, prepared.Text, prepared.Body)))
        {
            LogEventDropped(reason, key, QueueCapacity);
            Unremember(key, prepared.Text);
        }
    }

    /// <summary>
    /// Sends queued events with <paramref name="senders"/> requests at most in flight, until cancelled; each
    /// write has a short timeout and a few attempts. While <paramref name="busy"/> says the work the events
    /// describe is still going on, each event first waits for it a little, so a burst's events trail its
    /// writes instead of competing with them.
    /// </summary>
    public Task SendQueuedAsync(int senders, Func<bool> busy, CancellationToken cancellationToken) =>
        Task.WhenAll(Enumerable.Range(0, senders).Select(_ => SendLoopAsync(busy, cancellationToken)));

    /// <summary>Empties the queue once nobody sends any more (the sender stopped), counting what is lost in the log.</summary>
    public void DiscardQueued()
    {
        var left = Interlocked.Exchange(ref _unsent, 0);
        while (_queue.Reader.TryRead(out var item))
        {
            Unremember(item.Key, item.Text);
            left++;
        }

        if (left > 0)
        {
            LogEventsLeft(left);
        }
    }

    /// <summary>Forget the last event for the key, so the next one is sent even if it repeats an older one.</summary>
    public void Forget(string key)
    {
        lock (_lock)
        {
            _lastEvent.Remove(key);
        }
    }

    private async Task SendLoopAsync(Func<bool> busy, CancellationToken cancellationToken)
    {
        try
        {
            while (await _queue.Reader.WaitToReadAsync(cancellationToken))
            {
                // Bounded, so events are late under constant load but never starved.
                for (var waited = TimeSpan.Zero; waited < MaxYield && busy(); waited += YieldStep)
                {
                    await Task.Delay(YieldStep, cancellationToken);
                }

                if (_queue.Reader.TryRead(out var item))
                {
                    await SendAsync(item.Key, item.Text, item.Body, cancellationToken);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task SendAsync(string key, string text, Corev1Event body, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(AttemptTimeout);
            try
            {
                await client.CoreV1.CreateNamespacedEventAsync(body, body.Metadata.NamespaceProperty, cancellationToken: timeout.Token);
                return;
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested && e is HttpOperationException or HttpRequestException or OperationCanceledException)
            {
                if (attempt >= Attempts || !Transient(e))
                {
                    // Not remembered as told, so the object's next pass may tell it again.
                    LogEventFailed(e, body.Reason, key);
                    Unremember(key, text);
                    return;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(200 << attempt), cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                Unremember(key, text);
                Interlocked.Increment(ref _unsent);
                throw;
            }
        }
    }

    /// <summary>Worth another attempt: no answer in time, no connection, throttled or a server error.</summary>
    private static bool Transient(Exception e) => e is not HttpOperationException http
        || http.Response.StatusCode is HttpStatusCode.TooManyRequests or >= HttpStatusCode.InternalServerError;

    /// <summary>The event to write, or null when it repeats the key's last one.</summary>
    private (string Text, Corev1Event Body)? Prepare(IKubernetesObject<V1ObjectMeta> target, string key, string type, string reason, string message)
    {
        var text = $"{type}/{reason}: {message}";
        lock (_lock)
        {
            if (_lastEvent.GetValueOrDefault(key) == text)
            {
                return null;
            }

            _lastEvent[key] = text;
        }

        var now = DateTime.UtcNow;
        var ns = target.Metadata.NamespaceProperty ?? defaultNamespace;
        var body = new Corev1Event
        {
            Metadata = new V1ObjectMeta { GenerateName = target.Metadata.Name + ".", NamespaceProperty = ns },
            InvolvedObject = new V1ObjectReference
            {
                ApiVersion = target.ApiVersion ?? "v1",
                Kind = target.Kind ?? "Service",
                Name = target.Metadata.Name,
                NamespaceProperty = ns,
                Uid = target.Metadata.Uid,
                ResourceVersion = target.Metadata.ResourceVersion,
            },
            Type = type,
            Reason = reason,
            Message = message,
            Source = new V1EventSource { Component = $"lballocator-{component}" },
            ReportingComponent = $"lballocator.io/{component}",
            ReportingInstance = instance,
            FirstTimestamp = now,
            LastTimestamp = now,
            Count = 1,
        };
        LogEvent(type, reason, key, message);
        return (text, body);
    }

    private void Unremember(string key, string text)
    {
        lock (_lock)
        {
            if (_lastEvent.GetValueOrDefault(key) == text)
            {
                _lastEvent.Remove(key);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{EventType} event {Reason} for {Object}: {Message}")]
    private partial void LogEvent(string eventType, string reason, string @object, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not record event {Reason} for {Object}")]
    private partial void LogEventFailed(Exception exception, string? reason, string @object);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Event {Reason} for {Object} dropped: {Capacity} events already wait to be sent")]
    private partial void LogEventDropped(string reason, string @object, int capacity);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Stopping with {Count} events not recorded")]
    private partial void LogEventsLeft(int count);
}

using System.Net;
using System.Threading.Channels;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Client;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Kubernetes;

/// <summary>How an <see cref="EventRecorder"/> queues and writes.</summary>
/// <param name="Capacity">Events that may wait to be sent.</param>
/// <param name="DropOldest">When full: drop the oldest waiting event (while the API hangs, news beats history); otherwise the newest.</param>
/// <param name="AttemptTimeout">Each write's own timeout (the client gives up after 100 s).</param>
/// <param name="Attempts">Writes of one event at most, for answers worth retrying (timeouts, 429, 5xx).</param>
public sealed record EventQueueSettings(int Capacity, bool DropOldest, TimeSpan AttemptTimeout, int Attempts = 3);

/// <summary>
/// Records core/v1 events on objects, off the caller's path: <see cref="Post"/> queues an event and returns,
/// <see cref="SendQueuedAsync"/> writes the queue (as client-go's broadcaster: bounded, a full queue drops
/// with a warning), so events never hold up the state they describe. Remembers the last event per key so an
/// object stuck in the same state is not told again on every pass; an event that is dropped, fails or is never
/// sent is forgotten again, so the object's next pass tells it anew. <see cref="Forget"/> ends a key's memory
/// (its trouble is over, or the object is gone).
/// </summary>
public sealed partial class EventRecorder
{
    private static readonly TimeSpan MaxYield = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan YieldStep = TimeSpan.FromMilliseconds(10);

    private readonly KubeApi _client;
    private readonly string _component;
    private readonly string _instance;
    private readonly string _defaultNamespace;
    private readonly EventQueueSettings _settings;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Dictionary<string, string> _lastEvent = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private readonly Channel<QueuedEvent> _queue;
    private int _unsent;

    public EventRecorder(KubeApi client, string component, string instance, string defaultNamespace, EventQueueSettings settings, TimeProvider time, ILogger logger)
    {
        _client = client;
        _component = component;
        _instance = instance;
        _defaultNamespace = defaultNamespace;
        _settings = settings;
        _time = time;
        _logger = logger;
        var options = new BoundedChannelOptions(settings.Capacity) { FullMode = settings.DropOldest ? BoundedChannelFullMode.DropOldest : BoundedChannelFullMode.DropWrite };
        _queue = Channel.CreateBounded<QueuedEvent>(options, Dropped);
    }

    /// <summary>Queues the event and returns at once, unless it repeats the key's last one.</summary>
    /// <param name="key">What the de-duplication is per: usually the object, sometimes object and topic.</param>
    public void Post(IKubernetesObject<V1ObjectMeta> target, string key, string type, string reason, string message)
    {
        if (Prepare(target, key, type, reason, message) is { } prepared)
        {
            _queue.Writer.TryWrite(prepared);
        }
    }

    /// <summary>
    /// Sends queued events with <paramref name="senders"/> requests at most in flight, until cancelled. While
    /// <paramref name="busy"/> says the work the events describe is still going on, each event first waits for
    /// it a little, so a burst's events trail its writes instead of competing with them.
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
                    await Task.Delay(YieldStep, _time, cancellationToken);
                }

                if (_queue.Reader.TryRead(out var item))
                {
                    await SendAsync(item, cancellationToken);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task SendAsync(QueuedEvent item, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            using var timeout = new CancellationTokenSource(_settings.AttemptTimeout, _time);
            using var call = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
            try
            {
                await _client.CreateAsync(KubeResources.Events, item.Body.Metadata.NamespaceProperty, item.Body, call.Token);
                return;
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested && e is KubeApiException or HttpRequestException or OperationCanceledException)
            {
                if (attempt >= _settings.Attempts || !Transient(e))
                {
                    // Not remembered as told, so the object's next pass may tell it again.
                    LogEventFailed(e, item.Body.Reason, item.Key);
                    Unremember(item.Key, item.Text);
                    return;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(200 << attempt), _time, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                Unremember(item.Key, item.Text);
                Interlocked.Increment(ref _unsent);
                throw;
            }
        }
    }

    private void Dropped(QueuedEvent item)
    {
        LogEventDropped(item.Body.Reason, item.Key, _settings.Capacity);
        Unremember(item.Key, item.Text);
    }

    /// <summary>Worth another attempt: no answer in time, no connection, throttled or a server error.</summary>
    private static bool Transient(Exception e) => e is not KubeApiException api
        || api.StatusCode is HttpStatusCode.TooManyRequests or >= HttpStatusCode.InternalServerError;

    /// <summary>The event to write, or null when it repeats the key's last one.</summary>
    private QueuedEvent? Prepare(IKubernetesObject<V1ObjectMeta> target, string key, string type, string reason, string message)
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

        var now = _time.GetUtcNow().UtcDateTime;
        var ns = target.Metadata.NamespaceProperty ?? _defaultNamespace;
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
            Source = new V1EventSource { Component = $"lballocator-{_component}" },
            ReportingComponent = $"lballocator.io/{_component}",
            ReportingInstance = _instance,
            FirstTimestamp = now,
            LastTimestamp = now,
            Count = 1,
        };
        LogEvent(type, reason, key, message);
        return new QueuedEvent(key, text, body);
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

    private sealed record QueuedEvent(string Key, string Text, Corev1Event Body);

    [LoggerMessage(Level = LogLevel.Information, Message = "{EventType} event {Reason} for {Object}: {Message}")]
    private partial void LogEvent(string eventType, string reason, string @object, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not record event {Reason} for {Object}")]
    private partial void LogEventFailed(Exception exception, string? reason, string @object);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Event {Reason} for {Object} dropped: {Capacity} events already wait to be sent")]
    private partial void LogEventDropped(string reason, string @object, int capacity);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Stopping with {Count} events not recorded")]
    private partial void LogEventsLeft(int count);
}

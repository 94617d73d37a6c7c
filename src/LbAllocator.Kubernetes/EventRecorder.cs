using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Kubernetes;

/// <summary>
/// Records core/v1 events on objects. Remembers the last event per key, so an object stuck in the same
/// state is not told again on every pass; an event that cannot be written is logged, never thrown.
/// </summary>
public sealed partial class EventRecorder(IKubernetes client, string component, string instance, string defaultNamespace, ILogger logger)
{
    private readonly Dictionary<string, string> _lastEvent = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    /// <param name="key">What the de-duplication is per: usually the object, sometimes object and topic.</param>
    public async Task RecordAsync(IKubernetesObject<V1ObjectMeta> target, string key, string type, string reason, string message, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            var text = $"{type}/{reason}: {message}";
            if (_lastEvent.GetValueOrDefault(key) == text)
            {
                return;
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
        try
        {
            await client.CoreV1.CreateNamespacedEventAsync(body, ns, cancellationToken: cancellationToken);
        }
        catch (HttpOperationException e)
        {
            // An event is information, not state: losing one must not fail the caller.
            LogEventFailed(e, reason, key);
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

    [LoggerMessage(Level = LogLevel.Information, Message = "{EventType} event {Reason} for {Object}: {Message}")]
    private partial void LogEvent(string eventType, string reason, string @object, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not record event {Reason} for {Object}")]
    private partial void LogEventFailed(Exception exception, string reason, string @object);
}

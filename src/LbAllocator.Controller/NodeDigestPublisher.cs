using System.Threading.Channels;
using k8s.Models;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Controller;

/// <summary>Where the node digest is written, and its trouble told: the API server, or a test's recording fake.</summary>
public interface INodeDigestTarget
{
    Task<V1ConfigMap> CreateAsync(V1ConfigMap map, CancellationToken cancellationToken);

    /// <summary>Fails with 409 Conflict when the map's resourceVersion is no longer the server's.</summary>
    Task<V1ConfigMap> ReplaceAsync(V1ConfigMap map, CancellationToken cancellationToken);

    /// <summary>A warning event on the ConfigMap.</summary>
    void Warn(V1ConfigMap map, string reason, string message);
}

/// <summary>
/// Keeps the node digest's ConfigMap (<see cref="NodeDigest"/>) equal to what the Nodes and advertisements say. Each
/// node's entry is computed when its Node changes, so kubelet's status updates, which change no entry, cost no write
/// and no speaker a watch event. A change is written at once, but at most one write per <see cref="MinWriteInterval"/>:
/// a burst (nodes joining together) is one write. What the server holds comes from a watch of the ConfigMap, so
/// someone else's edit or deletion is undone too; a 409 waits for the watch to bring the server's version.
/// </summary>
public sealed partial class NodeDigestPublisher(INodeDigestTarget target, string ns, TimeProvider time, ILogger logger)
{
    public static readonly TimeSpan MinWriteInterval = TimeSpan.FromSeconds(1);

    private static readonly TimeSpan MaxRetryDelay = TimeSpan.FromSeconds(30);

    private readonly Lock _lock = new();
    private readonly Dictionary<string, V1Node> _nodes = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, string> _entries = new(StringComparer.Ordinal);
    private readonly Channel<bool> _due = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private IReadOnlySet<string> _labelKeys = NodeDigest.LabelKeys([]);
    private V1ConfigMap? _held; // the server's copy, as last watched or written; null: none
    private bool _tooLarge;

    public void NodeChanged(V1Node? old, V1Node? now)
    {
        var name = (now ?? old)!.Metadata.Name;
        lock (_lock)
        {
            if (now is null)
            {
                _nodes.Remove(name);
                if (!_entries.Remove(name))
                {
                    return;
                }
            }
            else
            {
                _nodes[name] = now;
                var entry = NodeDigest.Entry(now, _labelKeys);
                if (_entries.GetValueOrDefault(name) == entry)
                {
                    return;
                }

                _entries[name] = entry;
            }
        }

        _due.Writer.TryWrite(true);
    }

    /// <summary>The advertisements changed: when they name other label keys, every entry is computed again.</summary>
    public void AdvertisementsChanged(IEnumerable<V1Alpha1L2Advertisement> advertisements)
    {
        var keys = NodeDigest.LabelKeys(advertisements);
        lock (_lock)
        {
            if (keys.SetEquals(_labelKeys))
            {
                return;
            }

            _labelKeys = keys;
            foreach (var (name, node) in _nodes)
            {
                _entries[name] = NodeDigest.Entry(node, keys);
            }
        }

        _due.Writer.TryWrite(true);
    }

    /// <summary>The server's copy of the ConfigMap, from the watch (null: it is gone).</summary>
    public void Observed(V1ConfigMap? now)
    {
        lock (_lock)
        {
            _held = now;
        }

        _due.Writer.TryWrite(true);
    }

    /// <summary>The leader's loop: call it once the caches feeding this have listed.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var retry = TimeSpan.Zero;
        long? lastWrite = null;
        _due.Writer.TryWrite(true);
        try
        {
            while (await _due.Reader.WaitToReadAsync(cancellationToken))
            {
                _due.Reader.TryRead(out _);
                if (lastWrite is { } last && MinWriteInterval - time.GetElapsedTime(last) is var wait && wait > TimeSpan.Zero)
                {
                    // Whatever else changes meanwhile goes into the same write.
                    await Task.Delay(wait, time, cancellationToken);
                }

                try
                {
                    if (await WriteIfChangedAsync(cancellationToken))
                    {
                        lastWrite = time.GetTimestamp();
                    }

                    retry = TimeSpan.Zero;
                }
                catch (KubeApiException e) when (e.StatusCode == System.Net.HttpStatusCode.Conflict)
                {
                    // The server holds a version the watch has not brought yet: its event makes this due again.
                    LogConflict(ns, NodeDigest.ConfigMapName);
                }
                catch (Exception e) when (!cancellationToken.IsCancellationRequested && e is KubeApiException or HttpRequestException or OperationCanceledException)
                {
                    retry = retry == TimeSpan.Zero ? MinWriteInterval : TimeSpan.FromTicks(Math.Min(retry.Ticks * 2, MaxRetryDelay.Ticks));
                    LogWriteFailed(e, ns, NodeDigest.ConfigMapName, retry);
                    await Task.Delay(retry, time, cancellationToken);
                    _due.Writer.TryWrite(true);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Writes the digest when the server's copy differs; false when it did not write.</summary>
    private async Task<bool> WriteIfChangedAsync(CancellationToken cancellationToken)
    {
        Dictionary<string, string> data;
        V1ConfigMap? held;
        lock (_lock)
        {
            held = _held;
            if (NodeDigest.Same(held?.Data, _entries))
            {
                return false;
            }

            data = new Dictionary<string, string>(_entries, StringComparer.Ordinal);
        }

        var map = new V1ConfigMap
        {
            ApiVersion = "v1",
            Kind = "ConfigMap",
            Metadata = new V1ObjectMeta
            {
                Name = NodeDigest.ConfigMapName,
                NamespaceProperty = ns,
                Labels = new Dictionary<string, string> { ["app.kubernetes.io/name"] = "lballocator", ["app.kubernetes.io/component"] = "controller" },
                ResourceVersion = held?.Metadata.ResourceVersion,
            },
            Data = data,
        };
        var bytes = NodeDigest.DataBytes(data);
        if (bytes > NodeDigest.MaxDataBytes)
        {
            if (!_tooLarge)
            {
                _tooLarge = true;
                var message = $"the node digest of {data.Count} nodes takes {bytes} bytes, over the ConfigMap limit of {NodeDigest.MaxDataBytes}: "
                    + "the speakers keep the last one written, and nodes that joined since cannot announce";
                LogTooLarge(ns, NodeDigest.ConfigMapName, data.Count, bytes, NodeDigest.MaxDataBytes);
                target.Warn(map, "NodeDigestTooLarge", message);
            }

            return false;
        }

        _tooLarge = false;
        var written = held is null ? await target.CreateAsync(map, cancellationToken) : await target.ReplaceAsync(map, cancellationToken);
        lock (_lock)
        {
            // Unless the watch already brought a newer copy meanwhile.
            if (ReferenceEquals(_held, held))
            {
                _held = written;
            }
        }

        LogWritten(ns, NodeDigest.ConfigMapName, data.Count, bytes);
        return true;
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Wrote ConfigMap {Namespace}/{ConfigMap}: {Nodes} nodes, {Bytes} bytes")]
    private partial void LogWritten(string @namespace, string configMap, int nodes, long bytes);

    [LoggerMessage(Level = LogLevel.Debug, Message = "ConfigMap {Namespace}/{ConfigMap} changed under us; writing again once the watch brings it")]
    private partial void LogConflict(string @namespace, string configMap);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Writing ConfigMap {Namespace}/{ConfigMap} (the node digest) failed; retrying in {Delay}")]
    private partial void LogWriteFailed(Exception exception, string @namespace, string configMap, TimeSpan delay);

    [LoggerMessage(Level = LogLevel.Error, Message = "ConfigMap {Namespace}/{ConfigMap} (the node digest) of {Nodes} nodes would take {Bytes} bytes, over the limit of {Limit}: not written; the speakers keep the last one")]
    private partial void LogTooLarge(string @namespace, string configMap, int nodes, long bytes, int limit);
}

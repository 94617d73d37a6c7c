using System.Runtime.CompilerServices;
using System.Text.Json;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Kubernetes.Watching;

/// <summary>
/// The Nodes the node digest names (<see cref="NodeDigest"/>), as a source of Nodes: a cache of them behaves as one
/// of the Nodes themselves, and what reads it does not change. A list reads the digest's ConfigMap; a watch turns
/// each new version of it into an event per node whose entry came, changed or went, at the ConfigMap's
/// resourceVersion (a version that changes no entry is a bookmark, so the next watch resumes after it). No
/// ConfigMap means no nodes: the controller has not published yet.
/// </summary>
public sealed partial class DigestNodes
{
    private readonly ResourceSource<V1ConfigMap> _configMaps;
    private readonly ILogger _logger;
    private Dictionary<string, string> _entries = new(StringComparer.Ordinal); // as last listed or watched
    private bool? _present; // whether the ConfigMap was there, as last logged

    public DigestNodes(ResourceSource<V1ConfigMap> configMaps, ILogger logger)
    {
        _configMaps = configMaps;
        _logger = logger;
        Source = new ResourceSource<V1Node>("nodes (digest)", ListAsync, WatchAsync);
    }

    public ResourceSource<V1Node> Source { get; }

    private async Task<(IList<V1Node> Items, string ResourceVersion)> ListAsync(Client.ListOptions options, CancellationToken cancellationToken)
    {
        var (items, version) = await _configMaps.List(options, cancellationToken);
        var map = items.FirstOrDefault(m => m.Metadata.Name == NodeDigest.ConfigMapName);
        _entries = Entries(map);
        // At the ConfigMap's own version, so a list that finds it unchanged changes no node in the cache.
        return ([.. _entries.Select(entry => Node(entry.Key, entry.Value, map?.Metadata.ResourceVersion)).OfType<V1Node>()], version);
    }

    private async IAsyncEnumerable<(WatchEventType Type, V1Node Object)> WatchAsync(string version, int timeoutSeconds, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var last = version; // the version a watch cut short resumes from: the last one applied whole
        await foreach (var (type, map) in _configMaps.Watch(version, timeoutSeconds, cancellationToken))
        {
            var at = map.Metadata?.ResourceVersion;
            if (type is not (WatchEventType.Added or WatchEventType.Modified or WatchEventType.Deleted) || map.Metadata?.Name != NodeDigest.ConfigMapName)
            {
                last = at;
                yield return (WatchEventType.Bookmark, Bookmark(at));
                continue;
            }

            var now = Entries(type == WatchEventType.Deleted ? null : map);
            List<(string Name, string? Entry)> changes =
            [
                .. _entries.Keys.Where(name => !now.ContainsKey(name)).Select(name => (name, (string?)null)),
                .. now.Where(entry => _entries.GetValueOrDefault(entry.Key) != entry.Value).Select(entry => (entry.Key, (string?)entry.Value)),
            ];
            for (var i = 0; i < changes.Count; i++)
            {
                // Only the last event carries the new version: a watch cut short within one resumes before it.
                var (name, entry) = changes[i];
                var stamp = i == changes.Count - 1 ? at : last;
                var known = _entries.Remove(name);
                var node = entry is null ? null : Node(name, entry, stamp);
                if (entry is not null)
                {
                    _entries[name] = entry;
                }

                yield return node is null ? (WatchEventType.Deleted, Gone(name, stamp)) : (known ? WatchEventType.Modified : WatchEventType.Added, node);
            }

            last = at;
            if (changes.Count == 0)
            {
                yield return (WatchEventType.Bookmark, Bookmark(at));
            }
        }
    }

    private static V1Node Gone(string name, string? version) => new() { Metadata = new V1ObjectMeta { Name = name, ResourceVersion = version } };

    private static V1Node Bookmark(string? version) => new() { Metadata = new V1ObjectMeta { ResourceVersion = version } };

    /// <summary>The ConfigMap's entries (none when it is missing), logging when it appears or goes.</summary>
    private Dictionary<string, string> Entries(V1ConfigMap? map)
    {
        var present = map is not null;
        if (_present != present)
        {
            _present = present;
            if (present)
            {
                LogFound(map!.Metadata.NamespaceProperty, NodeDigest.ConfigMapName, map.Data?.Count ?? 0);
            }
            else
            {
                LogMissing(NodeDigest.ConfigMapName);
            }
        }

        return new Dictionary<string, string>(map?.Data ?? new Dictionary<string, string>(), StringComparer.Ordinal);
    }

    private V1Node? Node(string name, string entry, string? version)
    {
        try
        {
            return NodeDigest.Node(name, entry, version);
        }
        catch (JsonException e)
        {
            LogBadEntry(NodeDigest.ConfigMapName, name, e.Message);
            return null;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "ConfigMap {ConfigMap} (the node digest the controller publishes) does not exist: no node may announce until the controller writes it")]
    private partial void LogMissing(string configMap);

    [LoggerMessage(Level = LogLevel.Information, Message = "ConfigMap {Namespace}/{ConfigMap} (the node digest) found, with {Nodes} nodes")]
    private partial void LogFound(string @namespace, string configMap, int nodes);

    [LoggerMessage(Level = LogLevel.Warning, Message = "ConfigMap {ConfigMap}: the entry of node {Node} cannot be read ({Problem}); that node is left out of the election")]
    private partial void LogBadEntry(string configMap, string node, string problem);
}

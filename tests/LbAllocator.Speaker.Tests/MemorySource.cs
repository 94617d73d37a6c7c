using System.Runtime.CompilerServices;
using System.Threading.Channels;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Watching;

namespace LbAllocator.Speaker.Tests;

/// <summary>
/// One kind of object in memory, listed and watched as the API server would serve it: every change bumps a
/// resourceVersion and reaches every open watch. <see cref="Hang"/> makes lists and watches hang (an API outage).
/// </summary>
internal sealed class MemorySource<T>
    where T : class, IKubernetesObject<V1ObjectMeta>
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, T> _items = new(StringComparer.Ordinal);
    private readonly List<Channel<(WatchEventType, T)>> _watches = [];
    private readonly List<(int Version, WatchEventType Type, T Item)> _history = []; // a watch from a version replays what came after it
    private int _version;

    public MemorySource(params T[] items)
    {
        foreach (var item in items)
        {
            Put(item);
        }

        Source = new ResourceSource<T>(typeof(T).Name, ListAsync, WatchAsync);
    }

    public ResourceSource<T> Source { get; }

    /// <summary>While set, lists and new watches hang and open watches deliver nothing (an API server gone quiet).</summary>
    public bool Hang { get; set; }

    public void Put(T item)
    {
        lock (_lock)
        {
            var key = ObjectKey.Of(item);
            var type = _items.ContainsKey(key) ? WatchEventType.Modified : WatchEventType.Added;
            item.Metadata.ResourceVersion = (++_version).ToString(System.Globalization.CultureInfo.InvariantCulture);
            item.Metadata.Generation = (item.Metadata.Generation ?? 0) + 1;
            _items[key] = item;
            Publish(type, item);
        }
    }

    public void Delete(string key)
    {
        lock (_lock)
        {
            if (_items.Remove(key, out var item))
            {
                item.Metadata.ResourceVersion = (++_version).ToString(System.Globalization.CultureInfo.InvariantCulture);
                Publish(WatchEventType.Deleted, item);
            }
        }
    }

    public T? Get(string key)
    {
        lock (_lock)
        {
            return _items.GetValueOrDefault(key);
        }
    }

    private void Publish(WatchEventType type, T item)
    {
        _history.Add((_version, type, KubernetesJson.Deserialize<T>(KubernetesJson.Serialize(item))));
        // The cache keeps (and trims) what it is given: each watcher gets its own copy.
        foreach (var watch in _watches)
        {
            watch.Writer.TryWrite((type, KubernetesJson.Deserialize<T>(KubernetesJson.Serialize(item))));
        }
    }

    private async Task<(IList<T> Items, string ResourceVersion)> ListAsync(Kubernetes.Client.ListOptions options, CancellationToken cancellationToken)
    {
        while (Hang)
        {
            await Task.Delay(10, cancellationToken);
        }

        lock (_lock)
        {
            return ([.. _items.Values.Select(i => KubernetesJson.Deserialize<T>(KubernetesJson.Serialize(i)))], _version.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
    }

    private async IAsyncEnumerable<(WatchEventType Type, T Object)> WatchAsync(string version, int timeoutSeconds, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var channel = Channel.CreateUnbounded<(WatchEventType, T)>();
        lock (_lock)
        {
            var from = int.Parse(version, System.Globalization.CultureInfo.InvariantCulture);
            foreach (var (at, type, item) in _history.Where(h => h.Version > from))
            {
                channel.Writer.TryWrite((type, KubernetesJson.Deserialize<T>(KubernetesJson.Serialize(item))));
            }

            _watches.Add(channel);
        }

        try
        {
            while (await channel.Reader.WaitToReadAsync(cancellationToken))
            {
                while (Hang)
                {
                    await Task.Delay(10, cancellationToken);
                }

                while (channel.Reader.TryRead(out var change))
                {
                    yield return change;
                }
            }
        }
        finally
        {
            lock (_lock)
            {
                _watches.Remove(channel);
            }
        }
    }
}

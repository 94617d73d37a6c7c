using System.Collections.Concurrent;
using System.Net;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Client;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Kubernetes.Watching;

public static class ObjectKey
{
    /// <summary>"namespace/name" for namespaced objects, "name" otherwise: the cache and queue key.</summary>
    public static string Of(IKubernetesObject<V1ObjectMeta> item) =>
        string.IsNullOrEmpty(item.Metadata.NamespaceProperty) ? item.Metadata.Name : $"{item.Metadata.NamespaceProperty}/{item.Metadata.Name}";
}

/// <summary>What a change to an object touched, for reacting only to changes that matter.</summary>
public static class ObjectChange
{
    /// <summary>The spec changed (the generation moved), or the object came or went.</summary>
    public static bool SpecChanged(IMetadata<V1ObjectMeta>? old, IMetadata<V1ObjectMeta>? now) =>
        old is null || now is null || old.Metadata.Generation is null || old.Metadata.Generation != now.Metadata.Generation;

    public static bool SameLabels(IDictionary<string, string>? a, IDictionary<string, string>? b) =>
        (a?.Count ?? 0) == (b?.Count ?? 0) && (a ?? new Dictionary<string, string>()).All(kv => b!.TryGetValue(kv.Key, out var v) && v == kv.Value);
}

/// <summary>
/// How to list and watch one kind of object. The list takes a resourceVersion: "0" for any recent state (served from
/// the API server's watch cache), null for the latest (read from etcd). The watch ends when the server ends it; an
/// ERROR event (such as 410 Gone) ends it with an exception (<see cref="KubeApi.WatchAsync"/>).
/// </summary>
public sealed record ResourceSource<T>(
    string Resource,
    Func<string?, CancellationToken, Task<(IList<T> Items, string ResourceVersion)>> List,
    Func<string, CancellationToken, IAsyncEnumerable<(WatchEventType Type, T Object)>> Watch)
{
    /// <summary>Drops fields of this kind that no decision reads before the cache keeps an object (see <see cref="ResourceCache{T}"/>).</summary>
    public Action<T>? Trim { get; init; }
}

public sealed record CacheOptions
{
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(200);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// A local copy of one kind of object, kept current the way client-go's reflector does: list, then watch
/// from the list's resourceVersion; after a dropped or timed-out watch resume from the last version seen;
/// re-list when the server says that version is gone (410); back off exponentially on errors.
/// </summary>
/// <summary>What a component does with all its caches alike, whatever their kind.</summary>
public interface IWatchedCache
{
    Task RunAsync(CancellationToken cancellationToken);

    Task WaitForSyncAsync(CancellationToken cancellationToken);

    void RestartWatch();
}

public sealed partial class ResourceCache<T> : IWatchedCache where T : class, IKubernetesObject<V1ObjectMeta>
{
    private readonly ResourceSource<T> _source;
    private readonly ILogger _logger;
    private readonly CacheOptions _options;
    private readonly ConcurrentDictionary<string, T> _items = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationTokenSource? _attempt; // the list or watch in flight, for RestartWatch

    public ResourceCache(ResourceSource<T> source, ILogger logger, CacheOptions? options = null)
    {
        _source = source;
        _logger = logger;
        _options = options ?? new CacheOptions();
    }

    /// <summary>Raised for every change with the old and the new object (null when created or deleted).</summary>
    public event Action<T?, T?>? Changed;

    public int Lists { get; private set; }
    public int Watches { get; private set; }

    public bool TryGet(string key, out T? item) => _items.TryGetValue(key, out item);

    public IReadOnlyList<T> Items => [.. _items.Values];

    /// <summary>Completes once the first list has been loaded.</summary>
    public Task WaitForSyncAsync(CancellationToken cancellationToken) => _synced.Task.WaitAsync(cancellationToken);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var backoff = _options.InitialBackoff;
        string? version = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            Volatile.Write(ref _attempt, attempt);
            try
            {
                if (version is null)
                {
                    version = await ListAsync(attempt.Token);
                    backoff = _options.InitialBackoff;
                }

                Watches++;
                await foreach (var (type, item) in _source.Watch(version, attempt.Token))
                {
                    version = Apply(type, item) ?? version;
                    backoff = _options.InitialBackoff;
                }

                attempt.Token.ThrowIfCancellationRequested();

                // The server ended the watch (timeout or dropped connection): resume from the last version.
                LogWatchEnded(_source.Resource, version);
            }
            catch (Exception) when (!cancellationToken.IsCancellationRequested && attempt.IsCancellationRequested)
            {
                // RestartWatch: a fresh connection at once, from the last version seen.
                LogRestarted(_source.Resource, version);
            }
            catch (Exception e) when (IsGone(e))
            {
                LogGone(_source.Resource, version);
                version = null;
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                LogWatchFailed(e, _source.Resource, backoff);
                // RestartWatch cuts the wait short too.
                await Task.Delay(backoff, attempt.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                backoff = TimeSpan.FromTicks(Math.Min(_options.MaxBackoff.Ticks, backoff.Ticks * 2));
            }
            finally
            {
                Interlocked.CompareExchange(ref _attempt, null, attempt);
            }
        }
    }

    /// <summary>
    /// Abandons the current list or watch request and starts again on a new connection from the last version
    /// seen: for a caller that knows the watch has gone quiet on a connection that hangs (after a network cut,
    /// TCP retransmissions may not resume it for a minute or more).
    /// </summary>
    public void RestartWatch()
    {
        try
        {
            Volatile.Read(ref _attempt)?.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // That attempt just ended: the next one is fresh anyway.
        }
    }

    private async Task<string> ListAsync(CancellationToken cancellationToken)
    {
        // The first list takes whatever the API server's watch cache holds, as client-go's reflector does: it costs the
        // server no etcd read, which matters when every speaker starts at once; the watch then brings it up to date.
        // A list after 410 Gone reads the latest, so the cache never goes back to an older state than it has seen.
        var (items, version) = await _source.List(Lists == 0 ? "0" : null, cancellationToken);
        Lists++;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var item in items)
        {
            var key = ObjectKey.Of(item);
            seen.Add(key);
            _items.TryGetValue(key, out var old);
            if (old?.Metadata.ResourceVersion != item.Metadata.ResourceVersion)
            {
                _items[key] = Trimmed(item);
                Changed?.Invoke(old, item);
            }
        }

        // Objects deleted while we were not watching.
        foreach (var key in _items.Keys.Where(k => !seen.Contains(k)).ToList())
        {
            if (_items.TryRemove(key, out var gone))
            {
                Changed?.Invoke(gone, null);
            }
        }

        LogListed(_source.Resource, items.Count, version);
        _synced.TrySetResult();
        return version;
    }

    /// <summary>Applies one watch event; returns the resourceVersion to resume from.</summary>
    private string? Apply(WatchEventType type, T item)
    {
        var version = item.Metadata?.ResourceVersion;
        switch (type)
        {
            case WatchEventType.Added or WatchEventType.Modified:
                var key = ObjectKey.Of(item);
                _items.TryGetValue(key, out var old);
                _items[key] = Trimmed(item);
                Changed?.Invoke(old, item);
                break;
            case WatchEventType.Deleted:
                if (_items.TryRemove(ObjectKey.Of(item), out var gone))
                {
                    Changed?.Invoke(gone, null);
                }

                break;
            case WatchEventType.Bookmark:
                break;
            default:
                return null;
        }

        return version;
    }

    /// <summary>
    /// What the cache keeps of an object. Never managedFields, which nothing here reads and which are often the
    /// larger part of an object (the server keeps its own when a write comes without them); then whatever the
    /// source drops for its kind. Memory per cached object is most of a component's footprint in a big cluster.
    /// </summary>
    private T Trimmed(T item)
    {
        item.Metadata.ManagedFields = null;
        _source.Trim?.Invoke(item);
        return item;
    }

    /// <summary>410 Gone: the version we would resume from is older than the server keeps.</summary>
    private static bool IsGone(Exception e) => e is KubeApiException { StatusCode: HttpStatusCode.Gone };

    [LoggerMessage(Level = LogLevel.Debug, Message = "Listed {Resource}: {Count} objects at resourceVersion {ResourceVersion}")]
    private partial void LogListed(string resource, int count, string resourceVersion);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Watch of {Resource} ended; resuming from resourceVersion {ResourceVersion}")]
    private partial void LogWatchEnded(string resource, string? resourceVersion);

    [LoggerMessage(Level = LogLevel.Information, Message = "Watch of {Resource} restarted on a new connection from resourceVersion {ResourceVersion}")]
    private partial void LogRestarted(string resource, string? resourceVersion);

    [LoggerMessage(Level = LogLevel.Information, Message = "Watch of {Resource} from resourceVersion {ResourceVersion} expired (410 Gone); listing again")]
    private partial void LogGone(string resource, string? resourceVersion);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Watching {Resource} failed; retrying in {Backoff}")]
    private partial void LogWatchFailed(Exception exception, string resource, TimeSpan backoff);
}

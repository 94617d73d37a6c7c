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
/// How to list and watch one kind of object. The list takes the query the cache chooses (<see cref="ListOptions"/>:
/// which version, and pages) and returns every object with the list's resourceVersion. The watch runs from a
/// resourceVersion until the server ends it after the given number of seconds; an ERROR event (such as 410 Gone)
/// ends it with an exception (<see cref="KubeApi.WatchAsync"/>).
/// </summary>
public sealed record ResourceSource<T>(
    string Resource,
    Func<ListOptions, CancellationToken, Task<(IList<T> Items, string ResourceVersion)>> List,
    Func<string, int, CancellationToken, IAsyncEnumerable<(WatchEventType Type, T Object)>> Watch)
{
    /// <summary>Drops fields of this kind that no decision reads before the cache keeps an object (see <see cref="ResourceCache{T}"/>).</summary>
    public Action<T>? Trim { get; init; }
}

/// <summary>A cache's pacing, client-go's reflector's by default; the clock and the randomness are injectable for tests.</summary>
public sealed record CacheOptions
{
    /// <summary>The backoff's first step; each failure doubles it up to <see cref="MaxBackoff"/> (<see cref="Backoff"/>).</summary>
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(800);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>After this long without a failure the backoff starts again from <see cref="InitialBackoff"/>.</summary>
    public TimeSpan BackoffReset { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>
    /// Each watch asks the server to end it after this times (1 + a random fraction), so the watches of many clients
    /// started together (after an API server restart) do not all end, and come back, together.
    /// </summary>
    public TimeSpan MinWatchTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>A watch that ends sooner than this with nothing delivered counts as a failure: it backs off.</summary>
    public TimeSpan ShortWatch { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Objects per page when listing the latest state from etcd (client-go's pager).</summary>
    public int PageSize { get; init; } = 500;

    public TimeProvider Time { get; init; } = TimeProvider.System;
    public Random Random { get; init; } = Random.Shared;
}

/// <summary>What a component does with all its caches alike, whatever their kind.</summary>
public interface IWatchedCache
{
    Task RunAsync(CancellationToken cancellationToken);

    Task WaitForSyncAsync(CancellationToken cancellationToken);

    void RestartWatch();
}

/// <summary>
/// A local copy of one kind of object, kept current the way client-go's reflector does. The first list takes whatever
/// the API server's watch cache holds (resourceVersion "0": no etcd read when every speaker starts at once); then it
/// watches from the list's version, and after a watch ends or fails resumes from the last version seen. When that
/// version has expired (410 Gone, as every watch gets after an API server restart) it lists again from the watch cache
/// at that version or newer, never going back in time; only when the server cannot list at that version either does
/// it read the latest from etcd, in pages. Failures back off with full jitter (<see cref="Backoff"/>), and so does a
/// watch that ends at once; watch timeouts are randomised.
/// </summary>
public sealed partial class ResourceCache<T> : IWatchedCache where T : class, IKubernetesObject<V1ObjectMeta>
{
    private readonly ResourceSource<T> _source;
    private readonly ILogger _logger;
    private readonly CacheOptions _options;
    private readonly ConcurrentDictionary<string, T> _items = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationTokenSource? _attempt; // the list or watch in flight, for RestartWatch
    private Step _next = Step.ListAnyRecent;

    public ResourceCache(ResourceSource<T> source, ILogger logger, CacheOptions? options = null)
    {
        _source = source;
        _logger = logger;
        _options = options ?? new CacheOptions();
    }

    /// <summary>What the cache does next: list (and how), or watch from <see cref="ResourceVersion"/>.</summary>
    private enum Step
    {
        ListAnyRecent,
        ListNotOlderThanLast,
        ListLatest,
        Watch,
    }

    /// <summary>Raised for every change with the old and the new object (null when created or deleted).</summary>
    public event Action<T?, T?>? Changed;

    public int Lists { get; private set; }
    public int Watches { get; private set; }

    /// <summary>The last resourceVersion seen, from a list or a watch event; the next watch starts there.</summary>
    public string? ResourceVersion { get; private set; }

    public bool TryGet(string key, out T? item) => _items.TryGetValue(key, out item);

    public IReadOnlyList<T> Items => [.. _items.Values];

    /// <summary>Completes once the first list has been loaded.</summary>
    public Task WaitForSyncAsync(CancellationToken cancellationToken) => _synced.Task.WaitAsync(cancellationToken);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var backoff = new Backoff(_options.InitialBackoff, _options.MaxBackoff, _options.BackoffReset, _options.Time, _options.Random);
        while (!cancellationToken.IsCancellationRequested)
        {
            using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            Volatile.Write(ref _attempt, attempt);
            try
            {
                var wait = await StepAsync(backoff, attempt, cancellationToken);
                if (wait > TimeSpan.Zero)
                {
                    // RestartWatch cuts the wait short too.
                    await Task.Delay(wait, _options.Time, attempt.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                }
            }
            finally
            {
                Interlocked.CompareExchange(ref _attempt, null, attempt);
            }
        }
    }

    /// <summary>One list or watch; returns how long to wait before the next.</summary>
    private async Task<TimeSpan> StepAsync(Backoff backoff, CancellationTokenSource attempt, CancellationToken cancellationToken)
    {
        try
        {
            if (_next != Step.Watch)
            {
                await ListAsync(_next, attempt.Token);
                _next = Step.Watch;
            }

            if (await WatchAsync(attempt.Token))
            {
                // The server ended the watch (its timeout, or a dropped connection): resume from the last version.
                LogWatchEnded(_source.Resource, ResourceVersion);
                return TimeSpan.Zero;
            }

            var wait = backoff.Next();
            LogWatchEndedAtOnce(_source.Resource, ResourceVersion, wait);
            return wait;
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested && attempt.IsCancellationRequested)
        {
            // RestartWatch: a fresh connection at once, from the last version seen.
            LogRestarted(_source.Resource, ResourceVersion);
            return TimeSpan.Zero;
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested && _next == Step.Watch && VersionUnavailable(e))
        {
            _next = Step.ListNotOlderThanLast;
            var wait = backoff.Next();
            LogGone(_source.Resource, ResourceVersion, wait);
            return wait;
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested && _next == Step.ListNotOlderThanLast && VersionUnavailable(e))
        {
            // As client-go: at once, since the server answered; the latest cannot be older than what we have seen.
            _next = Step.ListLatest;
            LogListUnavailable(_source.Resource, ResourceVersion, e.Message);
            return TimeSpan.Zero;
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            var wait = backoff.Next();
            LogFailed(e, _next == Step.Watch ? "Watching" : "Listing", _source.Resource, wait);
            return wait;
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

    /// <summary>Watches from the last version until the stream ends; false when it ended at once with nothing delivered.</summary>
    private async Task<bool> WatchAsync(CancellationToken cancellationToken)
    {
        var timeoutSeconds = (int)(_options.MinWatchTimeout.TotalSeconds * (1 + _options.Random.NextDouble()));
        var started = _options.Time.GetTimestamp();
        var delivered = false;
        Watches++;
        await foreach (var (type, item) in _source.Watch(ResourceVersion!, timeoutSeconds, cancellationToken))
        {
            ResourceVersion = Apply(type, item) ?? ResourceVersion;
            delivered = true;
        }

        cancellationToken.ThrowIfCancellationRequested();
        return delivered || _options.Time.GetElapsedTime(started) >= _options.ShortWatch;
    }

    private async Task ListAsync(Step step, CancellationToken cancellationToken)
    {
        var options = step switch
        {
            Step.ListAnyRecent => new ListOptions { ResourceVersion = "0" },
            // No limit: with one, kube-apiserver sends a list at a version other than "0" to etcd.
            Step.ListNotOlderThanLast => new ListOptions { ResourceVersion = ResourceVersion, ResourceVersionMatch = ListOptions.NotOlderThan },
            _ => new ListOptions { Limit = _options.PageSize },
        };
        var (items, version) = await _source.List(options, cancellationToken);
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

        ResourceVersion = version;
        LogListed(_source.Resource, items.Count, version);
        _synced.TrySetResult();
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

    /// <summary>
    /// The server cannot serve from the version asked for: 410 Gone (older than it keeps: a watch's ERROR event, or a
    /// list's), or newer than it has (504 with cause ResourceVersionTooLarge: etcd restored from a backup, say).
    /// </summary>
    private static bool VersionUnavailable(Exception e) => e is KubeApiException api
        && (api.StatusCode == HttpStatusCode.Gone || api.Status?.Details?.Causes?.Any(c => c.Reason == "ResourceVersionTooLarge") == true);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Listed {Resource}: {Count} objects at resourceVersion {ResourceVersion}")]
    private partial void LogListed(string resource, int count, string resourceVersion);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Watch of {Resource} ended; resuming from resourceVersion {ResourceVersion}")]
    private partial void LogWatchEnded(string resource, string? resourceVersion);

    [LoggerMessage(Level = LogLevel.Information, Message = "Watch of {Resource} from resourceVersion {ResourceVersion} ended at once with nothing; retrying in {Backoff}")]
    private partial void LogWatchEndedAtOnce(string resource, string? resourceVersion, TimeSpan backoff);

    [LoggerMessage(Level = LogLevel.Information, Message = "Watch of {Resource} restarted on a new connection from resourceVersion {ResourceVersion}")]
    private partial void LogRestarted(string resource, string? resourceVersion);

    [LoggerMessage(Level = LogLevel.Information, Message = "Watch of {Resource} from resourceVersion {ResourceVersion} expired (410 Gone); listing again from the watch cache in {Backoff}")]
    private partial void LogGone(string resource, string? resourceVersion, TimeSpan backoff);

    [LoggerMessage(Level = LogLevel.Information, Message = "Listing {Resource} at resourceVersion {ResourceVersion} refused ({Reason}); listing the latest")]
    private partial void LogListUnavailable(string resource, string? resourceVersion, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Doing} {Resource} failed; retrying in {Backoff}")]
    private partial void LogFailed(Exception exception, string doing, string resource, TimeSpan backoff);
}

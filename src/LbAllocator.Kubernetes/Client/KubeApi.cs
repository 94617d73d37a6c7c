using System.Net;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Kubernetes.Client;

/// <summary>
/// The Kubernetes API as the components use it: list, watch, get, create, replace, merge-patch and delete, for the
/// kinds in <see cref="KubeResources"/>, over one HttpClient. It replaces KubernetesClient's client class, whose JSON
/// context compiles in every Kubernetes model (README, "Why our own API client"); the models themselves still come
/// from KubernetesClient. It keeps client-go's manners (<see cref="KubeApiSettings"/>): a client-side rate limit, and
/// Retry-After honoured.
/// </summary>
public sealed partial class KubeApi : IDisposable
{
    /// <summary>How long a request may wait for its response headers (a watch: for its stream to start).</summary>
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(100);

    private readonly HttpClient _http;
    private readonly KubeApiSettings _settings;
    private readonly TokenBucket? _bucket;

    /// <param name="handlers">Handlers between the client and the connection, outermost first (metrics, test gates).</param>
    public KubeApi(KubeConnection connection, params DelegatingHandler[] handlers)
        : this(connection, KubeApiSettings.Unlimited, handlers)
    {
    }

    /// <param name="handlers">Handlers between the client and the connection, outermost first (metrics, test gates).</param>
    public KubeApi(KubeConnection connection, KubeApiSettings settings, params DelegatingHandler[] handlers)
    {
        _settings = settings;
        _bucket = settings.Qps is { } qps ? new TokenBucket(qps, settings.Burst, settings.Time) : null;
        HttpMessageHandler inner = connection.CreateHandler();
        for (var i = handlers.Length - 1; i >= 0; i--)
        {
            handlers[i].InnerHandler = inner;
            inner = handlers[i];
        }

        // HTTP/2 where the server offers it (TLS), as kubectl and KubernetesClient: the watches share one connection.
        _http = new HttpClient(inner)
        {
            BaseAddress = new Uri(connection.Host.TrimEnd('/') + "/"),
            Timeout = RequestTimeout,
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        };
    }

    public void Dispose() => _http.Dispose();

    /// <param name="resourceVersion">"0": any recent state, from the API server's watch cache; null: the latest, from etcd.</param>
    public Task<KubeList<T>> ListAsync<T>(
        KubeResource<T> resource, string? ns, string? labelSelector = null, string? resourceVersion = null, CancellationToken cancellationToken = default)
        where T : class => ListAsync(resource, ns, new ListOptions { LabelSelector = labelSelector, ResourceVersion = resourceVersion }, cancellationToken);

    /// <summary>One page of a list (all of it when <see cref="ListOptions.Limit"/> is not set or the server ignores it).</summary>
    public Task<KubeList<T>> ListAsync<T>(KubeResource<T> resource, string? ns, ListOptions options, CancellationToken cancellationToken = default)
        where T : class => SendAsync(HttpMethod.Get, resource.CollectionPath(ns) + options.Query(), null, resource.List, Throttled(resource), cancellationToken);

    /// <summary>
    /// Every page of a list, as client-go's pager reads it: follows the continue tokens (each page at the first one's
    /// resourceVersion); when a token has expired (410: etcd compacted that version while we read), reads the whole
    /// list again in one request without a limit. The result carries the first page's resourceVersion.
    /// </summary>
    public async Task<KubeList<T>> ListAllAsync<T>(KubeResource<T> resource, string? ns, ListOptions options, CancellationToken cancellationToken = default)
        where T : class
    {
        var first = await ListAsync(resource, ns, options, cancellationToken);
        var next = first.Metadata?.ContinueProperty;
        if (string.IsNullOrEmpty(next))
        {
            return first;
        }

        var items = new List<T>(first.Items ?? []);
        while (!string.IsNullOrEmpty(next))
        {
            KubeList<T> page;
            try
            {
                // The token carries the version; the server refuses one given with it.
                page = await ListAsync(resource, ns, options with { ResourceVersion = null, ResourceVersionMatch = null, Continue = next }, cancellationToken);
            }
            catch (KubeApiException e) when (e.StatusCode == HttpStatusCode.Gone)
            {
                LogContinueExpired(_settings.Logger, resource.Plural, items.Count);
                return await ListAsync(resource, ns, options with { Limit = null }, cancellationToken);
            }

            items.AddRange(page.Items ?? []);
            next = page.Metadata?.ContinueProperty;
        }

        return new KubeList<T> { Metadata = new V1ListMeta { ResourceVersion = first.Metadata!.ResourceVersion }, Items = items };
    }

    /// <summary>
    /// Watches from <paramref name="resourceVersion"/>, with bookmarks, until the server ends the stream (after
    /// <paramref name="timeoutSeconds"/>) or the connection drops: then the enumeration just ends. An ERROR event (410
    /// Gone: that version is no longer kept) ends it with a <see cref="KubeApiException"/>.
    /// </summary>
    /// <param name="fieldSelector">"metadata.name=NAME" watches one object, which RBAC can limit to that name.</param>
    public async IAsyncEnumerable<(WatchEventType Type, T Object)> WatchAsync<T>(
        KubeResource<T> resource, string? ns, string? labelSelector, string? fieldSelector, string resourceVersion, int timeoutSeconds,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
        where T : class
    {
        var query = new StringBuilder($"?watch=true&allowWatchBookmarks=true&resourceVersion={Uri.EscapeDataString(resourceVersion)}&timeoutSeconds={timeoutSeconds}");
        if (labelSelector is not null)
        {
            query.Append("&labelSelector=").Append(Uri.EscapeDataString(labelSelector));
        }

        if (fieldSelector is not null)
        {
            query.Append("&fieldSelector=").Append(Uri.EscapeDataString(fieldSelector));
        }

        var path = resource.CollectionPath(ns) + query;
        using var exchange = await SendWithRetriesAsync(HttpMethod.Get, path, null, HttpCompletionOption.ResponseHeadersRead, Throttled(resource), cancellationToken);
        var response = exchange.Response;
        await ThrowIfFailedAsync(response, exchange.Request, cancellationToken);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken), Encoding.UTF8);
        while (true)
        {
            string? line;
            try
            {
                line = await reader.ReadLineAsync(cancellationToken);
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested && e is IOException or HttpRequestException)
            {
                yield break; // the connection dropped: the caller resumes from the last version it saw
            }

            if (line is null)
            {
                yield break;
            }

            if (line.Length == 0)
            {
                continue;
            }

            var json = Encoding.UTF8.GetBytes(line);
            if (IsError(json))
            {
                var status = JsonSerializer.Deserialize(json, KubeJson.Default.WatchEventV1Status)?.Item;
                throw new KubeApiException((HttpStatusCode)(status?.Code ?? 500), status, $"watch of {path}: {status?.Code} {status?.Reason}: {status?.Message}");
            }

            var watched = JsonSerializer.Deserialize(json, resource.Event) ?? throw new JsonException($"watch of {path}: an empty event");
            if (watched.Item is { } item)
            {
                yield return (watched.Type, item);
            }
        }
    }

    /// <summary>
    /// Whether a watch event is an ERROR, whose object is a Status rather than the watched kind (and would not read as
    /// one). Reads only up to the "type" property, which the API server writes first.
    /// </summary>
    private static bool IsError(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            return false;
        }

        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var isType = reader.ValueTextEquals("type"u8);
            reader.Read();
            if (isType)
            {
                return reader.TokenType == JsonTokenType.String && reader.ValueTextEquals("ERROR"u8);
            }

            reader.Skip();
        }

        return false;
    }

    public Task<T> GetAsync<T>(KubeResource<T> resource, string? ns, string name, string? subresource = null, CancellationToken cancellationToken = default)
        where T : class => SendAsync(HttpMethod.Get, resource.ItemPath(ns, name, subresource), null, resource.Item, Throttled(resource), cancellationToken);

    public Task<T> CreateAsync<T>(KubeResource<T> resource, string? ns, T body, CancellationToken cancellationToken = default)
        where T : class => SendAsync(HttpMethod.Post, resource.CollectionPath(ns), Json(body, resource.Item), resource.Item, Throttled(resource), cancellationToken);

    /// <summary>PUT: fails with 409 Conflict when the body's resourceVersion is no longer the object's.</summary>
    public Task<T> ReplaceAsync<T>(KubeResource<T> resource, string? ns, string name, T body, string? subresource = null, CancellationToken cancellationToken = default)
        where T : class => SendAsync(HttpMethod.Put, resource.ItemPath(ns, name, subresource), Json(body, resource.Item), resource.Item, Throttled(resource), cancellationToken);

    /// <summary>A JSON merge patch (RFC 7386): the fields it names are set, null removes one.</summary>
    public Task<T> PatchAsync<T>(KubeResource<T> resource, string? ns, string name, string mergePatch, string? subresource = null, CancellationToken cancellationToken = default)
        where T : class => SendAsync(
            HttpMethod.Patch, resource.ItemPath(ns, name, subresource), new Body(Encoding.UTF8.GetBytes(mergePatch), "application/merge-patch+json"), resource.Item, Throttled(resource), cancellationToken);

    public async Task DeleteAsync<T>(KubeResource<T> resource, string? ns, string name, CancellationToken cancellationToken = default)
        where T : class
    {
        using var exchange = await SendWithRetriesAsync(HttpMethod.Delete, resource.ItemPath(ns, name), null, HttpCompletionOption.ResponseContentRead, Throttled(resource), cancellationToken);
        await ThrowIfFailedAsync(exchange.Response, exchange.Request, cancellationToken);
    }

    /// <summary>
    /// Leases are the components' heartbeats (the speaker's liveness, the controller's leadership) and skip the bucket,
    /// as kubelet sends its node lease through a client with no client-side limit and controller-manager its leader
    /// election through a client of its own: a burst of status writes must not hold a renewal past its deadline.
    /// </summary>
    private static bool Throttled<T>(KubeResource<T> resource)
        where T : class => !ReferenceEquals(resource, KubeResources.Leases);

    private static Body Json<T>(T body, JsonTypeInfo<T> info) => new(JsonSerializer.SerializeToUtf8Bytes(body, info), "application/json");

    private async Task<TResult> SendAsync<TResult>(HttpMethod method, string path, Body? body, JsonTypeInfo<TResult> result, bool throttled, CancellationToken cancellationToken)
    {
        using var exchange = await SendWithRetriesAsync(method, path, body, HttpCompletionOption.ResponseContentRead, throttled, cancellationToken);
        var response = exchange.Response;
        await ThrowIfFailedAsync(response, exchange.Request, cancellationToken);
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        return await JsonSerializer.DeserializeAsync(stream, result, cancellationToken)
            ?? throw new JsonException($"{method} {path}: the response had no object");
    }

    /// <summary>A failed request becomes a <see cref="KubeApiException"/> naming the request, the code and the server's message.</summary>
    private static async Task ThrowIfFailedAsync(HttpResponseMessage response, HttpRequestMessage request, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }

        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        V1Status? status = null;
        try
        {
            status = JsonSerializer.Deserialize(text, KubeJson.Default.V1Status);
        }
        catch (JsonException)
        {
            // Not a Status (a proxy's error page, say): the text itself goes into the message.
        }

        var said = status?.Message ?? (text.Length > 200 ? text[..200] : text);
        throw new KubeApiException(response.StatusCode, status, $"{request.Method} {request.RequestUri}: {(int)response.StatusCode} {response.ReasonPhrase}: {said}");
    }
}

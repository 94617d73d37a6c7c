using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using k8s;
using k8s.Models;

namespace LbAllocator.Kubernetes.Client;

/// <summary>
/// The Kubernetes API as the components use it: list, watch, get, create, replace, merge-patch and delete, for the
/// kinds in <see cref="KubeResources"/>, over one HttpClient. It replaces KubernetesClient's client class, whose JSON
/// context compiles in every Kubernetes model (README, "Why our own API client"); the models themselves still come
/// from KubernetesClient.
/// </summary>
public sealed class KubeApi : IDisposable
{
    /// <summary>How long a request may wait for its response headers (a watch: for its stream to start).</summary>
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(100);

    private readonly HttpClient _http;

    /// <param name="handlers">Handlers between the client and the connection, outermost first (metrics, test gates).</param>
    public KubeApi(KubeConnection connection, params DelegatingHandler[] handlers)
    {
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
    public async Task<KubeList<T>> ListAsync<T>(
        KubeResource<T> resource, string? ns, string? labelSelector = null, string? resourceVersion = null, CancellationToken cancellationToken = default)
        where T : class
    {
        var query = new List<string>();
        if (labelSelector is not null)
        {
            query.Add($"labelSelector={Uri.EscapeDataString(labelSelector)}");
        }

        if (resourceVersion is not null)
        {
            query.Add($"resourceVersion={Uri.EscapeDataString(resourceVersion)}");
        }

        var path = resource.CollectionPath(ns) + (query.Count == 0 ? "" : "?" + string.Join('&', query));
        return await SendAsync(HttpMethod.Get, path, null, resource.List, cancellationToken);
    }

    /// <summary>
    /// Watches from <paramref name="resourceVersion"/>, with bookmarks, until the server ends the stream (after
    /// <paramref name="timeoutSeconds"/>) or the connection drops: then the enumeration just ends. An ERROR event (410
    /// Gone: that version is no longer kept) ends it with a <see cref="KubeApiException"/>.
    /// </summary>
    public async IAsyncEnumerable<(WatchEventType Type, T Object)> WatchAsync<T>(
        KubeResource<T> resource, string? ns, string? labelSelector, string resourceVersion, int timeoutSeconds,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
        where T : class
    {
        var query = new StringBuilder($"?watch=true&allowWatchBookmarks=true&resourceVersion={Uri.EscapeDataString(resourceVersion)}&timeoutSeconds={timeoutSeconds}");
        if (labelSelector is not null)
        {
            query.Append("&labelSelector=").Append(Uri.EscapeDataString(labelSelector));
        }

        var path = resource.CollectionPath(ns) + query;
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        await ThrowIfFailedAsync(response, request, cancellationToken);
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
        where T : class => SendAsync(HttpMethod.Get, resource.ItemPath(ns, name, subresource), null, resource.Item, cancellationToken);

    public Task<T> CreateAsync<T>(KubeResource<T> resource, string? ns, T body, CancellationToken cancellationToken = default)
        where T : class => SendAsync(HttpMethod.Post, resource.CollectionPath(ns), Content(body, resource.Item), resource.Item, cancellationToken);

    /// <summary>PUT: fails with 409 Conflict when the body's resourceVersion is no longer the object's.</summary>
    public Task<T> ReplaceAsync<T>(KubeResource<T> resource, string? ns, string name, T body, string? subresource = null, CancellationToken cancellationToken = default)
        where T : class => SendAsync(HttpMethod.Put, resource.ItemPath(ns, name, subresource), Content(body, resource.Item), resource.Item, cancellationToken);

    /// <summary>A JSON merge patch (RFC 7386): the fields it names are set, null removes one.</summary>
    public Task<T> PatchAsync<T>(KubeResource<T> resource, string? ns, string name, string mergePatch, string? subresource = null, CancellationToken cancellationToken = default)
        where T : class
    {
        var content = new StringContent(mergePatch, Encoding.UTF8);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/merge-patch+json");
        return SendAsync(HttpMethod.Patch, resource.ItemPath(ns, name, subresource), content, resource.Item, cancellationToken);
    }

    public async Task DeleteAsync<T>(KubeResource<T> resource, string? ns, string name, CancellationToken cancellationToken = default)
        where T : class
    {
        using var request = new HttpRequestMessage(HttpMethod.Delete, resource.ItemPath(ns, name));
        using var response = await _http.SendAsync(request, cancellationToken);
        await ThrowIfFailedAsync(response, request, cancellationToken);
    }

    private static ByteArrayContent Content<T>(T body, JsonTypeInfo<T> info)
    {
        var content = new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(body, info));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return content;
    }

    private async Task<TResult> SendAsync<TResult>(HttpMethod method, string path, HttpContent? content, JsonTypeInfo<TResult> result, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, path) { Content = content };
        using var response = await _http.SendAsync(request, cancellationToken);
        await ThrowIfFailedAsync(response, request, cancellationToken);
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
        return await JsonSerializer.DeserializeAsync(body, result, cancellationToken)
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

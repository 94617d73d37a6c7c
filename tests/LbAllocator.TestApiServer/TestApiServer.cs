using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using k8s;
using LbAllocator.Kubernetes.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace LbAllocator.TestApiServer;

public sealed record RecordedRequest(string Method, string Path, string Query, string UserAgent);

/// <summary>
/// A test double of kube-apiserver over HTTP on 127.0.0.1, for the resources in <see cref="ResourceType.All"/>:
/// list, watch (ADDED/MODIFIED/DELETED/BOOKMARK, 410 for expired versions), get, create, update, merge /
/// JSON / strategic patch, delete, the status subresource, 409 on stale resourceVersions and label
/// selectors; with switches to drop watches, to fail requests with 500s, and to answer chosen requests with
/// another code (<see cref="Inject"/>).
/// </summary>
public sealed class TestApiServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<RecordedRequest> _requests = new();
    private int _failNext;
    private long _failUntilTicks;
    private long _failPathUntilTicks;
    private volatile string _failPath = "";
    private readonly List<Fault> _faults = [];

    private TestApiServer(WebApplication app, Store store, TimeSpan bookmarkInterval)
    {
        _app = app;
        Store = store;
        BookmarkInterval = bookmarkInterval;
    }

    public Store Store { get; }
    public TimeSpan BookmarkInterval { get; }
    public Uri Url { get; private set; } = null!;

    public IReadOnlyCollection<RecordedRequest> Requests => _requests;

    /// <param name="unixSocket">
    /// Also listen on this Unix socket: it is reachable from other network namespaces (through a forwarder
    /// there), where 127.0.0.1 of this one is not.
    /// </param>
    public static async Task<TestApiServer> StartAsync(TimeSpan? bookmarkInterval = null, int historyLimit = 10_000, string? unixSocket = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls(unixSocket is null ? ["http://127.0.0.1:0"] : ["http://127.0.0.1:0", $"http://unix:{unixSocket}"]);
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var server = new TestApiServer(app, new Store(historyLimit), bookmarkInterval ?? TimeSpan.FromSeconds(1));
        app.Run(server.HandleAsync);
        await app.StartAsync();
        var address = app.Services.GetService(typeof(IServer)) is IServer s ? s.Features.Get<IServerAddressesFeature>()!.Addresses.First(a => !a.Contains("unix:", StringComparison.Ordinal)) : throw new InvalidOperationException("no server");
        server.Url = new Uri(address);
        return server;
    }

    /// <summary>A kubeconfig that points a process at <paramref name="server"/> (this double, or a forwarder to it).</summary>
    public static string Kubeconfig(string server) => $"""
        apiVersion: v1
        kind: Config
        clusters:
        - name: lab
          cluster:
            server: {server}
        users:
        - name: lab
          user:
            token: lab
        contexts:
        - name: lab
          context:
            cluster: lab
            user: lab
        current-context: lab
        """;

    public k8s.Kubernetes CreateClient() => new(new KubernetesClientConfiguration { Host = Url.ToString() });

    /// <summary>The components' client (<see cref="KubeApi"/>) for this server, through the given handlers.</summary>
    public KubeApi CreateApi(params DelegatingHandler[] handlers) => new(new KubeConnection { Host = Url.ToString() }, handlers);

    /// <summary>Closes every open watch stream abruptly.</summary>
    public void DropWatches() => Store.DropWatches();

    public int OpenWatches => Store.OpenWatches;

    /// <summary>The next <paramref name="count"/> requests get 500 Internal Server Error.</summary>
    public void FailRequests(int count) => Interlocked.Exchange(ref _failNext, count);

    /// <summary>Every request for this long gets 500 Internal Server Error.</summary>
    public void FailRequestsFor(TimeSpan duration) => Interlocked.Exchange(ref _failUntilTicks, DateTime.UtcNow.Add(duration).Ticks);

    /// <summary>Every write (not GET) whose path contains <paramref name="pathContains"/> (say "/events") gets 500 for this long; the rest is served.</summary>
    public void FailWritesFor(TimeSpan duration, string pathContains)
    {
        _failPath = pathContains;
        Interlocked.Exchange(ref _failPathUntilTicks, DateTime.UtcNow.Add(duration).Ticks);
    }

    public void CompactHistory() => Store.CompactHistory();

    /// <summary>
    /// The next <paramref name="times"/> requests that <paramref name="matches"/> get <paramref name="code"/> (a Status
    /// with kube-apiserver's reason for it) instead of being served, with <paramref name="retryAfter"/> as the Retry-After
    /// header when given (seconds, or an HTTP date): as API Priority and Fairness answers 429 and a proxy in front of
    /// the server 503. A request answered 200 gets an empty body: a watch that ends at once, with no event.
    /// </summary>
    public void Inject(Func<RecordedRequest, bool> matches, int code, int times = 1, string? retryAfter = null)
    {
        lock (_faults)
        {
            _faults.Add(new Fault(matches, code, retryAfter) { Left = times });
        }
    }

    private sealed record Fault(Func<RecordedRequest, bool> Matches, int Code, string? RetryAfter)
    {
        public int Left { get; set; }
    }

    private Fault? TakeFault(RecordedRequest request)
    {
        lock (_faults)
        {
            var fault = _faults.FirstOrDefault(f => f.Left > 0 && f.Matches(request));
            if (fault is not null)
            {
                fault.Left--;
            }

            return fault;
        }
    }

    public int CountRequests(string method, string pathContains) =>
        _requests.Count(r => r.Method == method && r.Path.Contains(pathContains, StringComparison.Ordinal));

    public async ValueTask DisposeAsync()
    {
        Store.DropWatches();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        var recorded = new RecordedRequest(request.Method, request.Path.Value ?? "", request.QueryString.Value ?? "", request.Headers.UserAgent.ToString());
        _requests.Enqueue(recorded);
        try
        {
            if (TakeFault(recorded) is { } fault)
            {
                if (fault.RetryAfter is { } after)
                {
                    context.Response.Headers.RetryAfter = after;
                }

                if (fault.Code == 200)
                {
                    context.Response.StatusCode = 200;
                    context.Response.ContentType = "application/json";
                    return;
                }

                throw new ApiException(fault.Code, ReasonOf(fault.Code), $"injected {fault.Code}");
            }

            if (Interlocked.Decrement(ref _failNext) >= 0 || DateTime.UtcNow.Ticks < Interlocked.Read(ref _failUntilTicks)
                || (DateTime.UtcNow.Ticks < Interlocked.Read(ref _failPathUntilTicks) && !HttpMethods.IsGet(request.Method) && (request.Path.Value ?? "").Contains(_failPath, StringComparison.Ordinal)))
            {
                throw new ApiException(500, "InternalError", "Internal error occurred: injected failure");
            }

            Interlocked.Exchange(ref _failNext, Math.Max(0, Volatile.Read(ref _failNext)));
            var target = Route(request.Path.Value ?? "");
            await DispatchAsync(context, target);
        }
        catch (ApiException e)
        {
            await WriteStatusAsync(context, e.Code, e.Reason, e.Message);
        }
        catch (Exception e) when (e is not OperationCanceledException && !context.Response.HasStarted)
        {
            // A bug in the double: say so plainly instead of a bare 500.
            await WriteStatusAsync(context, 500, "InternalError", $"test API server failed: {e}");
        }
    }

    private sealed record Target(ResourceType Type, string? Namespace, string? Name, string? Subresource);

    /// <summary>/api/v1/... or /apis/GROUP/VERSION/..., then [namespaces/NS/]PLURAL[/NAME[/SUB]].</summary>
    private static Target Route(string path)
    {
        var parts = path.Trim('/').Split('/');
        string group, version;
        int at;
        if (parts.Length >= 2 && parts[0] == "api")
        {
            (group, version, at) = ("", parts[1], 2);
        }
        else if (parts.Length >= 3 && parts[0] == "apis")
        {
            (group, version, at) = (parts[1], parts[2], 3);
        }
        else
        {
            throw new ApiException(404, "NotFound", $"the server could not find the requested resource ({path})");
        }

        var rest = parts[at..];
        if (rest.Length >= 3 && rest[0] == "namespaces" && ResourceType.Find(group, version, rest[2]) is { Namespaced: true } namespaced)
        {
            return new Target(namespaced, rest[1], rest.ElementAtOrDefault(3), rest.ElementAtOrDefault(4));
        }

        if (rest.Length >= 1 && ResourceType.Find(group, version, rest[0]) is { } type)
        {
            return new Target(type, null, rest.ElementAtOrDefault(1), rest.ElementAtOrDefault(2));
        }

        throw new ApiException(404, "NotFound", $"the server could not find the requested resource ({path})");
    }

    private async Task DispatchAsync(HttpContext context, Target target)
    {
        var (type, ns, name, sub) = target;
        var query = context.Request.Query;
        if (sub is not null && sub != "status")
        {
            throw new ApiException(404, "NotFound", $"no subresource {sub}");
        }

        var statusOnly = sub == "status";
        var selector = new LabelSelectorQuery(query["labelSelector"]);
        var fieldSelector = query["fieldSelector"].ToString();
        bool Filter(JsonObject o) => selector.Matches(o) && FieldsMatch(o, fieldSelector);

        switch (context.Request.Method)
        {
            case "GET" when name is null && (query["watch"] == "true" || query["watch"] == "1"):
                await WatchAsync(context, type, ns, query["resourceVersion"], Filter);
                break;
            case "GET" when name is null:
                var (items, revision) = Store.List(type, ns, Filter);
                await WriteJsonAsync(context, 200, new JsonObject
                {
                    ["kind"] = type.Kind + "List",
                    ["apiVersion"] = type.ApiVersion,
                    ["metadata"] = new JsonObject { ["resourceVersion"] = revision.ToString(CultureInfo.InvariantCulture) },
                    ["items"] = new JsonArray([.. items]),
                });
                break;
            case "GET":
                await WriteJsonAsync(context, 200, Store.Get(type, ns, name!) ?? throw new ApiException(404, "NotFound", $"{type.Plural} \"{name}\" not found"));
                break;
            case "POST" when name is null:
                await WriteJsonAsync(context, 201, Store.Create(type, ns, await BodyAsync(context)));
                break;
            case "PUT" when name is not null:
                await WriteJsonAsync(context, 200, Store.Update(type, ns, name, await BodyAsync(context), statusOnly));
                break;
            case "PATCH" when name is not null:
                var contentType = context.Request.ContentType?.Split(';')[0].Trim();
                var patch = JsonNode.Parse(await new StreamReader(context.Request.Body).ReadToEndAsync());
                Func<JsonObject, JsonObject> apply = contentType switch
                {
                    "application/merge-patch+json" or "application/strategic-merge-patch+json" => current => (JsonObject)Patches.Merge(current, patch)!,
                    "application/json-patch+json" => current => Patches.Json(current, patch as JsonArray ?? throw new ApiException(400, "BadRequest", "a JSON patch must be an array")).AsObject(),
                    _ => throw new ApiException(415, "UnsupportedMediaType", $"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {contentType})"),
                };
                await WriteJsonAsync(context, 200, Store.Patch(type, ns, name, apply, statusOnly));
                break;
            case "DELETE" when name is not null:
                await WriteJsonAsync(context, 200, Store.Delete(type, ns, name));
                break;
            default:
                throw new ApiException(405, "MethodNotAllowed", $"{context.Request.Method} is not supported here");
        }
    }

    private async Task WatchAsync(HttpContext context, ResourceType type, string? ns, string? resourceVersion, Func<JsonObject, bool> filter)
    {
        var query = context.Request.Query;
        Watcher watcher;
        context.Response.StatusCode = 200;
        context.Response.ContentType = "application/json";
        try
        {
            watcher = Store.Watch(type, ns, resourceVersion, filter);
        }
        catch (ApiException e) when (e.Code == 410)
        {
            // kube-apiserver answers 200 and reports the expired version as an ERROR event.
            await WriteLineAsync(context, new JsonObject { ["type"] = "ERROR", ["object"] = Status(e.Code, e.Reason, e.Message) });
            return;
        }

        var bookmarks = query["allowWatchBookmarks"] == "true";
        var timeout = int.TryParse(query["timeoutSeconds"], out var seconds) ? TimeSpan.FromSeconds(seconds) : TimeSpan.FromMinutes(30);
        using var ended = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        ended.CancelAfter(timeout);
        try
        {
            // Headers out at once, as kube-apiserver flushes them: the client knows the watch started before any event.
            await context.Response.StartAsync(ended.Token);
            await context.Response.Body.FlushAsync(ended.Token);
            var reader = watcher.Changes;
            while (!ended.IsCancellationRequested)
            {
                var next = reader.WaitToReadAsync(ended.Token).AsTask();
                var finished = await Task.WhenAny(next, Task.Delay(BookmarkInterval, ended.Token));
                if (finished != next)
                {
                    if (bookmarks)
                    {
                        await WriteLineAsync(context, new JsonObject
                        {
                            ["type"] = "BOOKMARK",
                            ["object"] = new JsonObject
                            {
                                ["kind"] = type.Kind,
                                ["apiVersion"] = type.ApiVersion,
                                ["metadata"] = new JsonObject { ["resourceVersion"] = Store.Revision.ToString(CultureInfo.InvariantCulture) },
                            },
                        });
                    }

                    continue;
                }

                if (!await next)
                {
                    // Dropped: end the connection without a clean end of stream.
                    context.Abort();
                    return;
                }

                while (reader.TryRead(out var change))
                {
                    await WriteLineAsync(context, new JsonObject { ["type"] = change.Type, ["object"] = change.Body.DeepClone() });
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Timeout or client gone: the stream simply ends.
        }
        finally
        {
            Store.Unwatch(watcher);
        }
    }

    private static bool FieldsMatch(JsonObject obj, string fieldSelector)
    {
        foreach (var term in fieldSelector.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var negate = term.Contains("!=", StringComparison.Ordinal);
            var parts = term.Split(negate ? "!=" : "=", 2, StringSplitOptions.None);
            var actual = parts[0].Trim() switch
            {
                "metadata.name" => obj["metadata"]?["name"]?.GetValue<string>(),
                "metadata.namespace" => obj["metadata"]?["namespace"]?.GetValue<string>(),
                var other => throw new ApiException(400, "BadRequest", $"field label not supported: {other}"),
            };
            var expected = parts[1].TrimStart('=').Trim();
            if ((actual == expected) == negate)
            {
                return false;
            }
        }

        return true;
    }

    private static async Task<JsonObject> BodyAsync(HttpContext context)
    {
        try
        {
            return JsonNode.Parse(await new StreamReader(context.Request.Body).ReadToEndAsync()) as JsonObject
                ?? throw new ApiException(400, "BadRequest", "the body must be a JSON object");
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new ApiException(400, "BadRequest", $"the body is not valid JSON: {e.Message}");
        }
    }

    private static string ReasonOf(int code) => code switch
    {
        409 => "Conflict",
        410 => "Expired",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    };

    private static JsonObject Status(int code, string reason, string message) => new()
    {
        ["kind"] = "Status",
        ["apiVersion"] = "v1",
        ["metadata"] = new JsonObject(),
        ["status"] = "Failure",
        ["message"] = message,
        ["reason"] = reason,
        ["code"] = code,
    };

    private static Task WriteStatusAsync(HttpContext context, int code, string reason, string message) =>
        WriteJsonAsync(context, code, Status(code, reason, message));

    private static async Task WriteJsonAsync(HttpContext context, int code, JsonNode body)
    {
        context.Response.StatusCode = code;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(body.ToJsonString());
    }

    private static async Task WriteLineAsync(HttpContext context, JsonNode line)
    {
        await context.Response.WriteAsync(line.ToJsonString() + "\n");
        await context.Response.Body.FlushAsync();
    }
}

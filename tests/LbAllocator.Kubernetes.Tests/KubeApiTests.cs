using System.Net;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Watching;
using LbAllocator.TestApiServer;
using Microsoft.Extensions.Logging.Abstractions;

namespace LbAllocator.Kubernetes.Tests;

/// <summary>The client's watch against the test double's faults: dropped streams and expired versions.</summary>
public sealed class KubeApiTests
{
    [Fact]
    public async Task A_cache_follows_through_dropped_watches()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync();
        using var setup = server.CreateClient();
        using var api = server.CreateApi();
        var services = new ResourceCache<V1Service>(Sources.Services(api), NullLogger.Instance, new CacheOptions { InitialBackoff = TimeSpan.FromMilliseconds(10) });
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var running = services.RunAsync(stop.Token);
        await services.WaitForSyncAsync(stop.Token);

        for (var round = 0; round < 3; round++)
        {
            await WaitForWatchAsync(server, stop.Token);
            server.CompactHistory();
            server.DropWatches();
            await setup.CoreV1.CreateNamespacedServiceAsync(new V1Service { Metadata = new V1ObjectMeta { Name = $"s{round}" } }, "default");
        }

        while (services.Items.Count < 3)
        {
            await Task.Delay(20, stop.Token);
        }

        Assert.Equal(["s0", "s1", "s2"], services.Items.Select(s => s.Metadata.Name).Order());
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    /// <summary>
    /// After 410 Gone the cache lists at its last version, NotOlderThan, after a backoff; when that list is refused with
    /// 410 too, it lists the latest in pages at once. The double records the exact queries.
    /// </summary>
    [Fact]
    public async Task After_410_the_cache_lists_at_its_last_version_then_the_latest_in_pages_when_refused()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync(bookmarkInterval: TimeSpan.FromHours(1));
        using var setup = server.CreateApi();
        using var api = server.CreateApi();
        var clock = new TimerClock();
        var services = new ResourceCache<V1Service>(Sources.Services(api), NullLogger.Instance, new CacheOptions { Time = clock, Random = new ScriptedRandom(0.5) });
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var running = services.RunAsync(stop.Token);

        var first = await ExpireWatchAsync(server, setup, clock, stop.Token);
        await clock.ElapseNextAsync(TimeSpan.FromMilliseconds(400), stop.Token);
        await WaitForWatchAsync(server, stop.Token);
        var second = await ExpireWatchAsync(server, setup, clock, stop.Token, refuseRelist: true);
        await clock.ElapseNextAsync(TimeSpan.FromMilliseconds(800), stop.Token);
        await WaitForWatchAsync(server, stop.Token);

        Assert.Equal(
            ["?resourceVersion=0", $"?resourceVersion={first}&resourceVersionMatch=NotOlderThan", $"?resourceVersion={second}&resourceVersionMatch=NotOlderThan", "?limit=500"],
            server.Requests.Where(r => r.Method == "GET" && r.Path == "/api/v1/services" && !r.Query.Contains("watch", StringComparison.Ordinal)).Select(r => r.Query));
        Assert.True(clock.NoTimers);
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    /// <summary>
    /// Lets the cache's open watch run a second, moves the server's version on and forgets its history, then drops the
    /// watch: the cache resumes at once from the version it had and gets 410. Returns that version.
    /// </summary>
    private static async Task<string> ExpireWatchAsync(TestApiServer.TestApiServer server, KubeApi setup, TimerClock clock, CancellationToken cancellationToken, bool refuseRelist = false)
    {
        await WaitForWatchAsync(server, cancellationToken);
        var version = server.Requests.Last(r => r.Query.Contains("watch=true", StringComparison.Ordinal)).Query.Split("resourceVersion=")[1].Split('&')[0];
        clock.Advance(TimeSpan.FromSeconds(1));
        await setup.CreateAsync(KubeResources.Nodes, null, new V1Node { Metadata = new V1ObjectMeta { Name = $"n{version}" } }, cancellationToken);
        server.CompactHistory();
        if (refuseRelist)
        {
            server.Inject(r => r.Query.Contains("NotOlderThan", StringComparison.Ordinal), 410);
        }

        server.DropWatches();
        return version;
    }

    /// <summary>A watch the server ends at once, with nothing, is a failure: the next waits a backoff.</summary>
    [Fact]
    public async Task Watches_the_server_ends_at_once_are_retried_after_a_backoff()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync(bookmarkInterval: TimeSpan.FromHours(1));
        using var api = server.CreateApi();
        var clock = new TimerClock();
        var services = new ResourceCache<V1Service>(Sources.Services(api), NullLogger.Instance, new CacheOptions { Time = clock, Random = new ScriptedRandom(0.5) });
        static bool Watches(RecordedRequest r) => r.Query.Contains("watch=true", StringComparison.Ordinal);
        server.Inject(Watches, 200, times: 2);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var running = services.RunAsync(stop.Token);

        foreach (var (watches, backoff) in new[] { (1, 400), (2, 800) })
        {
            Assert.Equal(TimeSpan.FromMilliseconds(backoff), await clock.NextTimerAsync(stop.Token));
            Assert.Equal(watches, server.Requests.Count(Watches)); // the next waits for the clock
            clock.Advance(TimeSpan.FromMilliseconds(backoff));
        }

        await WaitForWatchAsync(server, stop.Token);
        Assert.Equal(3, server.Requests.Count(Watches));
        Assert.Equal(1, services.Lists);
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    /// <summary>The ERROR event's object is a Status, not a Service: it ends the watch as a 410 the cache acts on.</summary>
    [Fact]
    public async Task A_watch_from_an_expired_version_ends_with_410_Gone()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync();
        using var setup = server.CreateClient();
        using var api = server.CreateApi();
        var version = (await api.ListAsync(KubeResources.Services, ns: null)).Metadata!.ResourceVersion;
        await setup.CoreV1.CreateNamespacedServiceAsync(new V1Service { Metadata = new V1ObjectMeta { Name = "later" } }, "default");
        server.CompactHistory();

        var e = await Assert.ThrowsAsync<KubeApiException>(async () =>
        {
            await foreach (var _ in api.WatchAsync(KubeResources.Services, null, null, null, version, 5))
            {
            }
        });

        Assert.Equal(HttpStatusCode.Gone, e.StatusCode);
        Assert.Equal("Expired", e.Status?.Reason);
    }

    [Fact]
    public async Task A_refused_request_names_the_request_and_the_servers_reason()
    {
        await using var server = await TestApiServer.TestApiServer.StartAsync();
        using var api = server.CreateApi();

        var e = await Assert.ThrowsAsync<KubeApiException>(() => api.GetAsync(KubeResources.Services, "default", "missing"));

        Assert.Equal(HttpStatusCode.NotFound, e.StatusCode);
        Assert.Equal("NotFound", e.Status?.Reason);
        Assert.Contains("/api/v1/namespaces/default/services/missing: 404", e.Message, StringComparison.Ordinal);
    }

    /// <summary>A server address with a path (an authenticating proxy's) keeps it; nothing leaves the process.</summary>
    [Fact]
    public async Task Requests_go_below_the_servers_path()
    {
        var answer = new Answer();
        using var api = new KubeApi(new KubeConnection { Host = "https://192.0.2.1:6443/k8s/clusters/lab/" }, answer);

        await api.ListAsync(KubeResources.Leases, "lballocator-system", "app=x", resourceVersion: "0");

        Assert.Equal(
            "https://192.0.2.1:6443/k8s/clusters/lab/apis/coordination.k8s.io/v1/namespaces/lballocator-system/leases?labelSelector=app%3Dx&resourceVersion=0",
            answer.Asked?.ToString());
    }

    /// <summary>
    /// The pager follows continue tokens (without the version, which the token carries) and returns the first page's
    /// version; when a token has expired it reads the whole list in one request instead, as client-go's pager does.
    /// </summary>
    [Theory]
    [InlineData(false, new[] { "?limit=2", "?limit=2&continue=c1" }, "7")]
    [InlineData(true, new[] { "?limit=2", "?limit=2&continue=c1", "" }, "9")]
    public async Task The_pager_follows_continue_tokens_and_lists_whole_when_one_expired(bool expired, string[] queries, string version)
    {
        var pages = new Pages(expired);
        using var api = new KubeApi(new KubeConnection { Host = "https://192.0.2.1:6443/" }, pages);

        var list = await api.ListAllAsync(KubeResources.Leases, "ns", new ListOptions { Limit = 2 });

        Assert.Equal(queries, pages.Asked);
        Assert.Equal(["a", "b", "c"], list.Items!.Select(l => l.Metadata.Name));
        Assert.Equal(version, list.Metadata!.ResourceVersion);
    }

    /// <summary>Two pages of Leases at version 7, or an expired token and then the whole list at version 9.</summary>
    private sealed class Pages(bool expired) : DelegatingHandler
    {
        public List<string> Asked { get; } = [];

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var query = request.RequestUri!.Query;
            Asked.Add(query);
            static string Items(params string[] names) => string.Join(",", names.Select(n => "{\"metadata\":{\"name\":\"" + n + "\"}}"));
            var (code, body) = query switch
            {
                "?limit=2" => (HttpStatusCode.OK, $$"""{"metadata":{"resourceVersion":"7","continue":"c1"},"items":[{{Items("a", "b")}}]}"""),
                "?limit=2&continue=c1" when expired => (HttpStatusCode.Gone, """{"kind":"Status","code":410,"reason":"Expired","message":"The provided continue parameter is too old"}"""),
                "?limit=2&continue=c1" => (HttpStatusCode.OK, $$"""{"metadata":{"resourceVersion":"7"},"items":[{{Items("c")}}]}"""),
                _ => (HttpStatusCode.OK, $$"""{"metadata":{"resourceVersion":"9"},"items":[{{Items("a", "b", "c")}}]}"""),
            };
            return Task.FromResult(new HttpResponseMessage(code) { Content = new StringContent(body) });
        }
    }

    /// <summary>Answers every request with an empty list, remembering what was asked.</summary>
    private sealed class Answer : DelegatingHandler
    {
        public Uri? Asked { get; private set; }

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Asked = request.RequestUri;
            return Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK) { Content = new StringContent("""{"metadata":{"resourceVersion":"1"},"items":[]}""") });
        }
    }

    private static async Task WaitForWatchAsync(TestApiServer.TestApiServer server, CancellationToken cancellationToken)
    {
        while (server.OpenWatches == 0)
        {
            await Task.Delay(10, cancellationToken);
        }
    }
}

/// <summary>
/// The connection's TLS on the real kube-apiserver, whose certificate (self-signed, so its own CA) names 127.0.0.1 and
/// kubernetes.default.svc: verified against the kubeconfig's certificate authority, by the address or by tls-server-name.
/// </summary>
public sealed class KubeConnectionTests(KubeApiServerFixture api) : IClassFixture<KubeApiServerFixture>, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lballocator-tls-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [RealApiTheory]
    [InlineData(null)]
    [InlineData("kubernetes.default.svc")]
    public async Task Verifies_the_server_against_the_kubeconfigs_certificate_authority(string? serverName)
    {
        using var client = new KubeApi(KubeClientConfiguration.Load(Kubeconfig(serverName)));

        var namespaces = await client.ListAsync(KubeResources.Namespaces, ns: null);

        Assert.Contains(namespaces.Items!, n => n.Metadata.Name == "default");
    }

    [RealApiFact]
    public async Task Refuses_a_server_whose_certificate_does_not_name_it()
    {
        using var client = new KubeApi(KubeClientConfiguration.Load(Kubeconfig("wrong.example")));

        var e = await Assert.ThrowsAsync<HttpRequestException>(() => client.ListAsync(KubeResources.Namespaces, ns: null));

        Assert.IsType<System.Security.Authentication.AuthenticationException>(e.InnerException);
    }

    private string Kubeconfig(string? serverName)
    {
        var path = Path.Combine(_dir, $"{serverName ?? "by-address"}.kubeconfig");
        File.WriteAllText(path, $"""
            apiVersion: v1
            kind: Config
            clusters:
            - name: lab
              cluster:
                server: {api.Server.Url.ToString().TrimEnd('/')}
                certificate-authority: {api.Server.CertificateFile}
            {(serverName is null ? "" : $"    tls-server-name: {serverName}")}
            users:
            - name: admin
              user: {"{"}token: {KubeApiServer.AdminToken}{"}"}
            contexts:
            - name: lab
              context: {"{"}cluster: lab, user: admin{"}"}
            current-context: lab
            """);
        return path;
    }
}

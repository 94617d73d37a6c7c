using System.Collections.Concurrent;
using System.Net;
using System.Runtime.CompilerServices;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Watching;
using LbAllocator.TestApiServer;
using Microsoft.Extensions.Logging.Abstractions;

namespace LbAllocator.Kubernetes.Tests;

/// <summary>
/// The lists the cache asks for, judged by the real kube-apiserver: what it accepts, where it serves them from (watch
/// cache or etcd, by its own counters), and how it refuses a version it cannot serve.
/// </summary>
public sealed class RelistTests(KubeApiServerFixture fixture) : IClassFixture<KubeApiServerFixture>
{
    private static readonly CacheOptions Quick = new() { InitialBackoff = TimeSpan.FromMilliseconds(50), MaxBackoff = TimeSpan.FromSeconds(1) };

    private KubeApiServer Server => fixture.Server;

    /// <summary>
    /// Limit is ignored at resourceVersion=0 (the watch cache has no pages: the first list is whole); a list at a version
    /// with NotOlderThan and no limit is served by the watch cache (its counter moves, etcd's does not); without a
    /// version the list comes from etcd in pages with continue tokens; a match without a version is refused.
    /// </summary>
    [RealApiFact]
    public async Task Kubernetes_serves_the_cache_its_lists_from_where_the_cache_expects()
    {
        var recorder = new Recorder();
        using var api = new KubeApi(new KubeConnection { Host = Server.Url.ToString(), Token = new StaticToken(KubeApiServer.AdminToken), SkipTlsVerify = true }, recorder);
        var ns = await NamespaceWithLeasesAsync(api, 5);

        var any = await api.ListAsync(KubeResources.Leases, ns, new ListOptions { ResourceVersion = "0", Limit = 2 });
        Assert.Equal(5, any.Items!.Count);
        Assert.Null(any.Metadata!.ContinueProperty);

        var before = await ListCountersAsync();
        var notOlder = await api.ListAsync(KubeResources.Leases, ns, new ListOptions { ResourceVersion = any.Metadata.ResourceVersion, ResourceVersionMatch = ListOptions.NotOlderThan });
        var after = await ListCountersAsync();
        Assert.Equal(5, notOlder.Items!.Count);
        Assert.Equal((1, 0), (after.Cache - before.Cache, after.Etcd - before.Etcd));

        recorder.Clear();
        var paged = await api.ListAllAsync(KubeResources.Leases, ns, new ListOptions { Limit = 2 });
        Assert.Equal(5, paged.Items!.Count);
        Assert.Equal(5, paged.Items.Select(l => l.Metadata.Name).Distinct().Count());
        static string TokenCut(string q) => q.Contains("&continue=", StringComparison.Ordinal) ? q[..(q.IndexOf("&continue=", StringComparison.Ordinal) + 10)] + "…" : q;
        Assert.Equal(["?limit=2", "?limit=2&continue=…", "?limit=2&continue=…"], recorder.Lists.Select(c => TokenCut(c.Query)));
        Assert.Equal(after.Etcd + 3, (await ListCountersAsync()).Etcd);

        var refused = await Assert.ThrowsAsync<KubeApiException>(() => api.ListAsync(KubeResources.Leases, ns, new ListOptions { ResourceVersionMatch = ListOptions.NotOlderThan }));
        Assert.Equal(HttpStatusCode.UnprocessableEntity, refused.StatusCode);
    }

    /// <summary>
    /// A version newer than the server has (as after etcd is restored from a backup) is refused after 3 s with 504
    /// ResourceVersionTooLarge; the cache then lists the latest, in pages, at once, and watches from there.
    /// </summary>
    [RealApiFact]
    public async Task A_relist_at_a_version_the_server_has_not_reached_falls_back_to_the_latest_in_pages()
    {
        var recorder = new Recorder();
        using var api = new KubeApi(new KubeConnection { Host = Server.Url.ToString(), Token = new StaticToken(KubeApiServer.AdminToken), SkipTlsVerify = true }, recorder);
        var ns = await NamespaceWithLeasesAsync(api, 3);
        var real = Sources.Leases(api, ns, "test=relist");
        var watches = 0;
        var source = real with { Watch = (version, timeout, ct) => Interlocked.Increment(ref watches) == 1 ? FromTheFutureThenGone(ct) : real.Watch(version, timeout, ct) };
        var cache = new ResourceCache<V1Lease>(source, NullLogger.Instance, Quick);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var running = cache.RunAsync(stop.Token);

        while (cache.Lists < 2 || Volatile.Read(ref watches) < 2)
        {
            await Task.Delay(20, stop.Token);
        }

        var lists = recorder.Lists;
        Assert.Equal(
            [
                ("?labelSelector=test%3Drelist&resourceVersion=0", 200),
                ("?labelSelector=test%3Drelist&resourceVersion=999999999&resourceVersionMatch=NotOlderThan", 504),
                ("?labelSelector=test%3Drelist&limit=500", 200),
            ],
            lists.Select(c => (c.Query, c.Code)));
        Assert.Equal(3, cache.Items.Count);
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    /// <summary>
    /// After kube-apiserver restarts, its watch cache starts at etcd's revision, so the cache's watch from the version
    /// it had seen gets 410 Gone; the relist is from the watch cache at that version, never a read from etcd, and the
    /// cache catches up with what changed meanwhile.
    /// </summary>
    [RealApiFact]
    public async Task After_an_api_server_restart_the_cache_relists_from_the_watch_cache_at_its_last_version()
    {
        await using var server = await KubeApiServer.StartAsync(audit: true);
        using var api = server.CreateApi();
        var services = new ResourceCache<V1Service>(Sources.Services(api), NullLogger.Instance, Quick);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(300));
        var running = services.RunAsync(stop.Token);
        await api.CreateAsync(KubeResources.Services, "default", Service("before"), stop.Token);
        await UntilAsync(() => services.TryGet("default/before", out _), stop.Token);
        string? seen;
        var round = 0;
        do
        {
            // Any write moves etcd's revision past what the cache has seen, as lease renewals do in every cluster. A
            // bookmark that reaches the cache after it (the server sends them when it likes) carries the cache past it
            // too, and then the watch resumes without a 410: that round proves nothing, and the next one tries again.
            await api.CreateAsync(KubeResources.Leases, "default", new V1Lease { Metadata = new V1ObjectMeta { Name = $"bump-{round}" } }, stop.Token);
            seen = services.ResourceVersion;
            await server.RestartAsync(cancellationToken: stop.Token);
            await api.CreateAsync(KubeResources.Services, "default", Service($"after-{round}"), stop.Token);
            var name = $"default/after-{round}";
            await UntilAsync(() => services.TryGet(name, out _), stop.Token);
        }
        while (services.Lists == 1 && ++round < 3);

        var lists = server.AuditEvents().Where(e => e.User == "admin" && e.Resource == "services" && e.Verb == "list").ToList();
        Assert.Equal(
            [("/api/v1/services?resourceVersion=0", 200), ($"/api/v1/services?resourceVersion={seen}&resourceVersionMatch=NotOlderThan", 200)],
            lists.Select(e => (e.Uri, e.Code)));
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    private static V1Service Service(string name) => new()
    {
        Metadata = new V1ObjectMeta { Name = name },
        Spec = new V1ServiceSpec { Ports = [new V1ServicePort { Port = 80 }] },
    };

    /// <summary>A bookmark at a version the server has not reached, then 410, as a watch ends after a restore.</summary>
    private static async IAsyncEnumerable<(WatchEventType, V1Lease)> FromTheFutureThenGone([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await Task.Yield();
        cancellationToken.ThrowIfCancellationRequested();
        yield return (WatchEventType.Bookmark, new V1Lease { Metadata = new V1ObjectMeta { ResourceVersion = "999999999" } });
        throw new KubeApiException(HttpStatusCode.Gone, new V1Status { Code = 410 }, "410 Gone");
    }

    private static async Task<string> NamespaceWithLeasesAsync(KubeApi api, int count)
    {
        var ns = $"relist-{Guid.NewGuid():N}"[..20];
        await api.CreateAsync(KubeResources.Namespaces, null, new V1Namespace { Metadata = new V1ObjectMeta { Name = ns } });
        for (var i = 0; i < count; i++)
        {
            await api.CreateAsync(KubeResources.Leases, ns, new V1Lease { Metadata = new V1ObjectMeta { Name = $"l{i}", Labels = new Dictionary<string, string> { ["test"] = "relist" } } });
        }

        return ns;
    }

    /// <summary>Lists of Leases the server served from its watch cache, and from etcd, since it started.</summary>
    private async Task<(double Cache, double Etcd)> ListCountersAsync()
    {
        var metrics = await Server.MetricsAsync();
        return (
            PrometheusText.Sum(metrics, "apiserver_cache_list_total", "resource_prefix").GetValueOrDefault("/leases"),
            PrometheusText.Sum(metrics, "apiserver_storage_list_total", "resource").GetValueOrDefault("leases.coordination.k8s.io"));
    }

    private static async Task UntilAsync(Func<bool> condition, CancellationToken cancellationToken)
    {
        while (!condition())
        {
            await Task.Delay(20, cancellationToken);
        }
    }

    /// <summary>Records the query of each list (a GET of a collection, not a watch) and the code it got.</summary>
    private sealed class Recorder : DelegatingHandler
    {
        private readonly ConcurrentQueue<(string Query, int Code)> _lists = new();

        public IReadOnlyList<(string Query, int Code)> Lists => [.. _lists];

        public void Clear() => _lists.Clear();

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var response = await base.SendAsync(request, cancellationToken);
            var uri = request.RequestUri!;
            if (request.Method == HttpMethod.Get && uri.AbsolutePath.EndsWith("/leases", StringComparison.Ordinal) && !uri.Query.Contains("watch=true", StringComparison.Ordinal))
            {
                _lists.Enqueue((uri.Query, (int)response.StatusCode));
            }

            return response;
        }
    }
}

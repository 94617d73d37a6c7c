using System.Collections.Concurrent;
using System.Diagnostics;
using k8s.Models;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Watching;
using LbAllocator.Speaker;
using LbAllocator.TestApiServer;
using Microsoft.Extensions.Logging.Abstractions;

namespace LbAllocator.ApiRestartBench;

/// <summary>
/// Speakers' and the controller's caches, each component on a client of its own, as SpeakerReconciler and the
/// controller's Reconciler build them (the speaker's trims left out: they change memory, not requests).
/// </summary>
internal sealed class Fleet : IAsyncDisposable
{
    private readonly List<KubeApi> _clients = [];
    private readonly List<IWatchedCache> _caches = [];
    private readonly CancellationTokenSource _stop = new();
    private Task[] _running = [];

    public int Caches => _caches.Count;

    public static Fleet Start(KubeApiServer server, string ns, int speakers, RequestLog log)
    {
        var fleet = new Fleet();
        for (var i = 0; i < speakers; i++)
        {
            var api = fleet.Client(server, "speaker", log);
            fleet.Add(Sources.Services(api));
            fleet.Add(Sources.EndpointSlices(api));
            fleet.Add(new DigestNodes(Sources.NodeDigest(api, ns), NullLogger.Instance).Source);
            fleet.Add(Sources.Pools(api, ns));
            fleet.Add(Sources.Advertisements(api, ns));
            fleet.Add(Sources.ServiceL2Statuses(api, ns));
            fleet.Add(Sources.Leases(api, ns, SpeakerLease.LabelSelector));
        }

        var controller = fleet.Client(server, "controller", log);
        fleet.Add(Sources.Services(controller));
        fleet.Add(Sources.Namespaces(controller));
        fleet.Add(Sources.Pools(controller, ns));
        fleet.Add(Sources.Advertisements(controller, ns));
        fleet.Add(Sources.Nodes(controller));
        fleet.Add(Sources.NodeDigest(controller, ns));
        fleet._running = [.. fleet._caches.Select(c => c.RunAsync(fleet._stop.Token))];
        return fleet;
    }

    public Task WaitSyncedAsync(CancellationToken cancellationToken) => Task.WhenAll(_caches.Select(c => c.WaitForSyncAsync(cancellationToken)));

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_running).ContinueWith(_ => { }, TaskScheduler.Default);
        _clients.ForEach(c => c.Dispose());
        _stop.Dispose();
    }

    private KubeApi Client(KubeApiServer server, string component, RequestLog log)
    {
        var connection = new KubeConnection { Host = server.Url.ToString(), Token = new StaticToken(KubeApiServer.AdminToken), SkipTlsVerify = true };
#if BEFORE
        var api = new KubeApi(connection, log.NewHandler());
#else
        var limit = Hosting.KubeClientOptions.DefaultsFor(component);
        var api = new KubeApi(connection, new KubeApiSettings { Qps = limit.Qps, Burst = limit.Burst }, log.NewHandler());
#endif
        _clients.Add(api);
        return api;
    }

    private void Add<T>(ResourceSource<T> source)
        where T : class, k8s.IKubernetesObject<V1ObjectMeta> => _caches.Add(new ResourceCache<T>(source, NullLogger.Instance));
}

/// <summary>One request of the fleet's: when it was answered (seconds from a mark), its query, and its code (0: no answer, as a refused connection).</summary>
internal sealed record Request(double Seconds, string Query, int Code)
{
    public bool Watch => Query.Contains("watch=true", StringComparison.Ordinal);

    /// <summary>
    /// A list kube-apiserver serves from its watch cache, by its rules (checked in RelistTests): at resourceVersion 0,
    /// or at another version without a limit. The rest (the latest, pages) are read from etcd.
    /// </summary>
    public bool FromWatchCache => Query.Contains("resourceVersion=0", StringComparison.Ordinal)
        || (Query.Contains("resourceVersion=", StringComparison.Ordinal) && !Query.Contains("limit=", StringComparison.Ordinal));
}

/// <summary>Every list and watch request the fleet makes, as it was answered.</summary>
internal sealed class RequestLog
{
    private readonly ConcurrentQueue<(long At, string Query, int Code)> _requests = new();

    public DelegatingHandler NewHandler() => new Counting(this);

    /// <summary>The requests answered or failed since <paramref name="since"/> (a Stopwatch timestamp).</summary>
    public IReadOnlyList<Request> Since(long since) =>
        [.. _requests.Where(r => r.At >= since).Select(r => new Request(Stopwatch.GetElapsedTime(since, r.At).TotalSeconds, r.Query, r.Code))];

    private sealed class Counting(RequestLog log) : DelegatingHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var query = request.RequestUri!.Query;
            try
            {
                var response = await base.SendAsync(request, cancellationToken);
                log._requests.Enqueue((Stopwatch.GetTimestamp(), query, (int)response.StatusCode));
                return response;
            }
            catch (HttpRequestException)
            {
                log._requests.Enqueue((Stopwatch.GetTimestamp(), query, 0));
                throw;
            }
        }
    }
}

using System.Collections.Concurrent;
using System.Diagnostics;
using LbAllocator.Controller;
using LbAllocator.Hosting;
using LbAllocator.Kubernetes.Client;
using LbAllocator.TestApiServer;
using Microsoft.Extensions.Hosting;

namespace LbAllocator.ApiRestartBench;

/// <summary>
/// The controller, run in-process as the lab runs it (ControllerHost, on its own client), and N simulated speakers,
/// each on a client of its own with the speaker's rate limit and connection handling. Everything they ask of the API
/// server comes from the product's code, so the fleet follows whatever the speaker and the controller really watch.
/// </summary>
internal sealed class Fleet : IAsyncDisposable
{
    private readonly IHost _controller;
    private readonly List<KubeApi> _clients = [];
    private readonly List<SimulatedSpeaker> _speakers = [];
    private readonly List<Task> _running = [];
    private readonly CancellationTokenSource _stop = new();

    private Fleet(IHost controller) => _controller = controller;

    public int Speakers => _speakers.Count;

    public static async Task<Fleet> StartControllerAsync(KubeApiServer server)
    {
        var controller = ControllerHost.Build(new Dictionary<string, string?>
        {
            ["Controller:Kubeconfig"] = server.WriteKubeconfig("controller", KubeApiServer.AdminToken),
            ["Controller:Identity"] = "bench-controller",
            ["Status:Address"] = "127.0.0.1:0",
            ["Logging:LogLevel:Default"] = "Error", // its retries through a restart are the bench's subject, not news
        });
        await controller.StartAsync();
        return new Fleet(controller);
    }

    /// <summary>Starts a speaker for each node named; with <paramref name="leaseAndKey"/> each renews its lease and reads the key too.</summary>
    public void StartSpeakers(KubeApiServer server, string ns, IEnumerable<string> nodes, RequestLog log, bool leaseAndKey)
    {
        foreach (var node in nodes)
        {
            var speaker = new SimulatedSpeaker(Client(server, "speaker", log), ns, node);
            _speakers.Add(speaker);
            _running.Add(speaker.RunAsync(leaseAndKey, _stop.Token));
        }
    }

    public Task WaitSyncedAsync(CancellationToken cancellationToken) => Task.WhenAll(_speakers.Select(s => s.Inputs.WaitForSyncAsync(cancellationToken)));

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_running).ContinueWith(_ => { }, TaskScheduler.Default);
        await _controller.StopAsync();
        _controller.Dispose();
        _speakers.ForEach(s => s.Dispose());
        _clients.ForEach(c => c.Dispose());
        _stop.Dispose();
    }

    private KubeApi Client(KubeApiServer server, string component, RequestLog log)
    {
        var connection = new KubeConnection { Host = server.Url.ToString(), Token = new StaticToken(KubeApiServer.AdminToken), SkipTlsVerify = true };
#if BEFORE
        var api = new KubeApi(connection, log.NewHandler());
#else
        var limit = KubeClientOptions.DefaultsFor(component);
        var api = new KubeApi(connection, new KubeApiSettings { Qps = limit.Qps, Burst = limit.Burst }, log.NewHandler(), new RequestsOffWatchConnection());
#endif
        _clients.Add(api);
        return api;
    }
}

/// <summary>One request of the speakers': when it was answered (seconds from a mark), its method and query, and its code (0: no answer, as a refused connection).</summary>
internal sealed record Request(double Seconds, string Method, string Query, int Code)
{
    public bool Watch => Query.Contains("watch=true", StringComparison.Ordinal);

    public bool Write => Method is "POST" or "PUT" or "PATCH" or "DELETE";

    /// <summary>
    /// A list kube-apiserver serves from its watch cache, by its rules (checked in RelistTests): at resourceVersion 0,
    /// or at another version without a limit. The rest (the latest, pages) are read from etcd.
    /// </summary>
    public bool FromWatchCache => Query.Contains("resourceVersion=0", StringComparison.Ordinal)
        || (Query.Contains("resourceVersion=", StringComparison.Ordinal) && !Query.Contains("limit=", StringComparison.Ordinal));
}

/// <summary>Every request the speakers make (the controller's client is its own), as it was answered.</summary>
internal sealed class RequestLog
{
    private readonly ConcurrentQueue<(long At, string Method, string Query, int Code)> _requests = new();

    public DelegatingHandler NewHandler() => new Counting(this);

    /// <summary>The requests answered or failed since <paramref name="since"/> (a Stopwatch timestamp).</summary>
    public IReadOnlyList<Request> Since(long since) =>
        [.. _requests.Where(r => r.At >= since).Select(r => new Request(Stopwatch.GetElapsedTime(since, r.At).TotalSeconds, r.Method, r.Query, r.Code))];

    private sealed class Counting(RequestLog log) : DelegatingHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var (method, query) = (request.Method.Method, request.RequestUri!.Query);
            try
            {
                var response = await base.SendAsync(request, cancellationToken);
                log._requests.Enqueue((Stopwatch.GetTimestamp(), method, query, (int)response.StatusCode));
                return response;
            }
            catch (HttpRequestException)
            {
                log._requests.Enqueue((Stopwatch.GetTimestamp(), method, query, 0));
                throw;
            }
        }
    }
}

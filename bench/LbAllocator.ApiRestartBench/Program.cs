using System.Diagnostics;
using System.Globalization;
using k8s.Models;
using LbAllocator.ApiRestartBench;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.Speaker;
using LbAllocator.TestApiServer;

// Benchmarks on a real kube-apiserver (KUBEBUILDER_ASSETS, with etcd), two modes:
// restart (the default): N speakers' watches and the controller, each on its own client, watch a populated cluster;
// kube-apiserver is killed and started again on the same etcd. Reports the lists that hit it (from etcd or its watch
// cache, and the peak per second) and how long until every watch is open again. Usage:
//   LbAllocator.ApiRestartBench [--speakers 100] [--services 500] [--nodes 100] [--rounds 3] [--settle 20] [--gap 120]
// idle: the API server's cost per node of an idle cluster, kubelets alone and with the controller and speakers (IdleBench).
//   LbAllocator.ApiRestartBench idle [--sizes 10,30,100] [--window 120] [--status-period 60] [--services 50] ...
// node-churn: the Node watch events of speakers watching Nodes and reading the node digest (NodeChurn).
//   LbAllocator.ApiRestartBench node-churn [--speakers 100] [--nodes 100]
if (KubeApiServer.Missing is { } missing)
{
    Console.Error.WriteLine(missing);
    return 2;
}

if (args is ["idle", ..])
{
    await IdleBench.RunAsync(args[1..]);
    return 0;
}

var speakers = Arg("--speakers", 100);
var services = Arg("--services", 500);
var nodes = Arg("--nodes", 100);
var rounds = Arg("--rounds", 3);
var settle = TimeSpan.FromSeconds(Arg("--settle", 20));
// Quiet between rounds: the caches' backoff starts again from 800 ms only after 2 min without a failure (client-go's
// too), so without it each round would begin where the last one's backoff left off.
var gap = TimeSpan.FromSeconds(Arg("--gap", 120));
const string Ns = BenchCluster.Ns;
// The kinds the speakers and the controller watch (configmaps and secrets for what they may read there).
string[] resources = ["services", "endpointslices", "nodes", "namespaces", "leases", "configmaps", "secrets", "ipaddresspools", "l2advertisements", "servicel2statuses"];

await using var server = await BenchCluster.StartAsync();
if (args.FirstOrDefault() == "node-churn")
{
    return await NodeChurn.RunAsync(server, speakers, nodes);
}

using (var setup = server.CreateApi())
{
    await PopulateAsync(setup);
}

var log = new RequestLog();
await using var fleet = await Fleet.StartControllerAsync(server);
fleet.StartSpeakers(server, Ns, Enumerable.Range(0, speakers).Select(i => $"node-{i}"), log, leaseAndKey: false);
using (var synced = new CancellationTokenSource(TimeSpan.FromMinutes(5)))
{
    await fleet.WaitSyncedAsync(synced.Token);
}

var watchers = await SteadyWatchersAsync();
#if BEFORE
const string Code = "before";
#else
const string Code = "after";
#endif
Console.WriteLine($"{Code}: {speakers} speakers' watches (SpeakerInputs) and the controller, on {speakers + 1} clients; {services} Services and EndpointSlices, {nodes} Nodes; {watchers} watches open on these resources");
Console.WriteLine();
Console.WriteLine("| code | round | kill to ready | all watching again, after the kill | LIST answered (codes) | of which from the watch cache / etcd | LIST peak /s (second) | server: LIST requests / etcd lists | kube-apiserver CPU | WATCH requests | refused while down |");
Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|");
for (var round = 1; round <= rounds; round++)
{
    // Every cluster writes all the time (leases): etcd's revision moves past what every cache has seen, so after the
    // restart the new watch cache starts past it and every watch gets 410 Gone.
    if (round > 1)
    {
        await Task.Delay(gap);
    }

    using (var writer = server.CreateApi())
    {
        await writer.CreateAsync(KubeResources.Leases, "default", new V1Lease { Metadata = new V1ObjectMeta { Name = $"bump-{round}" } });
    }

    var kill = Stopwatch.GetTimestamp();
    await server.RestartAsync();
    var ready = Stopwatch.GetElapsedTime(kill);
    // Every watch open again: the count back to what it was, and holding for 2 s (a watch refused with 410 is open
    // for a moment too).
    TimeSpan? back = null;
    while (Stopwatch.GetElapsedTime(kill) < TimeSpan.FromMinutes(5))
    {
        var open = await WatchesAsync();
        var now = Stopwatch.GetElapsedTime(kill);
        back = open >= watchers ? back ?? now : null;
        if (back is { } since && now - since >= TimeSpan.FromSeconds(2))
        {
            break;
        }

        await Task.Delay(200);
    }

    await Task.Delay(settle);
    var requests = log.Since(kill);
    var lists = requests.Where(r => !r.Watch && r.Code != 0).ToList();
    var peak = lists.GroupBy(r => (int)r.Seconds).MaxBy(g => g.Count());
    var codes = string.Join(", ", lists.GroupBy(r => r.Code).OrderBy(g => g.Key).Select(g => $"{g.Key}: {g.Count()}"));
    // The server's own counters, for what the fleet cannot see: its LIST requests on these resources (a few from its
    // own informers among them), and the lists it read from etcd (one per resource to fill each watch cache among them).
    var metrics = await server.MetricsAsync();
    var serverLists = PrometheusText.Sum(metrics, "apiserver_request_total", "resource", l => l.GetValueOrDefault("verb") == "LIST").Where(r => resources.Contains(r.Key)).Sum(r => r.Value);
    var etcdLists = PrometheusText.Sum(metrics, "apiserver_storage_list_total", "resource").Where(r => resources.Contains(r.Key.Split('.')[0])).Sum(r => r.Value);
    var cpu = PrometheusText.Parse(metrics).GetValueOrDefault("process_cpu_seconds_total"); // since it started: its start-up too
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"| {Code} | {round} | {ready.TotalSeconds:F1} s | {(back is { } b ? $"{b.TotalSeconds:F1} s" : "not in 5 min")} | {lists.Count} ({codes}) | {lists.Count(r => r.FromWatchCache)} / {lists.Count(r => !r.FromWatchCache)} | {peak?.Count() ?? 0} ({peak?.Key ?? 0}) | {serverLists} / {etcdLists} | {cpu:F1} s | {requests.Count(r => r.Watch && r.Code != 0)} | {requests.Count(r => r.Code == 0)} |"));
}

return 0;

int Arg(string name, int fallback) => BenchArgs.Int(args, name, fallback);

// Objects for every cache to list: Services with an EndpointSlice each, Nodes, a pool and an advertisement, and a
// status for half the Services.
async Task PopulateAsync(KubeApi api)
{
    await api.CreateAsync(KubeResources.Pools, Ns, new V1Alpha1IPAddressPool { Metadata = new V1ObjectMeta { Name = "bench" }, Spec = new IPAddressPoolSpec { Addresses = ["2001:db8::/112"] } });
    await api.CreateAsync(KubeResources.Advertisements, Ns, new V1Alpha1L2Advertisement { Metadata = new V1ObjectMeta { Name = "bench" }, Spec = new L2AdvertisementSpec() });
    await Parallel.ForAsync(0, nodes, async (i, ct) =>
        await api.CreateAsync(KubeResources.Nodes, null, new V1Node { Metadata = new V1ObjectMeta { Name = $"node-{i}", Labels = new Dictionary<string, string> { ["kubernetes.io/hostname"] = $"node-{i}" } } }, ct));
    await Parallel.ForAsync(0, services, async (i, ct) =>
    {
        await api.CreateAsync(KubeResources.Services, "default", new V1Service
        {
            Metadata = new V1ObjectMeta { Name = $"svc-{i}" },
            Spec = new V1ServiceSpec { Ports = [new V1ServicePort { Port = 80 }], Selector = new Dictionary<string, string> { ["app"] = $"app-{i}" } },
        }, ct);
        await api.CreateAsync(KubeResources.EndpointSlices, "default", new V1EndpointSlice
        {
            Metadata = new V1ObjectMeta { Name = $"svc-{i}-a", Labels = new Dictionary<string, string> { ["kubernetes.io/service-name"] = $"svc-{i}" } },
            AddressType = "IPv4",
            Endpoints = [new V1Endpoint { Addresses = [$"10.1.{i / 250}.{(i % 250) + 1}"], NodeName = $"node-{i % Math.Max(1, nodes)}", Conditions = new V1EndpointConditions { Ready = true } }],
            Ports = [new Discoveryv1EndpointPort { Port = 80 }],
        }, ct);
        if (i % 2 == 0)
        {
            await api.CreateAsync(KubeResources.ServiceL2Statuses, Ns, new V1Alpha1ServiceL2Status { Metadata = new V1ObjectMeta { Name = $"default-svc-{i}" } }, ct);
        }
    });
}

// The watches open on the fleet's resources (the server's own informers' among them).
async Task<double> WatchesAsync() => (await server.WatchesByResourceAsync()).Where(r => resources.Contains(r.Key)).Sum(r => r.Value);

// The watches open once the count has held still for 3 s, and at least as many as the speakers have opened.
async Task<double> SteadyWatchersAsync()
{
    var speakerWatches = log.Since(0).Count(r => r.Watch && r.Code == 200);
    double last = -1;
    var since = Stopwatch.GetTimestamp();
    while (true)
    {
        var now = await WatchesAsync();
        if (now != last)
        {
            (last, since) = (now, Stopwatch.GetTimestamp());
        }
        else if (Stopwatch.GetElapsedTime(since) > TimeSpan.FromSeconds(3) && now >= speakerWatches)
        {
            return now;
        }

        await Task.Delay(200);
    }
}

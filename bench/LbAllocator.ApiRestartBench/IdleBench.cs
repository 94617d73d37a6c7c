using System.Diagnostics;
using System.Globalization;
using k8s.Models;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.Speaker;
using LbAllocator.TestApiServer;

namespace LbAllocator.ApiRestartBench;

/// <summary>
/// The API server's cost per node of an idle cluster, by its own counters (<see cref="ServerWindow"/>). For each size N,
/// on a fresh server: N Nodes, Services of type LoadBalancer with EndpointSlices, a pool, an L2Advertisement and a
/// ServiceL2Status per Service; then three windows: the server alone, N simulated kubelets (A: the baseline), and
/// kubelets plus the controller and N speakers (B), once they have synced and settled. B − A is what the controller
/// and the speakers add.
/// </summary>
internal static class IdleBench
{
    private const string Ns = BenchCluster.Ns;

    public static async Task RunAsync(string[] args)
    {
        var sizes = BenchArgs.Ints(args, "--sizes", [10, 30, 100]);
        var window = TimeSpan.FromSeconds(BenchArgs.Int(args, "--window", 120));
        var quiet = TimeSpan.FromSeconds(BenchArgs.Int(args, "--quiet-window", 60));
        var statusPeriod = TimeSpan.FromSeconds(BenchArgs.Int(args, "--status-period", 60));
        var services = BenchArgs.Int(args, "--services", 50);
        var settle = TimeSpan.FromSeconds(BenchArgs.Int(args, "--settle", 30));
        var label = BenchArgs.Text(args, "--label", "nodes-watched");
        if (window.TotalSeconds % statusPeriod.TotalSeconds != 0)
        {
            Console.Error.WriteLine($"warning: --window {window.TotalSeconds} s is not a whole number of --status-period {statusPeriod.TotalSeconds} s: the Nodes' status writes in a window vary");
        }

        var results = new List<(int N, ServerWindow Quiet, ServerWindow A, ServerWindow B, int Failures)>();
        foreach (var n in sizes)
        {
            var started = Stopwatch.GetTimestamp();
            results.Add(await MeasureAsync(n, services, statusPeriod, quiet, window, settle));
            Console.Error.WriteLine($"N = {n} measured in {Stopwatch.GetElapsedTime(started).TotalSeconds:F0} s");
        }

        Console.WriteLine($"{label}: {services} Services of type LoadBalancer with EndpointSlices and ServiceL2Statuses; kubelets renew leases every {Kubelets.LeaseRenewInterval.TotalSeconds:0} s and write Node status every {statusPeriod.TotalSeconds:0} s; windows {quiet.TotalSeconds:0} s (server alone), {window.TotalSeconds:0} s (A, B). Per node: per second, divided by N.");
        Console.WriteLine();
        Console.WriteLine("| code | N | kubelets' writes/s per node (A − server alone) | speakers' writes/s per node (their clients) | ratio to kubelets' | all writes added, per node (B − A) | of which the controller's, /s in all | speakers' GETs/s per node | watch events/s per node, A | added (B − A) | of which Node | added, without Node | watches open A → B | kube-apiserver CPU added, ms/s per node | this process's CPU added, ms/s per speaker | heap / RSS added per speaker | failed kubelet writes |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var (n, q, a, b, failures) in results)
        {
            var kubelet = PerNode(a.WritesTotal, a) - PerNode(q.WritesTotal, q);
            var speakers = b.SpeakerWrites / b.Seconds / n;
            var added = PerNode(b.WritesTotal, b) - PerNode(a.WritesTotal, a);
            var eventsAdded = PerNode(b.EventsTotal, b) - PerNode(a.EventsTotal, a);
            var nodeEvents = PerNode(b.Events.GetValueOrDefault("Node"), b) - PerNode(a.Events.GetValueOrDefault("Node"), a);
            Console.WriteLine(Invariant(
                $"| {label} | {n} | {kubelet:F4} | {speakers:F4} | {speakers / kubelet:F2} | {added:F4} | {(added - speakers) * n:F2} | {b.SpeakerReads / b.Seconds / n:F4} | {PerNode(a.EventsTotal, a):F4} | {eventsAdded:F4} | {nodeEvents:F4} | {eventsAdded - nodeEvents:F4} | {a.Watches:0} → {b.Watches:0} | {1000 * (PerNode(b.ServerCpu, b) - PerNode(a.ServerCpu, a)):F2} | {1000 * (PerNode(b.ProcessCpu, b) - PerNode(a.ProcessCpu, a)):F2} | {(b.ProcessHeap - a.ProcessHeap) / n / 1024:F0} KiB / {(b.ProcessRss - a.ProcessRss) / n / 1024:F0} KiB | {failures} |"));
        }

        Console.WriteLine();
        Console.WriteLine("By resource (writes) and kind (watch events), per node per second: A − server alone, and B − A.");
        Console.WriteLine();
        Console.WriteLine("| code | N | writes, kubelets | writes added | events, A | events added |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (var (n, q, a, b, _) in results)
        {
            Console.WriteLine($"| {label} | {n} | {Split(a.Writes, a, q.Writes, q)} | {Split(b.Writes, b, a.Writes, a)} | {Split(a.Events, a, new Dictionary<string, double>(), a)} | {Split(b.Events, b, a.Events, a)} |");
        }

        static double PerNode(double count, ServerWindow w) => count / w.Seconds / w.Nodes;
    }

    private static async Task<(int N, ServerWindow Quiet, ServerWindow A, ServerWindow B, int Failures)> MeasureAsync(
        int n, int services, TimeSpan statusPeriod, TimeSpan quiet, TimeSpan window, TimeSpan settle)
    {
        var nodes = Enumerable.Range(0, n).Select(i => $"node-{i}").ToList();
        await using var server = await BenchCluster.StartAsync();
        using var admin = server.CreateApi();
        await Kubelets.CreateNodesAsync(admin, nodes, CancellationToken.None);
        await PopulateAsync(admin, nodes, services);
        var log = new RequestLog();
        await Task.Delay(TimeSpan.FromSeconds(5));
        var alone = await ServerWindow.MeasureAsync(server, quiet, log) with { Nodes = n };

        using var kubeletApi = server.CreateApi();
        await using var kubelets = Kubelets.Start(kubeletApi, nodes, statusPeriod);
        await Task.Delay(settle);
        var a = await ServerWindow.MeasureAsync(server, window, log) with { Nodes = n };

        await using var fleet = await Fleet.StartControllerAsync(server);
        await WaitForControllerAsync(admin, services);
        fleet.StartSpeakers(server, Ns, nodes, log, leaseAndKey: true);
        using (var synced = new CancellationTokenSource(TimeSpan.FromMinutes(5)))
        {
            await fleet.WaitSyncedAsync(synced.Token);
        }

        await Task.Delay(settle);
        var b = await ServerWindow.MeasureAsync(server, window, log) with { Nodes = n };
        return (n, alone, a, b, kubelets.Failures);
    }

    /// <summary>
    /// An idle cluster's objects: a pool and an advertisement, Services of type LoadBalancer with an EndpointSlice each
    /// (two endpoints on two nodes), and each Service's ServiceL2Status as its owner's speaker wrote it.
    /// </summary>
    private static async Task PopulateAsync(KubeApi api, List<string> nodes, int services)
    {
        await api.CreateAsync(KubeResources.Pools, Ns, new V1Alpha1IPAddressPool { Metadata = new V1ObjectMeta { Name = "bench" }, Spec = new IPAddressPoolSpec { Addresses = ["192.0.2.0/24"] } });
        await api.CreateAsync(KubeResources.Advertisements, Ns, new V1Alpha1L2Advertisement { Metadata = new V1ObjectMeta { Name = "bench" }, Spec = new L2AdvertisementSpec() });
        await Parallel.ForAsync(0, services, async (i, ct) =>
        {
            var name = $"svc-{i}";
            await api.CreateAsync(KubeResources.Services, "default", new V1Service
            {
                Metadata = new V1ObjectMeta { Name = name },
                Spec = new V1ServiceSpec { Type = "LoadBalancer", Ports = [new V1ServicePort { Port = 80 }], Selector = new Dictionary<string, string> { ["app"] = name } },
            }, ct);
            await api.CreateAsync(KubeResources.EndpointSlices, "default", new V1EndpointSlice
            {
                Metadata = new V1ObjectMeta { Name = $"{name}-a", Labels = new Dictionary<string, string> { ["kubernetes.io/service-name"] = name } },
                AddressType = "IPv4",
                Endpoints = [.. new[] { i, i + 1 }.Select(e => new V1Endpoint
                {
                    Addresses = [$"10.1.{e / 250}.{(e % 250) + 1}"], NodeName = nodes[e % nodes.Count], Conditions = new V1EndpointConditions { Ready = true },
                })],
                Ports = [new Discoveryv1EndpointPort { Port = 80 }],
            }, ct);
            var status = await api.CreateAsync(KubeResources.ServiceL2Statuses, Ns, new V1Alpha1ServiceL2Status { Metadata = new V1ObjectMeta { Name = L2StatusWriter.StatusName("default", name) } }, ct);
            status.Status = new ServiceL2StatusStatus
            {
                Node = nodes[i % nodes.Count], ServiceName = name, ServiceNamespace = "default",
                Interfaces = [new InterfaceInfo { Name = "eth0", Mac = $"02:00:00:00:{(i % nodes.Count) / 256:x2}:{(i % nodes.Count) % 256:x2}" }],
            };
            await api.ReplaceAsync(KubeResources.ServiceL2Statuses, Ns, status.Metadata.Name, status, "status", ct);
        });
    }

    /// <summary>Waits until the controller has given every Service its address and made the speakers' key.</summary>
    private static async Task WaitForControllerAsync(KubeApi api, int services)
    {
        var since = Stopwatch.GetTimestamp();
        while (true)
        {
            var addressed = (await api.ListAsync(KubeResources.Services, "default")).Items?.Count(s => s.Status?.LoadBalancer?.Ingress?.Count > 0) ?? 0;
            var key = await ClusterKeyExistsAsync(api);
            if (addressed == services && key)
            {
                return;
            }

            if (Stopwatch.GetElapsedTime(since) > TimeSpan.FromMinutes(2))
            {
                throw new TimeoutException($"the controller gave {addressed} of {services} Services an address in 2 min{(key ? "" : $", and Secret {Ns}/{SpeakerKeySecret.Name} does not exist")}");
            }

            await Task.Delay(500);
        }
    }

    private static async Task<bool> ClusterKeyExistsAsync(KubeApi api)
    {
        try
        {
            await api.GetAsync(KubeResources.Secrets, Ns, SpeakerKeySecret.Name);
            return true;
        }
        catch (KubeApiException e) when (e.StatusCode == System.Net.HttpStatusCode.NotFound)
        {
            return false;
        }
    }

    /// <summary>"name value, ..." per node per second, largest first, of <paramref name="now"/> less <paramref name="then"/>.</summary>
    private static string Split(IReadOnlyDictionary<string, double> now, ServerWindow nowWindow, IReadOnlyDictionary<string, double> then, ServerWindow thenWindow) =>
        string.Join(", ", now.Keys.Union(then.Keys)
            .Select(k => (k, v: now.GetValueOrDefault(k) / nowWindow.Seconds / nowWindow.Nodes - then.GetValueOrDefault(k) / thenWindow.Seconds / thenWindow.Nodes))
            .Where(x => Math.Abs(x.v) >= 0.00005)
            .OrderByDescending(x => Math.Abs(x.v))
            .Select(x => Invariant($"{x.k} {x.v:F4}")));

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

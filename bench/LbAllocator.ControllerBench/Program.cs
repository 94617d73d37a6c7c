using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using k8s;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes;
using LbAllocator.TestApiServer;

// Controller benchmark on a real kube-apiserver (KUBEBUILDER_ASSETS, with etcd), against a plain client
// doing the same writes in the same run. The controller runs as its own process (`lballocator controller`),
// so its CPU time and peak memory are its own. Usage:
//   LbAllocator.ControllerBench PATH/TO/lballocator[.dll] [--one N] [--burst N] [--clients N] [--rounds N]
//   LbAllocator.ControllerBench PATH/TO/lballocator[.dll] --footprint 1000,10000 [--baseline PATH/TO/lballocator[.dll]]
if (args.Length < 1 || !File.Exists(args[0]))
{
    Console.Error.WriteLine("usage: LbAllocator.ControllerBench PATH/TO/lballocator[.dll] [--one 200] [--burst 1000] [--clients 16] [--rounds 1] | --footprint 1000,10000 [--baseline PATH/TO/lballocator[.dll]]");
    return 2;
}

var cli = Path.GetFullPath(args[0]);
var one = Arg("--one", 200);
var burst = Arg("--burst", 1_000);
var clients = Arg("--clients", 16);
var rounds = Arg("--rounds", 1);
if (KubeApiServer.Missing is { } missing)
{
    Console.Error.WriteLine(missing);
    return 2;
}

await using var server = await KubeApiServer.StartAsync();
using var client = server.CreateClient();
await server.KubectlMustAsync("apply", "--server-side", "-k", Path.Combine(InstallManifests.RepoRoot, "config", "crd"));
await server.KubectlMustAsync("wait", "--for=condition=Established", "crd/ipaddresspools.lballocator.io", "--timeout=60s");
await client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = "lballocator-system" } });
// IPv6 documentation addresses: a /112 holds every Service of every round.
var (code, _, error) = await server.KubectlAsync(["apply", "-f", "-"], stdin: """
    apiVersion: lballocator.io/v1alpha1
    kind: IPAddressPool
    metadata: {name: bench, namespace: lballocator-system}
    spec: {addresses: ["2001:db8::/112"]}
    """);
if (code != 0)
{
    Console.Error.WriteLine($"creating the pool failed: {error}");
    return 1;
}


await using var watch = await AddressWatch.StartAsync(server.CreateClient());
if (Array.IndexOf(args, "--footprint") is var footprintAt and > 0)
{
    var steps = args[footprintAt + 1].Split(',').Select(n => int.Parse(n, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
    var baseline = Array.IndexOf(args, "--baseline") is var b and > 0 ? Path.GetFullPath(args[b + 1]) : null;
    await ControllerFootprint.RunAsync(cli, baseline, server, client, watch, steps, clients);
    return 0;
}

Console.WriteLine($"# Controller on a real kube-apiserver ({Environment.ProcessorCount} cores, .NET {Environment.Version}); one at a time: {one}, burst: {burst} by {clients} concurrent clients, {rounds} round(s)");
Console.WriteLine();

// Warm the benchmark's own client and the server (JIT, connections, etcd) so the first measured phase is not
// penalised; each controller gets the same warm-up after it starts (a controller runs for days: the first
// seconds of a process are JIT compilation, which is not what a burst meets).
const int WarmUp = 200;
await PlainAsync(client, watch, "warm", WarmUp, clients, 0xffff);

var rows = new List<string>();
var restarts = new List<string>();
var requests = new List<string>();
var splits = new List<string>();
for (var round = 1; round <= rounds; round++)
{
    // The plain client first, with no controller running; its Services carry a class the controller ignores.
    var plainOne = await PlainAsync(client, watch, $"plain-one-{round}", one, 1, 0xfff0 + round);
    var plainBurst = await PlainAsync(client, watch, $"plain-burst-{round}", burst, clients, 0xffe0 + round);
    var createsOnly = await CreatesOnlyAsync(client, $"creates-{round}", burst, clients);

    using var controller = new ControllerProcess(cli, server.AdminKubeconfig);
    await controller.Ready.WaitAsync(TimeSpan.FromSeconds(90));
    await ControllerAsync(client, watch, $"ctl-warm-{round}", WarmUp, clients);
    var ctlOne = await ControllerAsync(client, watch, $"ctl-one-{round}", one, 1);
    var ctlBurst = await ControllerAsync(client, watch, $"ctl-burst-{round}", burst, clients);
    var (cpu, rss) = controller.Usage();
    requests.Add($"round {round}: {await controller.RequestsAsync()} for {WarmUp + one + burst:N0} Services");
    await controller.StopAsync();

    rows.Add(Row(round, "one at a time", one, 1, ctlOne, plainOne, cpu, rss));
    rows.Add(Row(round, "burst", burst, clients, ctlBurst, plainBurst, cpu, rss));
    splits.Add($"| {round} | one at a time | {ctlOne.CreateP50:F1} ms | {plainOne.CreateP50:F1} ms | | {ctlOne.AfterP50:F1} ms | {plainOne.AfterP50:F1} ms |");
    splits.Add($"| {round} | burst | {ctlBurst.CreateP50:F1} ms | {plainBurst.CreateP50:F1} ms | {createsOnly:F1} ms | {ctlBurst.AfterP50:F1} ms | {plainBurst.AfterP50:F1} ms |");
    restarts.Add(await RestartAsync(cli, server, client, $"ctl-burst-{round}"));
}

Console.WriteLine("| round | scenario | Services | clients | controller p50 | plain p50 | ratio | controller p99 | plain p99 | ratio | all addressed: controller | plain | controller CPU | peak RSS |");
Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
foreach (var row in rows)
{
    Console.WriteLine(row);
}

Console.WriteLine();
Console.WriteLine("Where the time goes (medians): the create call alone, then from its response to the address seen (plain: its status PUT and the watch; controller: the watch, its queue, its PUT and the watch). Creates only: the same burst of creates with nothing else (no status writes, no controller).");
Console.WriteLine();
Console.WriteLine("| round | scenario | create: controller run | plain run | creates only | create→address after the create returned: controller | plain |");
Console.WriteLine("|---|---|---|---|---|---|---|");
foreach (var split in splits)
{
    Console.WriteLine(split);
}

Console.WriteLine();
Console.WriteLine("controller CPU and peak RSS: the controller process over both of its scenarios in that round (one process per round).");
Console.WriteLine($"Controller requests to the API server (its lballocator_kubernetes_requests_total by method and code; the plain client made a create and a status PUT per Service): {string.Join("; ", requests)}.");
foreach (var line in restarts)
{
    Console.WriteLine(line);
}

return 0;

int Arg(string name, int fallback)
{
    var i = Array.IndexOf(args, name);
    return i > 0 && i + 1 < args.Length ? int.Parse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture) : fallback;
}

static string Row(int round, string scenario, int count, int clients, Phase controller, Phase plain, TimeSpan cpu, long rss) =>
    $"| {round} | {scenario} | {count:N0} | {clients} | {controller.P50:F1} ms | {plain.P50:F1} ms | {controller.P50 / plain.P50:F2}x | {controller.P99:F1} ms | {plain.P99:F1} ms | {controller.P99 / plain.P99:F2}x " +
    $"| {controller.All.TotalSeconds:F2} s | {plain.All.TotalSeconds:F2} s | {cpu.TotalSeconds:F2} s | {rss / 1024 / 1024} MiB |";

// The plain client: creates each Service and writes its status itself, the address seen by the same watch.
static async Task<Phase> PlainAsync(k8s.Kubernetes client, AddressWatch watch, string ns, int count, int clients, int subnet)
{
    await client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = ns } });
    return await MeasureAsync(watch, ns, count, clients, async (i, createdAt, ct) =>
    {
        var svc = Service($"svc-{i}", "bench.example/plain");
        var created = await client.CoreV1.CreateNamespacedServiceAsync(svc, ns, cancellationToken: ct);
        createdAt[i] = Stopwatch.GetTimestamp();
        created.Status ??= new V1ServiceStatus();
        created.Status.LoadBalancer = new V1LoadBalancerStatus { Ingress = [new V1LoadBalancerIngress { Ip = $"2001:db8:{subnet:x}::{i + 1:x}", IpMode = "VIP" }] };
        await client.CoreV1.ReplaceNamespacedServiceStatusAsync(created, created.Metadata.Name, ns, cancellationToken: ct);
    });
}

// The burst's creates with nothing else going on: the create latency that N clients creating back to back get.
static async Task<double> CreatesOnlyAsync(k8s.Kubernetes client, string ns, int count, int clients)
{
    await client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = ns } });
    var took = new double[count];
    await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = clients }, async (i, ct) =>
    {
        var start = Stopwatch.GetTimestamp();
        await client.CoreV1.CreateNamespacedServiceAsync(Service($"svc-{i}", "bench.example/plain"), ns, cancellationToken: ct);
        took[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    });
    return Percentile([.. took.Order()], 0.50);
}

// The controller: the benchmark only creates; the controller writes the status.
static async Task<Phase> ControllerAsync(k8s.Kubernetes client, AddressWatch watch, string ns, int count, int clients)
{
    await client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = ns } });
    return await MeasureAsync(watch, ns, count, clients, async (i, createdAt, ct) =>
    {
        await client.CoreV1.CreateNamespacedServiceAsync(Service($"svc-{i}", null), ns, cancellationToken: ct);
        createdAt[i] = Stopwatch.GetTimestamp();
    });
}

// Per Service: from the start of its create call to the watch event that shows an address. With one client,
// the next Service is created only once the previous one is addressed.
static async Task<Phase> MeasureAsync(AddressWatch watch, string ns, int count, int clients, Func<int, long[], CancellationToken, Task> create)
{
    var started = new long[count];
    var returned = new long[count];
    var waits = new Task<long>[count];
    var start = Stopwatch.GetTimestamp();
    await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = clients }, async (i, ct) =>
    {
        waits[i] = watch.Addressed($"{ns}/svc-{i}");
        started[i] = Stopwatch.GetTimestamp();
        await create(i, returned, ct);
        if (clients == 1)
        {
            await waits[i].WaitAsync(TimeSpan.FromSeconds(60), ct);
        }
    });
    var seen = await Task.WhenAll(waits).WaitAsync(TimeSpan.FromMinutes(5));
    var latencies = seen.Select((t, i) => Stopwatch.GetElapsedTime(started[i], t).TotalMilliseconds).Order().ToArray();
    var creates = started.Select((t, i) => Stopwatch.GetElapsedTime(t, returned[i]).TotalMilliseconds).Order().ToArray();
    var after = seen.Select((t, i) => Stopwatch.GetElapsedTime(returned[i], t).TotalMilliseconds).Order().ToArray();
    return new Phase(Percentile(latencies, 0.50), Percentile(latencies, 0.99), Stopwatch.GetElapsedTime(start, seen.Max()), Percentile(creates, 0.50), Percentile(after, 0.50));
}

// A controller restart with the burst's Services assigned: none renumbered, none written again.
static async Task<string> RestartAsync(string cli, KubeApiServer server, k8s.Kubernetes client, string ns)
{
    var before = (await client.CoreV1.ListNamespacedServiceAsync(ns)).Items.ToDictionary(s => s.Metadata.Name);
    var start = Stopwatch.GetTimestamp();
    using var controller = new ControllerProcess(cli, server.AdminKubeconfig);
    await controller.Ready.WaitAsync(TimeSpan.FromSeconds(90));
    var ready = Stopwatch.GetElapsedTime(start);
    await Task.Delay(TimeSpan.FromSeconds(3)); // let any (wrong) writes happen
    var after = (await client.CoreV1.ListNamespacedServiceAsync(ns)).Items.ToDictionary(s => s.Metadata.Name);
    var requests = await controller.RequestsAsync();
    await controller.StopAsync();
    var renumbered = before.Count(kv => !ObjectMapper.IngressIps(after[kv.Key]).SequenceEqual(ObjectMapper.IngressIps(kv.Value)));
    var written = before.Count(kv => after[kv.Key].Metadata.ResourceVersion != kv.Value.Metadata.ResourceVersion);
    var annotated = before.Values.Count(s => s.Metadata.Annotations?.ContainsKey(ServiceAnnotations.AllocatedFromPool) == true);
    return $"Restart with {before.Count:N0} assigned Services ({ns}; {annotated:N0} carried the pool annotation before it): ready {ready.TotalSeconds:F2} s after the process started; renumbered {renumbered}; Services written after the restart {written}; the restarted controller's requests: {requests}.";
}

static double Percentile(double[] sorted, double p) => sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];

static V1Service Service(string name, string? loadBalancerClass) => BenchService.Create(name, loadBalancerClass);

internal static class BenchService
{
    public static V1Service Create(string name, string? loadBalancerClass) => new()
    {
        Metadata = new V1ObjectMeta { Name = name },
        Spec = new V1ServiceSpec
        {
            Type = "LoadBalancer",
            AllocateLoadBalancerNodePorts = false, // the node port range (2,768) would run out over a few rounds
            LoadBalancerClass = loadBalancerClass,
            Ports = [new V1ServicePort { Port = 80, Protocol = "TCP" }],
            IpFamilies = ["IPv6"],
            IpFamilyPolicy = "SingleStack",
        },
    };
}

/// <param name="CreateP50">The create call alone.</param>
/// <param name="AfterP50">From the create's response to the address seen.</param>
internal sealed record Phase(double P50, double P99, TimeSpan All, double CreateP50, double AfterP50);

/// <summary>One watch on every Service, as `kubectl get svc -A -w` would: when each first showed an address.</summary>
internal sealed class AddressWatch : IAsyncDisposable
{
    private readonly k8s.Kubernetes _client;
    private readonly ConcurrentDictionary<string, TaskCompletionSource<long>> _addressed = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private Task _loop = Task.CompletedTask;

    private AddressWatch(k8s.Kubernetes client) => _client = client;

    public static async Task<AddressWatch> StartAsync(k8s.Kubernetes client)
    {
        var watch = new AddressWatch(client);
        var version = (await client.CoreV1.ListServiceForAllNamespacesAsync(limit: 1)).Metadata.ResourceVersion;
        watch._loop = Task.Run(() => watch.RunAsync(version));
        return watch;
    }

    /// <summary>The timestamp at which the watch first saw an address on the Service.</summary>
    public Task<long> Addressed(string key) => Get(key).Task;

    private TaskCompletionSource<long> Get(string key) => _addressed.GetOrAdd(key, _ => new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously));

    private async Task RunAsync(string version)
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await foreach (var (_, svc) in _client.CoreV1.WatchListServiceForAllNamespacesAsync(resourceVersion: version, allowWatchBookmarks: true, cancellationToken: _stop.Token))
                {
                    var now = Stopwatch.GetTimestamp();
                    version = svc.Metadata.ResourceVersion;
                    if (svc.Status?.LoadBalancer?.Ingress?.Count > 0)
                    {
                        Get($"{svc.Metadata.NamespaceProperty}/{svc.Metadata.Name}").TrySetResult(now);
                    }
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
        _client.Dispose();
    }
}

/// <summary>`lballocator controller` as a child process; ready when it logs that it claimed the addresses.</summary>
internal sealed class ControllerProcess : IDisposable
{
    private readonly Process _process;
    private readonly int _statusPort = FreePort();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public ControllerProcess(string cli, string kubeconfig)
    {
        string[] launch = cli.EndsWith(".dll", StringComparison.Ordinal) ? ["dotnet", cli] : [cli];
        var info = new ProcessStartInfo(launch[0], [.. launch[1..], "controller", "--kubeconfig", kubeconfig, "--no-leader-election", "--log-level", "Information", "--status-address", $"127.0.0.1:{_statusPort}"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.Environment["DOTNET_gcServer"] = "0";
        _process = Process.Start(info)!;
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data?.Contains("claimed addresses of", StringComparison.Ordinal) == true)
            {
                _ready.TrySetResult();
            }
        };
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is { Length: > 0 } line)
            {
                Console.Error.WriteLine($"controller: {line}");
            }
        };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public Task Ready => _ready.Task;

    /// <summary>The controller's own count of its API requests, by method and status code.</summary>
    public async Task<string> RequestsAsync()
    {
        using var http = new HttpClient();
        var text = await http.GetStringAsync(new Uri($"http://127.0.0.1:{_statusPort}/metrics"));
        var counts = text.Split('\n')
            .Where(l => l.StartsWith("lballocator_kubernetes_requests_total{", StringComparison.Ordinal))
            .Select(l => (Labels: l[(l.IndexOf('{', StringComparison.Ordinal) + 1)..l.IndexOf('}', StringComparison.Ordinal)].Replace("\"", "", StringComparison.Ordinal), Count: double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture)))
            .OrderBy(c => c.Labels, StringComparer.Ordinal);
        return string.Join(", ", counts.Select(c => $"{c.Labels} {c.Count:F0}"));
    }

    public int Pid => _process.Id;

    /// <summary>200 from /readyz (caches synced).</summary>
    public async Task<bool> IsReadyAsync()
    {
        using var http = new HttpClient();
        try
        {
            return (await http.GetAsync(new Uri($"http://127.0.0.1:{_statusPort}/readyz"))).IsSuccessStatusCode;
        }
        catch (HttpRequestException)
        {
            return false; // not listening yet
        }
    }

    public (TimeSpan Cpu, long PeakRss) Usage()
    {
        _process.Refresh();
        var status = File.ReadAllLines($"/proc/{_process.Id}/status");
        var hwm = status.First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
        return (_process.TotalProcessorTime, long.Parse(hwm, System.Globalization.CultureInfo.InvariantCulture) * 1024);
    }

    public async Task StopAsync()
    {
        if (!_process.HasExited)
        {
            // SIGTERM, as Kubernetes stops a pod.
            Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
            if (!_process.WaitForExit(10_000))
            {
                _process.Kill();
            }
        }

        await _process.WaitForExitAsync();
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
        }

        _process.Dispose();
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

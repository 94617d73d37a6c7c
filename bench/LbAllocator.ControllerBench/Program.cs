using System.Collections.Concurrent;
using System.Diagnostics;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Crds;

// Controller benchmark. The test API server runs here; the controller runs as its own process
// (`lballocator controller`), so its CPU time and peak memory are its own. Usage:
//   dotnet run -c Release --project bench/LbAllocator.ControllerBench -- PATH/TO/lballocator.dll [counts...]
if (args.Length < 1 || !File.Exists(args[0]))
{
    Console.Error.WriteLine("usage: LbAllocator.ControllerBench PATH/TO/lballocator.dll [COUNT...]");
    return 2;
}

var cli = Path.GetFullPath(args[0]);
var counts = args.Length > 1 ? args[1..].Select(int.Parse).ToArray() : [1_000, 5_000];
const int Concurrency = 16;
Console.WriteLine($"# Controller benchmark ({Environment.ProcessorCount} cores, .NET {Environment.Version}); creates with {Concurrency} concurrent clients");
Console.WriteLine();
Console.WriteLine("| Services | creates done after | all addressed after | create→address p50 | p99 | controller CPU | controller peak RSS | baseline: same status writes by a plain client | ratio |");
Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
string? restartLine = null;
foreach (var count in counts)
{
    await using var server = await LbAllocator.TestApiServer.TestApiServer.StartAsync();
    using var client = server.CreateClient();
    var kubeconfig = WriteKubeconfig(server.Url);
    await client.CustomObjects.CreateNamespacedCustomObjectAsync(
        new V1Alpha1IPAddressPool { Metadata = new V1ObjectMeta { Name = "bench" }, Spec = new IPAddressPoolSpec { Addresses = ["198.18.0.0/16"] } },
        Api.Group, Api.Version, "lballocator-system", "ipaddresspools");

    using var controller = StartController(cli, kubeconfig);
    await controller.Ready.WaitAsync(TimeSpan.FromSeconds(60));

    // Watch for addresses from the outside, as a user would.
    var created = new ConcurrentDictionary<string, long>();
    var addressed = new ConcurrentDictionary<string, long>();
    using var stopWatch = new CancellationTokenSource();
    var allAddressed = new TaskCompletionSource();
    var watcher = Task.Run(async () =>
    {
        try
        {
            await foreach (var (_, svc) in client.CoreV1.WatchListNamespacedServiceAsync("bench", cancellationToken: stopWatch.Token))
            {
                if (svc.Status?.LoadBalancer?.Ingress?.Count > 0 && addressed.TryAdd(svc.Metadata.Name, Stopwatch.GetTimestamp()) && addressed.Count == count)
                {
                    allAddressed.TrySetResult();
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    });

    var start = Stopwatch.GetTimestamp();
    await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = Concurrency }, async (i, ct) =>
    {
        var name = $"svc-{i}";
        await client.CoreV1.CreateNamespacedServiceAsync(Service(name), "bench", cancellationToken: ct);
        created[name] = Stopwatch.GetTimestamp();
    });
    var createsDone = Stopwatch.GetElapsedTime(start);
    await allAddressed.Task.WaitAsync(TimeSpan.FromMinutes(5));
    var total = Stopwatch.GetElapsedTime(start);
    var latencies = created.Select(kv => Stopwatch.GetElapsedTime(kv.Value, addressed[kv.Key]).TotalMilliseconds).Order().ToArray();
    var (cpu, rss) = controller.Usage();
    await controller.StopAsync();
    await stopWatch.CancelAsync();
    await watcher;

    // Baseline, without the controller: the same status writes (one per Service) by a plain client, with the same concurrency.
    var services = (await client.CoreV1.ListNamespacedServiceAsync("bench")).Items;
    var baselineStart = Stopwatch.GetTimestamp();
    await Parallel.ForEachAsync(services.Select((s, i) => (s, i)), new ParallelOptions { MaxDegreeOfParallelism = Concurrency }, async (item, ct) =>
    {
        var (svc, i) = item;
        svc.Status.LoadBalancer.Ingress = [new V1LoadBalancerIngress { Ip = $"198.19.{i / 256}.{i % 256}", IpMode = "VIP" }];
        await client.CoreV1.ReplaceNamespacedServiceStatusAsync(svc, svc.Metadata.Name, "bench", cancellationToken: ct);
    });
    var baseline = Stopwatch.GetElapsedTime(baselineStart);
    Console.WriteLine($"| {count:N0} | {createsDone.TotalSeconds:F2} s | {total.TotalSeconds:F2} s | {Percentile(latencies, 0.50):F0} ms | {Percentile(latencies, 0.99):F0} ms | {cpu.TotalSeconds:F2} s | {rss / 1024 / 1024} MiB | {baseline.TotalSeconds:F2} s | {total / baseline:F2}x |");

    // The restart measurement (first run puts the controller's addresses back, the baseline overwrote them).
    if (count == counts.Max())
    {
        restartLine = await Restart(cli, kubeconfig, server, client, count);
    }
}

if (restartLine is not null)
{
    Console.WriteLine();
    Console.WriteLine(restartLine);
}

return 0;

static async Task<string> Restart(string cli, string kubeconfig, LbAllocator.TestApiServer.TestApiServer server, k8s.Kubernetes client, int count)
{
    // First run: assign everything, and let it settle.
    using (var first = StartController(cli, kubeconfig))
    {
        await first.Ready.WaitAsync(TimeSpan.FromSeconds(60));
        var deadline = DateTime.UtcNow.AddMinutes(5);
        while (DateTime.UtcNow < deadline)
        {
            var all = (await client.CoreV1.ListNamespacedServiceAsync("bench")).Items;
            if (all.All(s => s.Status?.LoadBalancer?.Ingress?.FirstOrDefault()?.Ip?.StartsWith("198.18.", StringComparison.Ordinal) == true))
            {
                break;
            }

            await Task.Delay(200);
        }

        await first.StopAsync();
    }

    var before = (await client.CoreV1.ListNamespacedServiceAsync("bench")).Items.ToDictionary(s => s.Metadata.Name, s => s.Status.LoadBalancer.Ingress[0].Ip);
    var writesBefore = server.CountRequests("PUT", "/status");
    var start = Stopwatch.GetTimestamp();
    using var second = StartController(cli, kubeconfig);
    await second.Ready.WaitAsync(TimeSpan.FromSeconds(60));
    var ready = Stopwatch.GetElapsedTime(start);
    await Task.Delay(TimeSpan.FromSeconds(3)); // let any (wrong) writes happen
    var after = (await client.CoreV1.ListNamespacedServiceAsync("bench")).Items.ToDictionary(s => s.Metadata.Name, s => s.Status.LoadBalancer.Ingress[0].Ip);
    var renumbered = before.Count(kv => after[kv.Key] != kv.Value);
    var writes = server.CountRequests("PUT", "/status") - writesBefore;
    await second.StopAsync();
    return $"Restart with {count:N0} assigned Services: ready (all addresses claimed, every Service queued) {ready.TotalSeconds:F2} s after the process started; renumbered {renumbered}; status writes after the restart {writes}.";
}

static double Percentile(double[] sorted, double p) => sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];

static V1Service Service(string name) => new()
{
    Metadata = new V1ObjectMeta { Name = name },
    Spec = new V1ServiceSpec { Type = "LoadBalancer", Ports = [new V1ServicePort { Port = 80, Protocol = "TCP" }], IpFamilies = ["IPv4"], IpFamilyPolicy = "SingleStack" },
};

static string WriteKubeconfig(Uri server)
{
    var path = Path.Combine(Path.GetTempPath(), $"lballocator-bench-{Guid.NewGuid():N}.kubeconfig");
    File.WriteAllText(path, $"""
        apiVersion: v1
        kind: Config
        clusters: [{"{"}name: bench, cluster: {"{"}server: "{server}"{"}"}{"}"}]
        users: [{"{"}name: bench, user: {"{"}token: bench{"}"}{"}"}]
        contexts: [{"{"}name: bench, context: {"{"}cluster: bench, user: bench{"}"}{"}"}]
        current-context: bench
        """);
    return path;
}

static ControllerProcess StartController(string cli, string kubeconfig) => new(cli, kubeconfig);

/// <summary>`lballocator controller` as a child process; ready when it logs that it claimed the addresses.</summary>
internal sealed class ControllerProcess : IDisposable
{
    private readonly Process _process;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public ControllerProcess(string cli, string kubeconfig)
    {
        var info = new ProcessStartInfo("dotnet", [cli, "controller", "--kubeconfig", kubeconfig, "--no-leader-election", "--log-level", "Information"])
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
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public Task Ready => _ready.Task;

    public (TimeSpan Cpu, long PeakRss) Usage()
    {
        _process.Refresh();
        var status = File.ReadAllLines($"/proc/{_process.Id}/status");
        var hwm = status.First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
        return (_process.TotalProcessorTime, long.Parse(hwm) * 1024);
    }

    public async Task StopAsync()
    {
        if (!_process.HasExited)
        {
            // SIGTERM, as Kubernetes stops a pod.
            Process.Start("kill", ["-TERM", _process.Id.ToString()])!.WaitForExit();
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
}

using System.Diagnostics;
using k8s;
using k8s.Models;
using LbAllocator.TestApiServer;
using Xunit.Abstractions;

namespace LbAllocator.Controller.Tests;

/// <summary>
/// The controller under churn on the real server: restarted over and over, or killed with SIGKILL, while
/// Services come and go. No address may ever be held by two Services, none may be renumbered, and
/// everything converges once the trouble stops.
/// </summary>
[Collection(RealClusterCollection.Name)]
public sealed class ReliabilityTests(RealCluster cluster, ITestOutputHelper output) : IAsyncLifetime
{
    private ControllerFixture _f = null!;

    public async Task InitializeAsync()
    {
        _f = await ControllerFixture.StartAsync(cluster);
        await _f.CreatePoolAsync("main", "192.0.2.0/24", "198.51.100.0/24");
    }

    public async Task DisposeAsync() => await _f.DisposeAsync();

    [RealApiFact]
    public async Task Ten_controller_restarts_during_churn_never_double_assign_or_renumber()
    {
        var controllers = new List<ControllerFixture.RunningController>
        {
            await _f.StartControllerAsync("c0", leaderElection: true),
            await _f.StartControllerAsync("c1", leaderElection: true),
        };
        var run = await Churn.ThroughAsync(_f, async () =>
        {
            for (var restart = 0; restart < 10; restart++)
            {
                await Task.Delay(TimeSpan.FromSeconds(1.5));
                // Stop whichever replica is older (every other time the leader), start a fresh one.
                await controllers[0].StopAsync();
                controllers.RemoveAt(0);
                controllers.Add(await _f.StartControllerAsync($"c{restart + 2}", leaderElection: true));
            }
        });
        output.WriteLine($"10 restarts; {run}");
        Assert.Empty(run.Violations);
        Assert.True(run.Created > 100, $"only {run.Created} Services were created");
    }

    [RealApiFact]
    public async Task Ten_sigkills_of_the_controller_process_during_churn_never_double_assign_or_renumber()
    {
        var process = StartControllerProcess();
        try
        {
            var run = await Churn.ThroughAsync(_f, async () =>
            {
                for (var kill = 0; kill < 10; kill++)
                {
                    await Task.Delay(TimeSpan.FromSeconds(1.5));
                    process.Kill(); // SIGKILL: mid-write, no goodbye
                    await process.WaitForExitAsync();
                    process.Dispose();
                    process = StartControllerProcess();
                }
            });
            output.WriteLine($"10 SIGKILLs of the controller process; {run}");
            Assert.Empty(run.Violations);
        }
        finally
        {
            process.Kill();
            process.Dispose();
        }
    }

    /// <summary>
    /// `lballocator controller` as its own process (one replica, as a restarted pod): LBALLOCATOR_CLI when set (the
    /// test command sets it to the published NativeAOT binary), else from the CLI's output folder.
    /// </summary>
    private Process StartControllerProcess()
    {
        // .../tests/LbAllocator.Controller.Tests/bin/<Configuration>/<tfm>/
        var tfm = new DirectoryInfo(AppContext.BaseDirectory);
        var repo = tfm.Parent!.Parent!.Parent!.Parent!.Parent!;
        var dll = Path.Combine(repo.FullName, "src", "LbAllocator.Cli", "bin", tfm.Parent!.Name, tfm.Name, "lballocator.dll");
        var published = LbAllocator.TestApiServer.PublishedCli.Path;
        var info = new ProcessStartInfo(published ?? "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in (published is null ? [dll] : Array.Empty<string>()).Concat(["controller", "--kubeconfig", _f.Kubeconfig, "-n", _f.Ns, "--no-leader-election", "--status-address", "127.0.0.1:0", "--log-level", "Warning"]))
        {
            info.ArgumentList.Add(arg);
        }

        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }
}

/// <summary>The controller under churn on the double, for what a real server cannot do on demand: drop watches and fail.</summary>
public sealed class ReliabilityFaultTests(ITestOutputHelper output) : IAsyncLifetime
{
    private ControllerFixture _f = null!;

    public async Task InitializeAsync()
    {
        _f = await ControllerFixture.StartDoubleAsync();
        await _f.CreatePoolAsync("main", "192.0.2.0/24", "198.51.100.0/24");
    }

    public async Task DisposeAsync() => await _f.DisposeAsync();

    [Fact]
    public async Task Dropped_watches_and_stretches_of_500s_during_churn_converge()
    {
        await _f.StartControllerAsync("c0", leaderElection: true);
        await _f.StartControllerAsync("c1", leaderElection: true);
        var drops = 0;
        var failures = 0;
        var run = await Churn.ThroughAsync(_f, async () =>
        {
            var chaos = Stopwatch.StartNew();
            while (chaos.Elapsed < TimeSpan.FromSeconds(20))
            {
                await Task.Delay(TimeSpan.FromSeconds(2));
                _f.Faults.DropWatches();
                drops++;
                if (drops % 2 == 0)
                {
                    _f.Faults.FailRequestsFor(TimeSpan.FromSeconds(1));
                    failures++;
                }
            }
        });
        output.WriteLine($"20 s of chaos: watches dropped {drops} times, {failures} one-second stretches of 500s; {run}");
        Assert.Empty(run.Violations);
    }
}

/// <summary>
/// Services coming and going (one created every 40 ms, a random one deleted every third time) under a monitor
/// that lists them over and over, while some trouble runs; then the wait until every Service is served.
/// </summary>
internal static class Churn
{
    /// <summary>What a churn run saw: Services created and deleted, monitor checks, violations, time to converge.</summary>
    public sealed record Run(int Created, int Deleted, int Checks, IReadOnlyList<string> Violations, TimeSpan Converged)
    {
        public override string ToString() =>
            $"{Created} Services created, {Deleted} deleted; {Checks} checks of every Service; converged {Converged.TotalSeconds:F1} s after the churn stopped";
    }

    /// <summary>Runs <paramref name="trouble"/> while Services come and go under a monitor, then waits until every Service has an address.</summary>
    public static async Task<Run> ThroughAsync(ControllerFixture f, Func<Task> trouble)
    {
        using var stop = new CancellationTokenSource();
        var monitor = new AddressMonitor(f);
        var churn = CreateAndDeleteAsync(f, stop.Token);
        var watching = monitor.RunAsync(stop.Token);
        try
        {
            await trouble();
        }
        finally
        {
            await stop.CancelAsync();
        }

        var (created, deleted) = await churn;
        await watching;
        var converged = await ConvergeAsync(f, monitor);
        return new Run(created, deleted, monitor.Checks, monitor.Violations, converged);
    }

    /// <summary>Creates a Service every 40 ms and deletes a random one every third time, until cancelled.</summary>
    private static async Task<(int Created, int Deleted)> CreateAndDeleteAsync(ControllerFixture f, CancellationToken cancellationToken)
    {
        var random = new Random(42);
        var live = new List<string>();
        var (created, deleted) = (0, 0);
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                var name = $"churn-{created}";
                await f.CreateServiceAsync(name);
                live.Add(name);
                created++;
                if (created % 3 == 0 && live.Count > 0)
                {
                    var victim = live[random.Next(live.Count)];
                    await f.Client.CoreV1.DeleteNamespacedServiceAsync(victim, f.ServiceNs, cancellationToken: CancellationToken.None);
                    live.Remove(victim);
                    deleted++;
                }
            }
            catch (k8s.Autorest.HttpOperationException)
            {
                // The double is failing requests on purpose.
            }

            await Task.Delay(40, CancellationToken.None);
        }

        return (created, deleted);
    }

    /// <summary>Waits until every Service has an address; the time it took.</summary>
    private static async Task<TimeSpan> ConvergeAsync(ControllerFixture f, AddressMonitor monitor)
    {
        var clock = Stopwatch.StartNew();
        await ControllerFixture.Eventually(async () =>
        {
            var services = await f.ServicesAsync();
            monitor.Check(services);
            return services.All(s => s.Status?.LoadBalancer?.Ingress?.Count > 0);
        }, "every Service has an address", TimeSpan.FromSeconds(30));
        return clock.Elapsed;
    }

    /// <summary>Lists the Services over and over and records any address held twice or any Service renumbered.</summary>
    private sealed class AddressMonitor(ControllerFixture f)
    {
        private readonly Dictionary<string, string> _first = new(StringComparer.Ordinal);

        public List<string> Violations { get; } = [];

        public int Checks { get; private set; }

        public async Task RunAsync(CancellationToken cancellationToken)
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                try
                {
                    Check(await f.ServicesAsync());
                }
                catch (k8s.Autorest.HttpOperationException)
                {
                }

                await Task.Delay(100, CancellationToken.None);
            }
        }

        public void Check(IEnumerable<V1Service> services)
        {
            Checks++;
            var holders = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var service in services)
            {
                foreach (var ip in service.Status?.LoadBalancer?.Ingress?.Select(i => i.Ip) ?? [])
                {
                    if (holders.TryGetValue(ip, out var other))
                    {
                        Violations.Add($"{ip} held by {other} and {service.Metadata.Name}");
                    }

                    holders[ip] = service.Metadata.Name;
                    // Keyed by UID: a deleted and re-created Service may get another address.
                    if (_first.TryGetValue(service.Metadata.Uid, out var first) && first != ip)
                    {
                        Violations.Add($"{service.Metadata.Name} renumbered from {first} to {ip}");
                    }

                    _first.TryAdd(service.Metadata.Uid, ip);
                }
            }
        }
    }
}

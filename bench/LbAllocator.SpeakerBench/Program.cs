// Speaker benchmark, in the network-namespace lab of the end-to-end tests (three node namespaces, a
// client, one bridge): ARP reply latency and the highest loss-free ARP request rate, each against the
// kernel answering for an address configured on the same kind of interface in the same run; failover
// time over 20 trials, unplanned (SIGKILL) and planned (SIGTERM); the speaker's memory and CPU.
using System.Diagnostics;
using System.Globalization;
using LbAllocator.NetTests;

if (args is ["probe", ..])
{
    return Probe.Run(args);
}

const int Trials = 20;
// Any other arguments are speaker options for every speaker, e.g. --lease-duration 1.5 --renew-interval 0.5.
var lab = new Lab { SpeakerOptions = args };
await lab.InitializeAsync();
try
{
    await lab.CreateServiceAsync("bench", ip: "192.0.2.210");
    var owner = await lab.WaitForArpOwnerAsync("192.0.2.210");
    // The kernel's own answer for comparison: the owner node's address on the same interface.
    var kernelIp = $"192.0.2.{11 + Array.IndexOf(Lab.Nodes, owner)}";
    Console.WriteLine($"# Speaker benchmark ({Environment.ProcessorCount} cores, .NET {Environment.Version}); owner {owner}, kernel baseline {kernelIp} on the same eth0; speaker options: {(args.Length == 0 ? "defaults" : string.Join(' ', args))}");
    Console.WriteLine();

    Console.WriteLine("## ARP reply latency (from the client namespace, 1,000 requests one at a time, sent and captured with libpcap)");
    Console.WriteLine();
    Console.WriteLine("| answered by | p50 | p99 | replies |");
    Console.WriteLine("|---|---|---|---|");
    var ours = await LatencyAsync(lab, "192.0.2.210", 1000);
    var kernel = await LatencyAsync(lab, kernelIp, 1000);
    Console.WriteLine($"| speaker (SharpPcap) | {P(ours, 0.5):F3} ms | {P(ours, 0.99):F3} ms | {ours.Length} |");
    Console.WriteLine($"| kernel | {P(kernel, 0.5):F3} ms | {P(kernel, 0.99):F3} ms | {kernel.Length} |");
    Console.WriteLine($"| ratio speaker / kernel | {P(ours, 0.5) / P(kernel, 0.5):F2}x | {P(ours, 0.99) / P(kernel, 0.99):F2}x | |");
    Console.WriteLine();

    Console.WriteLine("## ARP requests answered at a given rate (paced by the client, 5 s per step)");
    Console.WriteLine();
    Console.WriteLine("| answered by | asked rate | achieved rate | sent | answered | speaker CPU during step |");
    Console.WriteLine("|---|---|---|---|---|---|");
    var pid = lab.Speaker(owner).Pid;
    foreach (var (name, ip) in new[] { ("speaker", "192.0.2.210"), ("kernel", kernelIp) })
    {
        foreach (var asked in new[] { 1_000, 5_000, 10_000, 20_000, 50_000 })
        {
            var cpuBefore = CpuSeconds(pid);
            var (rate, sent, received) = await FloodAsync(lab, ip, asked, TimeSpan.FromSeconds(5));
            var cpu = CpuSeconds(pid) - cpuBefore;
            Console.WriteLine($"| {name} | {asked:N0}/s | {rate:N0}/s | {sent:N0} | {received:N0} ({100.0 * received / Math.Max(1, sent):F1} %) | {cpu:F2} s |");
        }
    }

    Console.WriteLine();
    var idleBefore = CpuSeconds(pid);
    await Task.Delay(TimeSpan.FromSeconds(10));
    Console.WriteLine($"Speaker idle (one Service, lease renewals only): CPU {(CpuSeconds(pid) - idleBefore) / 10 * 100:F2} % of a core over 10 s; RSS {Rss(pid) / 1024} MiB; peak RSS {PeakRss(pid) / 1024} MiB after the floods.");
    Console.WriteLine();

    Console.WriteLine($"## Failover ({Trials} trials each; time from the signal to the first ARP reply from another node, asked every 20 ms)");
    Console.WriteLine();
    Console.WriteLine("| kind | min | p50 | max |");
    Console.WriteLine("|---|---|---|---|");
    foreach (var signal in new[] { "KILL", "TERM" })
    {
        var times = new List<double>();
        for (var i = 0; i < Trials; i++)
        {
            owner = await lab.WaitForArpOwnerAsync("192.0.2.210");
            times.Add(await FailoverAsync(lab, owner, signal));
            lab.StartSpeaker(owner);
            await lab.WaitForSpeakersAsync([owner]);
            await Task.Delay(TimeSpan.FromSeconds(4)); // let the restarted speaker settle everywhere
        }

        var sorted = times.Order().ToArray();
        Console.WriteLine($"| {(signal == "KILL" ? "unplanned (SIGKILL)" : "planned (SIGTERM)")} | {sorted[0]:F2} s | {P(sorted, 0.5):F2} s | {sorted[^1]:F2} s |");
    }
}
finally
{
    await lab.DisposeAsync();
}

return 0;

static double P(double[] sorted, double q) => sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];

static string[] ProbeCommand(Lab lab, params string[] args) =>
    ["netns", "exec", lab.ClientNs, "dotnet", typeof(Probe).Assembly.Location, "probe", .. args];

static async Task<double[]> LatencyAsync(Lab lab, string ip, int count)
{
    var output = await Shell.MustAsync("ip", ProbeCommand(lab, "latency", ip, count.ToString(CultureInfo.InvariantCulture)));
    return [.. output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => double.Parse(l, CultureInfo.InvariantCulture)).Order()];
}

static async Task<(double Rate, long Sent, long Received)> FloodAsync(Lab lab, string ip, double rate, TimeSpan duration)
{
    var output = await Shell.MustAsync("ip", ProbeCommand(lab, "flood", ip, rate.ToString(CultureInfo.InvariantCulture), duration.TotalSeconds.ToString(CultureInfo.InvariantCulture)));
    var parts = output.Trim().Split(' ');
    return (double.Parse(parts[2], CultureInfo.InvariantCulture), long.Parse(parts[0], CultureInfo.InvariantCulture), long.Parse(parts[1], CultureInfo.InvariantCulture));
}

static async Task<double> FailoverAsync(Lab lab, string owner, string signal)
{
    var ownerMac = lab.Macs[owner];
    var start = new TaskCompletionSource<long>();
    var moved = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
    var info = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
    foreach (var arg in ProbeCommand(lab, "follow", "192.0.2.210"))
    {
        info.ArgumentList.Add(arg);
    }

    using var arping = Process.Start(info)!;
    arping.OutputDataReceived += (_, e) =>
    {
        if (e.Data is { Length: 17 } mac && !mac.Equals(ownerMac, StringComparison.OrdinalIgnoreCase) && start.Task.IsCompleted)
        {
            moved.TrySetResult(Stopwatch.GetTimestamp());
        }
    };
    arping.BeginOutputReadLine();
    await Task.Delay(300);
    var signalled = Stopwatch.GetTimestamp();
    start.SetResult(signalled);
    await lab.Speaker(owner).SignalAsync(signal);
    var at = await moved.Task.WaitAsync(TimeSpan.FromSeconds(30));
    arping.Kill(entireProcessTree: true);
    return Stopwatch.GetElapsedTime(signalled, at).TotalSeconds;
}

static double CpuSeconds(int pid)
{
    // /proc/PID/stat: utime and stime are fields 14 and 15, in clock ticks (100 per second).
    var fields = File.ReadAllText($"/proc/{pid}/stat").Split(')')[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
    return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
}

static long Rss(int pid) => StatusKb(pid, "VmRSS:");

static long PeakRss(int pid) => StatusKb(pid, "VmHWM:");

static long StatusKb(int pid, string field) =>
    long.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith(field, StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);

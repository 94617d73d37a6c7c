// Speaker benchmark, in the network-namespace lab of the end-to-end tests (three node namespaces, a
// client, one bridge): ARP reply latency and the highest loss-free ARP request rate, each against the
// kernel answering for an address configured on the same kind of interface in the same run; failover
// over 20 trials of each fault (SIGKILL, SIGTERM, LAN link down, LAN interface deleted).
using System.Globalization;
using k8s;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.NetTests;
using LbAllocator.Speaker;

if (args is ["probe", ..])
{
    return Probe.Run(args);
}

if (args is ["pcap-idle", ..])
{
    return Footprint.PcapIdle(beat: args is [_, "beat"]);
}

if (args is ["lan-sim", ..])
{
    return SimHost.Run(args);
}

if (args is ["lan-scale", ..])
{
    return await LanScale.RunAsync(args);
}

if (args is ["footprint", ..])
{
    return await Footprint.RunAsync(args);
}

const int Trials = 20;
const string Vip = "192.0.2.210";
// "answering" runs the answering sections only (ARP latency and rate, a few minutes instead of the failover trials');
// "heartbeats" the heartbeats of simulated nodes only.
var answeringOnly = args is ["answering", ..];
var heartbeatsOnly = args is ["heartbeats", ..];
// Any other arguments are speaker options for every speaker, e.g. --lease-duration 1.5 --renew-interval 0.5.
string[] speakerOptions = answeringOnly || heartbeatsOnly ? args[1..] : args;
var lab = new Lab { SpeakerOptions = speakerOptions };
await lab.InitializeAsync();
try
{
    await lab.CreateServiceAsync("bench", ip: Vip);
    var owner = await lab.WaitForArpOwnerAsync(Vip);
    // The kernel's own answer for comparison: the owner node's address on the same interface.
    var kernelIp = $"192.0.2.{11 + Array.IndexOf(Lab.Nodes, owner)}";
    Console.WriteLine($"# Speaker benchmark ({Environment.ProcessorCount} cores, .NET {Environment.Version}); owner {owner}, kernel baseline {kernelIp} on the same eth0; speaker options: {(speakerOptions.Length == 0 ? "defaults" : string.Join(' ', speakerOptions))}; {Load()}");
    Console.WriteLine();
    Console.WriteLine("## ARP reply latency (from the client namespace, 1,000 requests one at a time, sent and captured with libpcap)");
    Console.WriteLine();
    Console.WriteLine("| answered by | p50 | p99 | replies |");
    Console.WriteLine("|---|---|---|---|");
    var ours = await LatencyAsync(lab, Vip, 1000);
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
    foreach (var (name, ip) in new[] { ("speaker", Vip), ("kernel", kernelIp) })
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
    if (answeringOnly)
    {
        return 0;
    }

    Console.WriteLine($"## Failover ({Trials} trials of each fault; {Load()})");
    Console.WriteLine();
    Console.WriteLine($"Failover: from the fault to the first ARP request (asked every 20 ms by ArpWatch) answered by another node; p99 of {Trials} is their maximum. "
        + $"Each fault is held {Timing.Hold.TotalSeconds:F0} s (or until the takeover), then repaired; the next trial waits for the node to answer for {Vip} again "
        + "(back: from the repair, including a restarted speaker's start). Two nodes answering and the silence in all over the whole trials; the longest silence at the fault and at the node's return apart.");
    Console.WriteLine();
    Console.WriteLine(Failover.Header);
    var details = new List<string>();
    foreach (var fault in Fault.All)
    {
        var trials = await Failover.TrialsAsync(lab, Vip, fault, Trials);
        Console.WriteLine(Failover.Row(fault.Name, trials));
        details.AddRange(Failover.Details(fault.Name, trials));
    }

    Console.WriteLine();
    details.ForEach(Console.WriteLine);
    Console.WriteLine();
}
finally
{
    await lab.DisposeAsync();
}

return 0;

static double P(double[] sorted, double q) => Failover.P(sorted, q);

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

static string Load() => Proc.Load();

static double CpuSeconds(int pid) => Proc.CpuSeconds(pid);

static long Rss(int pid) => Proc.StatusKb(pid, "VmRSS:");

static long PeakRss(int pid) => Proc.StatusKb(pid, "VmHWM:");

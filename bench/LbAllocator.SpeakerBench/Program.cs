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
    Console.WriteLine("| fault | taken over | min | p50 | p99 | max | two nodes answering, in all | silent in all | longest silence: at the fault / at the return | back p50 / max | came back on its own |");
    Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|");
    var details = new List<string>();
    foreach (var fault in Fault.All)
    {
        var trials = new List<Trial>();
        for (var i = 0; i < Trials; i++)
        {
            trials.Add(await TrialAsync(lab, Vip, fault));
        }

        var times = trials.Select(t => t.Failover).OfType<double>().Order().ToArray();
        var backs = trials.Select(t => t.Back).OfType<double>().Order().ToArray();
        var failovers = times.Length == 0 ? "| - | - | - | -" : $"| {times[0]:F2} s | {P(times, 0.5):F2} s | {P(times, 0.99):F2} s | {times[^1]:F2} s";
        Console.WriteLine($"| {fault.Name} | {times.Length} of {trials.Count} {failovers} | {trials.Sum(t => t.Doubled) * 1000:F0} ms | {trials.Sum(t => t.Silent):F2} s | {trials.Max(t => t.SilenceAtFault):F2} / {trials.Max(t => t.SilenceAtReturn):F2} s "
            + $"| {(backs.Length == 0 ? "-" : $"{P(backs, 0.5):F2} / {backs[^1]:F2} s")} | {backs.Length} of {trials.Count} |");
        details.Add($"{fault.Name}: failovers {string.Join(' ', trials.Select(t => t.Failover?.ToString("F2", CultureInfo.InvariantCulture) ?? "none"))}; "
            + $"longest silences at the return {string.Join(' ', trials.Select(t => t.SilenceAtReturn.ToString("F2", CultureInfo.InvariantCulture)))}; questions asked {trials.Sum(t => t.Asked):N0}");
        details.AddRange(trials.SelectMany(t => t.Doubles).Select(d => $"  two answers: {d}"));
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

/// <summary>
/// One failover trial on whoever answers for the address now: the fault, the first answer from another node,
/// the repair once the fault has lasted <see cref="Timing.Hold"/>, then the node answering again (restarting its
/// speaker if it does not within 30 s, so the next trial faults the same node).
/// </summary>
static async Task<Trial> TrialAsync(Lab lab, string ip, Fault fault)
{
    var owner = await lab.WaitForArpOwnerAsync(ip);
    var mac = lab.Macs[owner];
    using var watch = await ArpWatch.StartAsync(lab, ip);
    await Task.Delay(500);
    var at = DateTimeOffset.UtcNow;
    await fault.Inflict(lab, owner);
    double? failover = null;
    try
    {
        failover = await watch.TakeoverAsync(mac, at, TimeSpan.FromSeconds(10));
    }
    catch (Xunit.Sdk.XunitException)
    {
        // Nobody took over: reported as such.
    }

    var held = DateTimeOffset.UtcNow - at;
    if (held < Timing.Hold)
    {
        await Task.Delay(Timing.Hold - held);
    }

    var repaired = DateTimeOffset.UtcNow;
    await fault.Repair(lab, owner);
    double? back = await AnswersAgainAsync(lab, ip, owner, TimeSpan.FromSeconds(30)) ? (DateTimeOffset.UtcNow - repaired).TotalSeconds : null;
    if (back is null)
    {
        lab.StartSpeaker(owner);
        await lab.WaitForSpeakersAsync([owner]);
        if (!await AnswersAgainAsync(lab, ip, owner, TimeSpan.FromSeconds(30)))
        {
            throw new InvalidOperationException($"{owner} does not answer for {ip} again after {fault.Name}, even with its speaker restarted");
        }
    }

    await Task.Delay(500);
    var (doubled, silent, asked) = watch.Tally();
    return new Trial(failover, doubled, silent, watch.LongestSilence(until: repaired), watch.LongestSilence(from: repaired), back, asked, [.. watch.Doubles()]);
}

static async Task<bool> AnswersAgainAsync(Lab lab, string ip, string node, TimeSpan timeout)
{
    var deadline = DateTimeOffset.UtcNow + timeout;
    while (DateTimeOffset.UtcNow < deadline)
    {
        if (await lab.ArpingAsync(ip) == lab.Macs[node])
        {
            return true;
        }

        await Task.Delay(50);
    }

    return false;
}

static string Load() => Proc.Load();

static double CpuSeconds(int pid) => Proc.CpuSeconds(pid);

static long Rss(int pid) => Proc.StatusKb(pid, "VmRSS:");

static long PeakRss(int pid) => Proc.StatusKb(pid, "VmHWM:");

/// <summary>A fault done to the node answering for an address, and its repair.</summary>
internal sealed record Fault(string Name, Func<Lab, string, Task> Inflict, Func<Lab, string, Task> Repair)
{
    public static readonly Fault[] All =
    [
        new("owner SIGKILLed", (lab, node) => lab.Speaker(node).SignalAsync("KILL"), RestartAsync),
        new("owner SIGTERMed", (lab, node) => lab.Speaker(node).SignalAsync("TERM"), async (lab, node) =>
        {
            // It deletes its lease on the way out: let it, or the restarted speaker's lease would be deleted under it.
            await lab.Speaker(node).WaitForExitAsync(TimeSpan.FromSeconds(10));
            await RestartAsync(lab, node);
        }),
        new("owner's LAN link down", (lab, node) => lab.SetLanLinkAsync(node, up: false), (lab, node) => lab.SetLanLinkAsync(node, up: true)),
        new("owner's LAN interface deleted", (lab, node) => lab.DeleteLanLinkAsync(node), (lab, node) => lab.AddLanLinkAsync(node)),
    ];

    private static async Task RestartAsync(Lab lab, string node)
    {
        lab.StartSpeaker(node);
        await lab.WaitForSpeakersAsync([node]);
    }
}

/// <param name="Failover">Seconds from the fault to another node's first answer; null if nobody took over within 10 s.</param>
/// <param name="Back">Seconds from the repair (a restart included) to the node answering again; null if it did not within 30 s (its speaker was restarted).</param>
/// <param name="SilenceAtFault">The longest silence that began before the repair: the failover's.</param>
/// <param name="SilenceAtReturn">The longest silence that began after it: the node taking its address back.</param>
internal sealed record Trial(double? Failover, double Doubled, double Silent, double SilenceAtFault, double SilenceAtReturn, double? Back, int Asked, string[] Doubles);

internal static class Timing
{
    /// <summary>How long a fault lasts at least: an outage a node notices (netlink, a rescan), not a blip.</summary>
    public static readonly TimeSpan Hold = TimeSpan.FromSeconds(2);
}

using System.Globalization;
using LbAllocator.NetTests;

/// <summary>
/// Failover trials in the lab, shared by the benchmark's modes: a fault done to whoever answers for an address, the
/// first answer from another node (<see cref="ArpWatch"/>, a question every 20 ms), the repair, the node answering again.
/// </summary>
internal static class Failover
{
    /// <summary>The table <see cref="Row"/> fills.</summary>
    public const string Header = "| fault | taken over | min | p50 | p99 | max | two nodes answering, in all | silent in all | longest silence: at the fault / at the return | back p50 / max | came back on its own |\n"
        + "|---|---|---|---|---|---|---|---|---|---|---|";

    public static async Task<List<Trial>> TrialsAsync(Lab lab, string ip, Fault fault, int count)
    {
        var trials = new List<Trial>();
        for (var i = 0; i < count; i++)
        {
            trials.Add(await TrialAsync(lab, ip, fault));
        }

        return trials;
    }

    /// <summary>The failover times taken, in order.</summary>
    public static double[] Times(List<Trial> trials) => [.. trials.Select(t => t.Failover).OfType<double>().Order()];

    public static string Row(string fault, List<Trial> trials)
    {
        var times = Times(trials);
        var backs = trials.Select(t => t.Back).OfType<double>().Order().ToArray();
        var failovers = times.Length == 0 ? "| - | - | - | -" : $"| {times[0]:F2} s | {P(times, 0.5):F2} s | {P(times, 0.99):F2} s | {times[^1]:F2} s";
        return $"| {fault} | {times.Length} of {trials.Count} {failovers} | {trials.Sum(t => t.Doubled) * 1000:F0} ms | {trials.Sum(t => t.Silent):F2} s | {trials.Max(t => t.SilenceAtFault):F2} / {trials.Max(t => t.SilenceAtReturn):F2} s "
            + $"| {(backs.Length == 0 ? "-" : $"{P(backs, 0.5):F2} / {backs[^1]:F2} s")} | {backs.Length} of {trials.Count} |";
    }

    /// <summary>Each trial's failover and return, and every question two nodes answered.</summary>
    public static IEnumerable<string> Details(string fault, List<Trial> trials) =>
        trials.SelectMany(t => t.Doubles).Select(d => $"  two answers: {d}").Prepend(
            $"{fault}: failovers {string.Join(' ', trials.Select(t => t.Failover?.ToString("F2", CultureInfo.InvariantCulture) ?? "none"))}; "
            + $"longest silences at the return {string.Join(' ', trials.Select(t => t.SilenceAtReturn.ToString("F2", CultureInfo.InvariantCulture)))}; questions asked {trials.Sum(t => t.Asked):N0}");

    /// <summary>The q-quantile of sorted values (p99 of 20 is their maximum).</summary>
    public static double P(double[] sorted, double q) => sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];

    /// <summary>
    /// One failover trial on whoever answers for the address now: the fault, the first answer from another node,
    /// the repair once the fault has lasted <see cref="Timing.Hold"/>, then the node answering again (restarting its
    /// speaker if it does not within 30 s, so the next trial faults the same node).
    /// </summary>
    public static async Task<Trial> TrialAsync(Lab lab, string ip, Fault fault)
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

    private static async Task<bool> AnswersAgainAsync(Lab lab, string ip, string node, TimeSpan timeout)
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
}

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

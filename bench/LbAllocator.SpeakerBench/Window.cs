using System.Globalization;
using LbAllocator.NetTests;
using LbAllocator.Speaker.Lan;

/// <summary>
/// One window of steady state in the lab, for <see cref="LanScale"/>: what the switch delivered to each node (its
/// port, outbound), every speaker frame it forwarded (the bridge itself), each real speaker's CPU and RSS, and the
/// simulated speakers' own tallies when they run.
/// </summary>
internal sealed record Window(double Seconds, Dictionary<string, Window.Node> Nodes, Window.Segment Wire, Window.Simulation? Sims)
{
    /// <param name="Received">Speaker frames a second delivered to the node, by kind.</param>
    public sealed record Node(Segment Received, double CpuPercent, double RssMiB);

    /// <param name="All">Speaker frames a second.</param>
    /// <param name="Broadcast">Of them, broadcast.</param>
    /// <param name="ByKind">Frames a second of each kind.</param>
    /// <param name="FromSims">Of them, sent by a simulated speaker.</param>
    public sealed record Segment(double All, double Broadcast, Dictionary<LanKind, double> ByKind, double FromSims)
    {
        public string Kinds() => string.Join(", ", ByKind.Where(k => k.Value > 0).OrderByDescending(k => k.Value).Select(k => string.Create(CultureInfo.InvariantCulture, $"{k.Key} {k.Value:F1}")));
    }

    /// <param name="MemoryUnicast">Simulated speakers' messages to each other a second, handed over in memory (a switch delivers each to its destination only).</param>
    /// <param name="WireSent">Messages a second the simulation put on the wire.</param>
    /// <param name="WireReceived">Messages a second it read off the wire for its speakers.</param>
    /// <param name="SlotsLate">Tick slots (5 ms) that began more than a slot late during the window.</param>
    /// <param name="MaxLagMs">The longest a tick slot began late.</param>
    /// <param name="Rejoins">Simulated speakers that left and asked to join again (a sign the simulation falls behind).</param>
    public sealed record Simulation(double CpuPercent, double RssMiB, double MemoryUnicast, double WireSent, double WireReceived, long SlotsLate, long Rejected, long Dropped, double MaxLagMs, long MaxBacklog, long Rejoins)
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"CPU {CpuPercent:F1} % of a core, RSS {RssMiB:F0} MiB; put on the wire {WireSent:F1}/s, read off it {WireReceived:F1}/s; tick slots late {SlotsLate}, the latest by {MaxLagMs:F0} ms; "
            + $"at most {MaxBacklog} messages waiting; rejoins {Rejoins}; frames rejected {Rejected}, dropped by the capture {Dropped}");
    }

    public static async Task<Window> MeasureAsync(Lab lab, TimeSpan window, SimProcess? sims)
    {
        var files = Lab.Nodes.Append("br0").ToDictionary(p => p, p => Path.Combine(Path.GetTempPath(), $"lbscale{Environment.ProcessId}-{p}.pcap"));
        var captures = new Dictionary<string, Shell.Background>();
        foreach (var node in Lab.Nodes)
        {
            captures[node] = await lab.CaptureSwitchAsync(Lab.NodePort(node), files[node], direction: "out");
        }

        captures["br0"] = await lab.CaptureSwitchAsync("br0", files["br0"]);
        var pids = Lab.Nodes.ToDictionary(n => n, n => lab.Speaker(n).Pid);
        var cpu = pids.ToDictionary(p => p.Key, p => Proc.CpuSeconds(p.Value));
        var simCpu = sims is null ? 0 : Proc.CpuSeconds(sims.Pid);
        var simBefore = sims?.Latest();
        var started = DateTime.UtcNow;
        await Task.Delay(window);
        var seconds = (DateTime.UtcNow - started).TotalSeconds;
        var nodes = new Dictionary<string, Node>();
        foreach (var node in Lab.Nodes)
        {
            var used = Proc.CpuSeconds(pids[node]) - cpu[node];
            nodes[node] = new Node(null!, used / seconds * 100, Proc.StatusKb(pids[node], "VmRSS:") / 1024.0);
        }

        Simulation? simulation = null;
        if (sims is not null)
        {
            var used = Proc.CpuSeconds(sims.Pid) - simCpu;
            var (a, b) = (simBefore!.Value, sims.Latest());
            var span = b.At - a.At;
            var during = sims.Statuses().Where(s => s.At > a.At && s.At <= b.At).ToList();
            simulation = new Simulation(used / seconds * 100, Proc.StatusKb(sims.Pid, "VmRSS:") / 1024.0, (b.MemoryUnicast - a.MemoryUnicast) / span,
                (b.WireSent - a.WireSent) / span, (b.WireReceived - a.WireReceived) / span, b.SlotsLate - a.SlotsLate, b.Rejected - a.Rejected, b.Dropped - a.Dropped,
                during.Max(s => s.MaxLagMs), during.Max(s => s.MaxBacklog), b.Rejoins - a.Rejoins);
        }

        var capturedFor = (DateTime.UtcNow - started).TotalSeconds;
        foreach (var node in Lab.Nodes)
        {
            nodes[node] = nodes[node] with { Received = await StopAsync(captures[node], files[node], TimeSpan.FromSeconds(capturedFor)) };
        }

        return new Window(seconds, nodes, await StopAsync(captures["br0"], files["br0"], TimeSpan.FromSeconds(capturedFor)), simulation);
    }

    /// <summary>Stops a capture (SIGINT: tcpdump writes what it holds) and counts its frames a second, by kind.</summary>
    public static async Task<Segment> StopAsync(Shell.Background capture, string file, TimeSpan span)
    {
        await capture.SignalAsync("INT");
        await capture.WaitForExitAsync(TimeSpan.FromSeconds(10));
        capture.Dispose();
        var frames = Pcap.Read(file);
        File.Delete(file);
        var seconds = span.TotalSeconds;
        var byKind = frames.Where(f => f.Length > 19).GroupBy(f => (LanKind)f[19]).ToDictionary(g => g.Key, g => g.Count() / seconds);
        var broadcast = frames.Count(f => f.AsSpan(0, 6).SequenceEqual(Broadcast)) / seconds;
        var fromSims = frames.Count(f => MacOf(f.AsSpan(6, 6)) >> 16 == SimHost.FirstMac >> 16) / seconds;
        return new Segment(frames.Count / seconds, broadcast, byKind, fromSims);
    }

    /// <summary>Prints the tables: per real speaker, then the segment, baseline against the simulated speakers present.</summary>
    public static void Print(Window baseline, Window loaded, Segment joining, int members)
    {
        Console.WriteLine($"## Per real speaker ({baseline.Seconds:F0} s windows; baseline: the 3 real speakers alone; then with {members} simulated speakers on the segment)");
        Console.WriteLine();
        Console.WriteLine("| node | speaker frames received/s: baseline / with sims | of them beats | of them broadcast | CPU % of a core: baseline / with sims (ratio) | RSS MiB: baseline / with sims |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (var node in Lab.Nodes)
        {
            var (b, l) = (baseline.Nodes[node], loaded.Nodes[node]);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {node} | {b.Received.All:F1} / {l.Received.All:F1} | {Beats(b.Received):F1} / {Beats(l.Received):F1} | {b.Received.Broadcast:F2} / {l.Received.Broadcast:F2} | {b.CpuPercent:F2} / {l.CpuPercent:F2} ({l.CpuPercent / b.CpuPercent:F2}x) | {b.RssMiB:F1} / {l.RssMiB:F1} |"));
        }

        Console.WriteLine();
        Console.WriteLine("what each received with the simulated speakers, by kind: " + string.Join("; ", Lab.Nodes.Select(n => $"{n} {loaded.Nodes[n].Received.Kinds()}")));
        Console.WriteLine();
        Console.WriteLine("## The segment");
        Console.WriteLine();
        var sims = loaded.Sims!;
        Console.WriteLine("| | baseline (3 speakers) | with the simulated speakers | ratio |");
        Console.WriteLine("|---|---|---|---|");
        Row("speaker frames on the wire/s (the bridge)", baseline.Wire.All, loaded.Wire.All);
        Row("of them broadcast/s", baseline.Wire.Broadcast, loaded.Wire.Broadcast);
        Row("of them sent by simulated speakers/s", baseline.Wire.FromSims, loaded.Wire.FromSims);
        Row("simulated speakers' unicast to each other/s (in memory)", 0, sims.MemoryUnicast);
        Row("all the segment would carry/s (wire + in memory)", baseline.Wire.All, loaded.Wire.All + sims.MemoryUnicast);
        Row("of which per speaker sent/s", baseline.Wire.All / Lab.Nodes.Length, (loaded.Wire.All + sims.MemoryUnicast) / (members + Lab.Nodes.Length));
        Console.WriteLine();
        Console.WriteLine($"on the wire by kind: baseline {baseline.Wire.Kinds()}; with the simulated speakers {loaded.Wire.Kinds()}");
        Console.WriteLine($"while they joined: {joining.All:F0} frames/s, {joining.Broadcast:F0} broadcast ({joining.Kinds()})");
        Console.WriteLine($"simulation process (all {members} memberships, one thread ticking them, and its pcap reader) during the window: {sims}");
    }

    private static double Beats(Segment segment) => segment.ByKind.GetValueOrDefault(LanKind.Beat);

    private static void Row(string what, double baseline, double loaded) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {what} | {baseline:F1} | {loaded:F1} | {(baseline > 0 ? $"{loaded / baseline:F1}x" : "-")} |"));

    private static ReadOnlySpan<byte> Broadcast => [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

    private static ulong MacOf(ReadOnlySpan<byte> bytes)
    {
        var mac = 0UL;
        foreach (var b in bytes)
        {
            mac = (mac << 8) | b;
        }

        return mac;
    }
}

using System.Diagnostics;
using LbAllocator.Core;

/// <summary>
/// The speaker's election at 5,000 Services x 1,000 nodes: the full recompute (Election.Decide, the whole-input
/// rule every pass used to run, as the baseline; ElectionTable.Build, what a configuration change runs now) and
/// the incremental changes (one Service, one node joining, one node leaving). Time and bytes allocated on this
/// thread per operation. Addresses are only numbers here: 198.18.0.0/15 is the RFC 2544 benchmarking range.
/// <see cref="ComparePreferences"/> runs the same operations without and with preferredNodeSelectors, in one run.
/// </summary>
internal static class ElectionBench
{
    private const int Services = 5_000;
    private const int Nodes = 1_000;

    private sealed record Result(string Operation, double Median, long Bytes);

    public static void Run(int seed)
    {
        Console.WriteLine($"# Election benchmark: {Services:N0} Services x {Nodes:N0} nodes ({Environment.ProcessorCount} cores, .NET {Environment.Version}, seed {seed})");
        Console.WriteLine();
        Console.WriteLine("| operation | runs | median ms | p99 ms | max ms | mean bytes allocated |");
        Console.WriteLine("|---|---|---|---|---|---|");
        Measure(Config(preferences: false), seed, baseline: true);
    }

    /// <summary>The operations without preferences (the baseline) and then with two preference tiers, as ratios.</summary>
    public static void ComparePreferences(int seed)
    {
        Console.WriteLine($"# Election with preferredNodeSelectors: {Services:N0} Services x {Nodes:N0} nodes ({Environment.ProcessorCount} cores, .NET {Environment.Version}, seed {seed})");
        Console.WriteLine();
        Console.WriteLine("| operation | runs | median ms | p99 ms | max ms | mean bytes allocated |");
        Console.WriteLine("|---|---|---|---|---|---|");
        // Both once untimed first: tiered compilation would otherwise charge whichever runs first.
        var console = Console.Out;
        Console.SetOut(TextWriter.Null);
        Measure(Config(preferences: false), seed, baseline: false);
        Measure(Config(preferences: true), seed, baseline: false);
        Console.SetOut(console);
        Console.WriteLine("| **without preferences** | | | | | |");
        var without = Measure(Config(preferences: false), seed, baseline: false);
        Console.WriteLine("| **with two preference tiers** | | | | | |");
        var with = Measure(Config(preferences: true), seed, baseline: false);
        Console.WriteLine();
        Console.WriteLine("| operation | median with / without | bytes with / without |");
        Console.WriteLine("|---|---|---|");
        foreach (var (a, b) in without.Zip(with))
        {
            Console.WriteLine($"| {a.Operation} | {b.Median / a.Median:F2} | {(double)b.Bytes / Math.Max(1, a.Bytes):F2} |");
        }
    }

    /// <summary>One pool; an advertisement for every node and one for zone a with an interface; with preferences, the first prefers zone a, then zone b.</summary>
    private static ValidatedConfig Config(bool preferences)
    {
        var config = ConfigValidator.Validate(
            [new PoolSpec("bench", ["198.18.0.0/15"])],
            [
                new L2AdvertisementSpec("all", PreferredNodeSelectors: preferences ? [Zone("a"), Zone("b")] : null),
                new L2AdvertisementSpec("zone-a", IpAddressPools: ["bench"], NodeSelectors: [Zone("a")], Interfaces: ["eth1"]),
            ]);
        Check(config.Problems.Count == 0, string.Join("; ", config.Problems));
        return config;

        static LabelSelectorSpec Zone(string zone) => new(new Dictionary<string, string> { ["zone"] = zone });
    }

    private static List<Result> Measure(ValidatedConfig config, int seed, bool baseline)
    {
        var random = new Random(seed);
        var results = new List<Result>();
        var nodes = Enumerable.Range(0, Nodes).Select(i => Node(i, alive: true)).ToList();
        var services = Enumerable.Range(0, Services).Select(i => Service(i, i)).ToList();

        // Warm up the JIT on a small instance, and check the two agree on the full one.
        ElectionTable.Build(config.Pools, config.Advertisements, nodes[..50], services[..200]);
        Election.Decide(services[..200], nodes[..50], config.Pools, config.Advertisements);
        var table = ElectionTable.Build(config.Pools, config.Advertisements, nodes, services);
        var decided = Election.Decide(services, nodes, config.Pools, config.Advertisements);
        Check(decided.All(d => table.Get(d.ServiceKey) is { } t && t.Node == d.Node && t.Interfaces.SequenceEqual(d.Interfaces)), "ElectionTable and Decide disagree");

        Row("full: ElectionTable.Build", 5, _ => ElectionTable.Build(config.Pools, config.Advertisements, nodes, services));

        // One Service changes: its address moves to one no other Service has.
        var current = services.ToDictionary(s => s.Key);
        var next = Services;
        Row("one Service changes (new address)", 2_000, _ =>
        {
            var service = Service(random.Next(Services), next++);
            current[service.Key] = service;
            table.SetService(service);
        });

        var added = new List<string>();
        Row("one Service added", 1_000, _ =>
        {
            var service = Service(next, next++);
            current[service.Key] = service;
            added.Add(service.Key);
            table.SetService(service);
        });
        Row("one Service removed", added.Count, run =>
        {
            current.Remove(added[run]);
            table.RemoveService(added[run]);
        });

        // Nodes leave and come back: a speaker's lease expiring or returning (the same as a node deleted or added).
        var leaving = Enumerable.Range(0, 500).Select(_ => random.Next(Nodes)).Distinct().Take(300).ToList();
        Row("one node leaves (speaker dead)", leaving.Count, run => table.SetNode(Node(leaving[run], alive: false)));
        Row("one node joins (speaker alive)", leaving.Count, run => table.SetNode(Node(leaving[run], alive: true)));

        var final = Election.Decide([.. current.Values], nodes, config.Pools, config.Advertisements);
        Check(final.Count == table.Count && final.All(d => table.Get(d.ServiceKey)?.Node == d.Node), "ElectionTable and Decide disagree after the changes");

        // Last: its garbage would otherwise slow what is measured after it.
        if (baseline)
        {
            Row("full: Election.Decide (the old per-pass recompute, baseline)", 3, _ => Election.Decide(services, nodes, config.Pools, config.Advertisements));
        }

        return results;

        void Row(string label, int runs, Action<int> operation) => results.Add(Time(label, runs, operation));
    }

    private static ElectionNode Node(int i, bool alive) => new(
        $"node-{i:D4}", new Dictionary<string, string> { ["kubernetes.io/hostname"] = $"node-{i:D4}", ["zone"] = (i % 3) switch { 0 => "a", 1 => "b", _ => "c" } }, alive);

    private static AnnouncedService Service(int i, int address) =>
        new($"default/svc-{i}", [new Ip(IpFamily.IPv4, 0xC6120000u + (uint)address)], "bench", new Dictionary<string, string> { ["app"] = $"app-{i % 50}" });

    private static Result Time(string label, int runs, Action<int> operation)
    {
        var times = new double[runs];
        long bytes = 0;
        for (var run = 0; run < runs; run++)
        {
            var allocated = GC.GetAllocatedBytesForCurrentThread();
            var start = Stopwatch.GetTimestamp();
            operation(run);
            times[run] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            bytes += GC.GetAllocatedBytesForCurrentThread() - allocated;
        }

        Array.Sort(times);
        Console.WriteLine($"| {label} | {runs:N0} | {times[runs / 2]:F3} | {times[Math.Min(runs - 1, (int)(runs * 0.99))]:F3} | {times[^1]:F3} | {bytes / runs:N0} |");
        return new Result(label, times[runs / 2], bytes / runs);
    }

    private static void Check(bool condition, string message)
    {
        if (!condition)
        {
            throw new InvalidOperationException(message);
        }
    }
}

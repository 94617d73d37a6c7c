using System.Diagnostics;
using LbAllocator.Core;

// Plain harness (no BenchmarkDotNet): the quantity of interest is how the cost of one allocation
// changes as the pool fills, which needs per-call timings at chosen fill levels, not one mean.
// Addresses are only numbers here: 198.18.0.0/16 is the RFC 2544 benchmarking range.
if (args.Length > 0 && args[0] == "election")
{
    ElectionBench.Run(args.Length > 1 ? int.Parse(args[1]) : 1);
    return 0;
}

if (args.Length > 0 && args[0] == "election-preferences")
{
    ElectionBench.ComparePreferences(args.Length > 1 ? int.Parse(args[1]) : 1);
    return 0;
}

const int PoolSize = 65_536;
var seed = args.Length > 0 ? int.Parse(args[0]) : 1;
var random = new Random(seed);

Console.WriteLine($"# LbAllocator allocation benchmark ({Environment.ProcessorCount} cores, .NET {Environment.Version}, seed {seed})");
Console.WriteLine();

var v4 = Pools("v4", "198.18.0.0/16");
Warmup();

// 1. Fill the /16 one Service at a time, timing each allocation.
var allocator = new Allocator(pools: v4);
var services = Enumerable.Range(0, PoolSize).Select(i => Service($"svc-{i}")).ToArray();
var fillTimes = new double[PoolSize];
var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
var gen0Before = GC.CollectionCount(0);
var gen2Before = GC.CollectionCount(2);
var fillClock = Stopwatch.StartNew();
for (var i = 0; i < PoolSize; i++)
{
    var start = Stopwatch.GetTimestamp();
    var result = allocator.Reconcile(services[i]);
    fillTimes[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
    Check(result.Ips.Count == 1, $"allocation {i} failed: {result.Problem}");
}

fillClock.Stop();
var bytesPerAllocation = (GC.GetAllocatedBytesForCurrentThread() - allocatedBefore) / PoolSize;
Console.WriteLine("## Filling an IPv4 /16 (65,536 addresses), one Service at a time");
Console.WriteLine();
Console.WriteLine($"Whole fill: {fillClock.Elapsed.TotalMilliseconds:F0} ms, {fillClock.Elapsed.TotalMicroseconds / PoolSize:F2} µs per allocation including GC; "
    + $"{bytesPerAllocation:N0} bytes allocated per allocation; {GC.CollectionCount(0) - gen0Before} gen0 and {GC.CollectionCount(2) - gen2Before} gen2 collections.");
Console.WriteLine();
Console.WriteLine("| fill level | allocations timed | mean µs | p50 µs | p99 µs |");
Console.WriteLine("|---|---|---|---|---|");
foreach (var level in new[] { 0.01, 0.50, 0.99 })
{
    var at = (int)(level * PoolSize);
    Row($"{level:P0}", fillTimes[Math.Max(0, at - 328)..Math.Min(PoolSize, at + 327)]);
}

// Baseline in the same run: the obvious allocator, scanning from the start of the pool for the first
// address not in a set of taken ones. Same fill levels, same number of allocations timed.
Console.WriteLine();
Console.WriteLine("Baseline, a first-free scan from the start of the pool over a HashSet of taken addresses:");
Console.WriteLine();
Console.WriteLine("| fill level | allocations timed | mean µs | p50 µs | p99 µs | LbAllocator p50 / baseline p50 |");
Console.WriteLine("|---|---|---|---|---|---|");
foreach (var level in new[] { 0.01, 0.50, 0.99 })
{
    var at = (int)(level * PoolSize);
    var taken = new HashSet<uint>(Enumerable.Range(0, Math.Max(0, at - 328)).Select(i => (uint)i));
    var times = new double[655];
    for (var i = 0; i < times.Length; i++)
    {
        var start = Stopwatch.GetTimestamp();
        uint candidate = 0;
        while (taken.Contains(candidate))
        {
            candidate++;
        }

        taken.Add(candidate);
        times[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
    }

    var ours = Percentile(fillTimes[Math.Max(0, at - 328)..Math.Min(PoolSize, at + 327)], 0.50);
    Row($"{level:P0}", times, $" {ours / Percentile(times, 0.50):F3} |");
}

Check(allocator.Reconcile(Service("one-too-many")).Problem is { } full && full.Contains("65536 of 65536", StringComparison.Ordinal), "a full pool must refuse");
allocator.Release("default", "one-too-many");

// 2. Churn: release random Services and allocate new ones at a steady fill level; the free addresses
// are scattered through the pool, the hardest case for a "next free" search.
Console.WriteLine();
Console.WriteLine("## Churn: release a random Service, allocate a new one (free addresses scattered)");
Console.WriteLine();
Console.WriteLine("| fill level | operations | mean µs | p50 µs | p99 µs | free runs |");
Console.WriteLine("|---|---|---|---|---|---|");
foreach (var level in new[] { 0.01, 0.50, 0.99 })
{
    var churn = new Allocator(pools: v4);
    var live = new List<ServiceInfo>();
    var target = (int)(level * PoolSize);
    var next = 0;
    // Fill completely, then release a random selection down to the target, so the holes are scattered.
    for (; next < PoolSize; next++)
    {
        var service = Service($"c-{next}");
        churn.Reconcile(service);
        live.Add(service);
    }

    Shuffle(live);
    foreach (var service in live.Skip(target))
    {
        churn.Release(service.Namespace, service.Name);
    }

    live.RemoveRange(target, live.Count - target);
    const int Operations = 20_000;
    var times = new double[Operations];
    for (var op = 0; op < Operations; op++)
    {
        var victim = random.Next(live.Count);
        var fresh = Service($"c-{next++}");
        var start = Stopwatch.GetTimestamp();
        churn.Release(live[victim].Namespace, live[victim].Name);
        var result = churn.Reconcile(fresh);
        times[op] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
        Check(result.Ips.Count == 1, "churn allocation failed");
        live[victim] = fresh;
    }

    var runs = FreeRuns(churn);
    Row($"{level:P0}", times, $" {runs} |");
}

// 3. IPv6 /64: allocation cost and memory do not depend on the pool's size.
Console.WriteLine();
Console.WriteLine("## IPv6 /64 pool (2^64 addresses)");
Console.WriteLine();
var v6 = new Allocator(pools: Pools("v6", "2001:db8::/64"));
var v6Times = new double[PoolSize];
for (var i = 0; i < PoolSize; i++)
{
    var service = Service($"v6-{i}", ipv6: true);
    var start = Stopwatch.GetTimestamp();
    var result = v6.Reconcile(service);
    v6Times[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
    Check(result.Ips.Count == 1 && result.Ips[0].Family == IpFamily.IPv6, "IPv6 allocation failed");
}

Console.WriteLine("| allocations | mean µs | p50 µs | p99 µs |");
Console.WriteLine("|---|---|---|---|");
Console.WriteLine($"| {PoolSize:N0} | {v6Times.Average():F2} | {Percentile(v6Times, 0.50):F2} | {Percentile(v6Times, 0.99):F2} |");
var stats = v6.GetStats("v6");
Console.WriteLine();
Console.WriteLine($"Pool status after: assigned {stats.AssignedIPv6}, available {stats.AvailableIPv6}.");

// 4. Memory: an allocator holding one pool, empty and with 200 Services, for a /24 and a /64.
Console.WriteLine();
Console.WriteLine("## Memory of the allocator state (GC heap, after a full collection)");
Console.WriteLine();
Console.WriteLine("| pool | empty | with 200 Services | per Service |");
Console.WriteLine("|---|---|---|---|");
var v24 = MemoryRow("IPv4 /24 (256)", "192.0.2.0/24", ipv6: false);
var v64 = MemoryRow("IPv6 /64 (2^64)", "2001:db8::/64", ipv6: true);
var v16 = MemoryRow("IPv4 /16 (65,536)", "198.18.0.0/16", ipv6: false);
Console.WriteLine();
Console.WriteLine($"/64 empty vs /24 empty: {(double)v64 / v24:F2}x");
_ = v16;
Console.WriteLine();
Console.WriteLine($"Peak working set of this run: {Process.GetCurrentProcess().PeakWorkingSet64 / (1024 * 1024)} MiB");
return 0;

static Pool[] Pools(string name, string addresses)
{
    var config = ConfigValidator.Validate([new PoolSpec(name, [addresses])], []);
    Check(config.Problems.Count == 0, "benchmark pool must be valid");
    return [.. config.Pools];
}

static ServiceInfo Service(string name, bool ipv6 = false) => new()
{
    Namespace = "default",
    Name = name,
    Ports = [new ServicePort("TCP", 80)],
    IpFamilies = [ipv6 ? "IPv6" : "IPv4"],
};

static long MemoryRow(string label, string cidr, bool ipv6)
{
    var before = GC.GetTotalMemory(forceFullCollection: true);
    var allocator = new Allocator(pools: Pools("m", cidr));
    var empty = GC.GetTotalMemory(forceFullCollection: true) - before;
    var services = Enumerable.Range(0, 200).Select(i => Service($"m-{i}", ipv6)).ToArray();
    var beforeServices = GC.GetTotalMemory(forceFullCollection: true);
    foreach (var service in services)
    {
        allocator.Reconcile(service);
    }

    var used = GC.GetTotalMemory(forceFullCollection: true) - beforeServices;
    GC.KeepAlive(allocator);
    Console.WriteLine($"| {label} | {empty:N0} B | {empty + used:N0} B | {used / 200:N0} B |");
    return empty;
}

static void Warmup()
{
    for (var round = 0; round < 3; round++)
    {
        var a = new Allocator(pools: Pools("w", "198.51.100.0/24"));
        for (var i = 0; i < 250; i++)
        {
            a.Reconcile(Service($"w-{i}"));
        }

        for (var i = 0; i < 250; i += 2)
        {
            a.Release("default", $"w-{i}");
        }

        for (var i = 0; i < 125; i++)
        {
            a.Reconcile(Service($"x-{i}"));
        }
    }
}

static void Row(string label, double[] times, string extra = "") =>
    Console.WriteLine($"| {label} | {times.Length:N0} | {times.Average():F2} | {Percentile(times, 0.50):F2} | {Percentile(times, 0.99):F2} |{extra}");

static double Percentile(double[] values, double p)
{
    var sorted = values.Order().ToArray();
    return sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];
}

static int FreeRuns(Allocator allocator) => allocator.GetStats("v4").AvailableIPv4 > 0 ? FreeSpanCount(allocator) : 0;

static int FreeSpanCount(Allocator allocator) => allocator.DebugFreeRunCount("v4");

void Shuffle<T>(List<T> list)
{
    for (var i = list.Count - 1; i > 0; i--)
    {
        var j = random.Next(i + 1);
        (list[i], list[j]) = (list[j], list[i]);
    }
}

static void Check(bool condition, string message)
{
    if (!condition)
    {
        throw new InvalidOperationException(message);
    }
}

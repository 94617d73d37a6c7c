using System.Globalization;
using LbAllocator.NetTests;

/// <summary>
/// The simulated speakers' process (<see cref="SimHost"/>) as <see cref="LanScale"/> drives it: started in the
/// namespace of a host on the lab's LAN, handed the cluster's keys on stdin, read through its status lines; closing
/// its stdin makes every simulated speaker leave, as a SIGTERMed speaker does.
/// </summary>
internal sealed class SimProcess : IDisposable
{
    private readonly Shell.Background _process;

    private SimProcess(Shell.Background process) => _process = process;

    public int Pid => _process.Pid;

    /// <summary>The simulation's tallies at one moment, from a "status" line.</summary>
    /// <param name="MaxLagMs">The longest a tick slot began late in the second before.</param>
    /// <param name="MaxBacklog">The most messages waiting to be handed over in the second before.</param>
    public readonly record struct Status(double At, long MemoryUnicast, long MemoryBroadcastCopies, long WireSent, long WireSentBroadcast, long WireReceived, long Rejected, long SlotsLate, long Dropped, long Rejoins, double MaxLagMs, long MaxBacklog);

    /// <param name="keys">The key Secret's entries, as read through the API.</param>
    public static SimProcess Start(string ns, int members, string joinRate, IDictionary<string, byte[]> keys)
    {
        var sims = new SimProcess(new Shell.Background(
            "ip",
            ["netns", "exec", ns, "dotnet", typeof(SimHost).Assembly.Location, "lan-sim", "--members", members.ToString(CultureInfo.InvariantCulture), "--join-rate", joinRate, "--interface", "eth0"],
            input: true));
        foreach (var (name, key) in keys)
        {
            sims._process.Input.WriteLine($"{name} {Convert.ToBase64String(key)}");
        }

        sims._process.Input.WriteLine();
        sims._process.Input.Flush();
        return sims;
    }

    public IReadOnlyList<string> Lines => _process.Lines;

    /// <summary>The latest status line.</summary>
    public Status Latest() => Statuses().LastOrDefault() is { At: > 0 } latest
        ? latest
        : throw new InvalidOperationException("the simulation printed no status yet: " + string.Join(" | ", Lines.TakeLast(10)));

    /// <summary>Every status line so far.</summary>
    public IEnumerable<Status> Statuses() => Lines.Where(l => l.StartsWith("status ", StringComparison.Ordinal)).Select(line =>
    {
        var f = line.Split(' ').Skip(1).Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        return new Status(f[0], (long)f[1], (long)f[2], (long)f[3], (long)f[4], (long)f[5], (long)f[6], (long)f[7], (long)f[8], (long)f[9], f[10], (long)f[11]);
    });

    /// <summary>"members JOINED/TOTAL view MIN-MAX ...", counted by the simulation thread.</summary>
    public async Task<string> CensusAsync()
    {
        var before = Lines.Count(l => l.StartsWith("census ", StringComparison.Ordinal));
        await _process.Input.WriteLineAsync("census");
        await _process.Input.FlushAsync();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (DateTime.UtcNow < deadline)
        {
            var census = Lines.Where(l => l.StartsWith("census ", StringComparison.Ordinal)).ToList();
            if (census.Count > before)
            {
                return census[^1]["census ".Length..];
            }

            await Task.Delay(50);
        }

        return "no census answer within 15 s";
    }

    /// <summary>Every simulated speaker leaves (a Leave broadcast each), then the process ends.</summary>
    public async Task StopAsync()
    {
        _process.Input.Close();
        if (!await _process.WaitForExitAsync(TimeSpan.FromSeconds(30)))
        {
            throw new TimeoutException("the simulation did not end within 30 s of its speakers being told to leave");
        }
    }

    public void Dispose() => _process.Dispose();
}

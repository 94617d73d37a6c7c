using System.Globalization;

/// <summary>What /proc says about a process of the benchmark, and the machine's load.</summary>
internal static class Proc
{
    public static string Load() => "load average " + string.Join(" / ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) + " (1 / 5 / 15 min)";

    public static double CpuSeconds(int pid)
    {
        // /proc/PID/stat: utime and stime are fields 14 and 15, in clock ticks (100 per second).
        var fields = File.ReadAllText($"/proc/{pid}/stat").Split(')')[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
    }

    /// <summary>
    /// Each thread's name, time on a CPU (ns) and times scheduled in, from /proc/PID/task/*/schedstat: a thread woken
    /// by a frame, a timer or a socket counts once per wake-up, and on this VM a wake-up costs about 0.1 ms.
    /// </summary>
    public static Dictionary<int, (string Name, long CpuNs, long Runs)> Threads(int pid)
    {
        var threads = new Dictionary<int, (string, long, long)>();
        foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
        {
            try
            {
                var stat = File.ReadAllText(Path.Combine(task, "schedstat")).Split(' ');
                threads[int.Parse(Path.GetFileName(task), CultureInfo.InvariantCulture)] =
                    (File.ReadAllText(Path.Combine(task, "comm")).Trim(), long.Parse(stat[0], CultureInfo.InvariantCulture), long.Parse(stat[2], CultureInfo.InvariantCulture));
            }
            catch (IOException)
            {
                // The thread ended while being read.
            }
        }

        return threads;
    }

    /// <summary>
    /// What each thread of <paramref name="pid"/> did between two <see cref="Threads"/> reads: "name ms (wake-ups/s)",
    /// busiest first; the wake-ups a second in all; and the time on a CPU per wake-up (schedstat, not the clock ticks
    /// <see cref="CpuSeconds"/> counts).
    /// </summary>
    public static (string PerThread, double WakeupsPerSecond, TimeSpan CpuPerWakeup) ThreadsBetween(
        Dictionary<int, (string Name, long CpuNs, long Runs)> before, Dictionary<int, (string Name, long CpuNs, long Runs)> after, TimeSpan window)
    {
        var deltas = after.Select(t => (t.Value.Name, Cpu: t.Value.CpuNs - before.GetValueOrDefault(t.Key).CpuNs, Runs: t.Value.Runs - before.GetValueOrDefault(t.Key).Runs))
            .Where(t => t.Runs > 0).OrderByDescending(t => t.Cpu).ToList();
        var text = string.Join(", ", deltas.Select(t => $"{t.Name} {t.Cpu / 1e6:F0} ms ({t.Runs / window.TotalSeconds:F1}/s)"));
        var runs = deltas.Sum(t => t.Runs);
        return (text, runs / window.TotalSeconds, runs == 0 ? TimeSpan.Zero : TimeSpan.FromTicks(deltas.Sum(t => t.Cpu) / runs / 100));
    }

    /// <summary>A "Name:   N kB" field of /proc/PID/status, in kB.</summary>
    public static long StatusKb(int pid, string field) =>
        long.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith(field, StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);

    /// <summary>The largest resident mappings of a process from /proc/PID/smaps: "NAME RSS MiB (anonymous MiB)", biggest first.</summary>
    public static string TopMappings(int pid, int count)
    {
        var rss = new Dictionary<string, (long Rss, long Anon)>();
        var name = "";
        foreach (var line in File.ReadLines($"/proc/{pid}/smaps"))
        {
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length > 0 && fields[0].Contains('-', StringComparison.Ordinal) && !fields[0].EndsWith(':'))
            {
                name = fields.Length >= 6 ? Path.GetFileName(fields[5]) : "[anonymous]";
            }
            else if (fields.Length >= 2 && fields[0] is "Rss:" or "Anonymous:")
            {
                var (r, a) = rss.GetValueOrDefault(name);
                var value = long.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture);
                rss[name] = fields[0] == "Rss:" ? (r + value, a) : (r, a + value);
            }
        }

        return string.Join(", ", rss.OrderByDescending(p => p.Value.Rss).Take(count).Select(p => $"{p.Key} {p.Value.Rss / 1024.0:F1} MiB ({p.Value.Anon / 1024.0:F1} anonymous)"));
    }
}

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

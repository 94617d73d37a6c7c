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
}

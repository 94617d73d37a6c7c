using System.Globalization;

namespace LbAllocator.TestApiServer;

/// <summary>Reads a /metrics page (Prometheus text format) as tests need it.</summary>
public static class PrometheusText
{
    /// <summary>Each series (name and labels as printed) to its value; comments skipped.</summary>
    public static Dictionary<string, double> Parse(string text) => text.Split('\n')
        .Where(l => l.Length > 0 && l[0] != '#')
        .ToDictionary(l => l[..l.LastIndexOf(' ')], l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture), StringComparer.Ordinal);
}

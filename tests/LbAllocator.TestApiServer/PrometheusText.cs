using System.Globalization;

namespace LbAllocator.TestApiServer;

/// <summary>Reads a /metrics page (Prometheus text format) as tests need it.</summary>
public static class PrometheusText
{
    /// <summary>Each series (name and labels as printed) to its value; comments skipped.</summary>
    public static Dictionary<string, double> Parse(string text) => text.Split('\n')
        .Where(l => l.Length > 0 && l[0] != '#')
        .ToDictionary(l => l[..l.LastIndexOf(' ')], l => Value(l[(l.LastIndexOf(' ') + 1)..]), StringComparer.Ordinal);

    /// <summary>The series of one metric summed by the value of one of their labels, over the series <paramref name="where"/> keeps.</summary>
    public static Dictionary<string, double> Sum(string text, string metric, string byLabel, Func<IReadOnlyDictionary<string, string>, bool>? where = null)
    {
        var sums = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var (series, value) in Parse(text))
        {
            var brace = series.IndexOf('{', StringComparison.Ordinal);
            if ((brace < 0 ? series : series[..brace]) != metric)
            {
                continue;
            }

            var labels = brace < 0 ? new Dictionary<string, string>() : Labels(series[(brace + 1)..^1]);
            if (where is null || where(labels))
            {
                var key = labels.GetValueOrDefault(byLabel, "");
                sums[key] = sums.GetValueOrDefault(key) + value;
            }
        }

        return sums;
    }

    private static double Value(string text) => text switch
    {
        "+Inf" => double.PositiveInfinity,
        "-Inf" => double.NegativeInfinity,
        _ => double.Parse(text, CultureInfo.InvariantCulture),
    };

    /// <summary>name="value",... as printed between the braces (values with no commas or quotes inside, as kube-apiserver's).</summary>
    private static Dictionary<string, string> Labels(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries)
        .Select(pair => pair.Split('=', 2))
        .ToDictionary(pair => pair[0], pair => pair[1].Trim('"'), StringComparer.Ordinal);
}

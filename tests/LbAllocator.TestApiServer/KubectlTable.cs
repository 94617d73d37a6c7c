using Xunit;

namespace LbAllocator.TestApiServer;

/// <summary>
/// kubectl's tables as a person reads them: each column starts where its header starts (kubectl pads with
/// spaces; a cell may itself hold single spaces, as "1 IPv4, 0 IPv6" or "lballocator-controller, a" do).
/// </summary>
public static class KubectlTable
{
    /// <summary>The column headers of a table, in order.</summary>
    public static IReadOnlyList<string> Header(string text)
    {
        var header = Lines(text)[0];
        var starts = Starts(header);
        return [.. starts.Select((_, c) => Cell(header, starts, c))];
    }

    /// <summary>The rows of a table whose first line is the header, each keyed by column header.</summary>
    public static List<Dictionary<string, string>> Parse(string text)
    {
        var lines = Lines(text);
        var header = lines[0];
        var starts = Starts(header);
        var names = Header(text);
        return [.. lines.Skip(1)
            .Where(l => !l.TrimStart().StartsWith("---", StringComparison.Ordinal))
            .Select(l => names.Select((name, c) => (name, Cell(l, starts, c))).ToDictionary(p => p.name, p => p.Item2, StringComparer.Ordinal))];
    }

    private static List<string> Lines(string text)
    {
        var lines = text.Split('\n').Where(l => l.Trim().Length > 0).ToList();
        Assert.NotEmpty(lines);
        return lines;
    }

    private static List<int> Starts(string header)
    {
        var starts = new List<int>();
        for (var i = 0; i < header.Length; i++)
        {
            // A header starts after two or more spaces (headers such as AUTO ASSIGN hold one).
            if (header[i] != ' ' && (i == 0 || (i >= 2 && header[i - 1] == ' ' && header[i - 2] == ' ')))
            {
                starts.Add(i);
            }
        }

        return starts;
    }

    private static string Cell(string line, List<int> starts, int column)
    {
        var start = starts[column];
        var end = column + 1 < starts.Count ? starts[column + 1] : line.Length;
        return start >= line.Length ? "" : line[start..Math.Min(end, line.Length)].Trim();
    }

    /// <summary>The Events table of `kubectl describe` (indented under "Events:"), or none when it says &lt;none&gt;.</summary>
    public static List<Dictionary<string, string>> DescribedEvents(string describe)
    {
        var lines = describe.Split('\n');
        var at = Array.FindIndex(lines, l => l.StartsWith("Events:", StringComparison.Ordinal));
        Assert.True(at >= 0, $"no Events section in:\n{describe}");
        if (lines[at].Contains("<none>", StringComparison.Ordinal))
        {
            return [];
        }

        var table = lines.Skip(at + 1).TakeWhile(l => l.StartsWith("  ", StringComparison.Ordinal)).Select(l => l[2..]);
        return Parse(string.Join('\n', table));
    }
}

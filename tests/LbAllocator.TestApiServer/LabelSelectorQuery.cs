using System.Text.Json.Nodes;

namespace LbAllocator.TestApiServer;

/// <summary>The labelSelector query syntax: a=b, a==b, a!=b, a in (x,y), a notin (x), a, !a; comma means and.</summary>
public sealed class LabelSelectorQuery
{
    private readonly List<Func<IReadOnlyDictionary<string, string>, bool>> _terms = [];

    public LabelSelectorQuery(string? text)
    {
        foreach (var term in Split(text ?? ""))
        {
            var t = term.Trim();
            if (t.Length == 0)
            {
                continue;
            }

            var inAt = t.IndexOf(" in ", StringComparison.Ordinal);
            var notInAt = t.IndexOf(" notin ", StringComparison.Ordinal);
            if (notInAt > 0)
            {
                var (key, values) = (t[..notInAt].Trim(), Values(t[(notInAt + 7)..]));
                _terms.Add(l => !l.TryGetValue(key, out var v) || !values.Contains(v));
            }
            else if (inAt > 0)
            {
                var (key, values) = (t[..inAt].Trim(), Values(t[(inAt + 4)..]));
                _terms.Add(l => l.TryGetValue(key, out var v) && values.Contains(v));
            }
            else if (t.Contains("!=", StringComparison.Ordinal))
            {
                var parts = t.Split("!=");
                _terms.Add(l => !l.TryGetValue(parts[0].Trim(), out var v) || v != parts[1].Trim());
            }
            else if (t.Contains('=', StringComparison.Ordinal))
            {
                var parts = t.Split('=', StringSplitOptions.RemoveEmptyEntries);
                _terms.Add(l => l.TryGetValue(parts[0].Trim(), out var v) && v == parts[^1].Trim());
            }
            else if (t.StartsWith('!'))
            {
                _terms.Add(l => !l.ContainsKey(t[1..].Trim()));
            }
            else
            {
                _terms.Add(l => l.ContainsKey(t));
            }
        }
    }

    public bool Matches(JsonNode obj)
    {
        var labels = obj["metadata"]?["labels"]?.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value?.GetValue<string>() ?? "") ?? [];
        return _terms.All(term => term(labels));
    }

    private static HashSet<string> Values(string text) =>
        text.Trim().TrimStart('(').TrimEnd(')').Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToHashSet();

    // Commas inside "in (a,b)" do not separate terms.
    private static IEnumerable<string> Split(string text)
    {
        var depth = 0;
        var start = 0;
        for (var i = 0; i < text.Length; i++)
        {
            depth += text[i] == '(' ? 1 : text[i] == ')' ? -1 : 0;
            if (text[i] == ',' && depth == 0)
            {
                yield return text[start..i];
                start = i + 1;
            }
        }

        yield return text[start..];
    }
}

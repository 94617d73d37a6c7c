using System.Text.RegularExpressions;

namespace LbAllocator.Core;

/// <summary>A label selector as written in a manifest (metav1.LabelSelector), not yet validated.</summary>
public sealed record LabelSelectorSpec(
    IReadOnlyDictionary<string, string>? MatchLabels = null,
    IReadOnlyList<LabelRequirementSpec>? MatchExpressions = null);

public sealed record LabelRequirementSpec(string? Key, string? Operator, IReadOnlyList<string>? Values = null);

/// <summary>
/// A validated label selector with Kubernetes semantics: every matchLabels pair and every
/// matchExpressions requirement must hold; an empty selector matches everything.
/// </summary>
public sealed partial class LabelSelector
{
    private readonly IReadOnlyList<(string Key, string Operator, IReadOnlySet<string> Values)> _requirements;

    private LabelSelector(IReadOnlyList<(string Key, string Operator, IReadOnlySet<string> Values)> requirements)
    {
        _requirements = requirements;
        Canonical = string.Join(",", requirements.Select(r => r.Operator switch
        {
            "Exists" => r.Key,
            "DoesNotExist" => "!" + r.Key,
            _ => $"{r.Key} {(r.Operator == "In" ? "in" : "notin")} ({string.Join(",", r.Values.Order(StringComparer.Ordinal))})",
        }).Order(StringComparer.Ordinal));
    }

    public static LabelSelector Everything { get; } = new([]);

    /// <summary>A normalised text form; two selectors with the same form select the same objects.</summary>
    public string Canonical { get; }

    public override string ToString() => Canonical.Length == 0 ? "<everything>" : Canonical;

    public bool Matches(IReadOnlyDictionary<string, string>? labels)
    {
        foreach (var (key, op, values) in _requirements)
        {
            string? value = null;
            var has = labels is not null && labels.TryGetValue(key, out value);
            var ok = op switch
            {
                "In" => has && values.Contains(value!),
                "NotIn" => !has || !values.Contains(value!),
                "Exists" => has,
                _ => !has,
            };
            if (!ok)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Validates a selector; problems are reported with their field path under <paramref name="path"/>.</summary>
    public static LabelSelector? Create(LabelSelectorSpec spec, string path, List<string> problems)
    {
        var before = problems.Count;
        var requirements = new List<(string, string, IReadOnlySet<string>)>();
        foreach (var (key, value) in spec.MatchLabels ?? new Dictionary<string, string>())
        {
            CheckKey(key, $"{path}.matchLabels", problems);
            CheckValue(value, $"{path}.matchLabels[{key}]", problems);
            // matchLabels {k: v} is the requirement "k In (v)".
            requirements.Add((key, "In", new HashSet<string>([value ?? ""], StringComparer.Ordinal)));
        }

        var expressions = spec.MatchExpressions ?? [];
        for (var i = 0; i < expressions.Count; i++)
        {
            var e = expressions[i];
            var at = $"{path}.matchExpressions[{i}]";
            CheckKey(e.Key, $"{at}.key", problems);
            var values = e.Values ?? [];
            switch (e.Operator)
            {
                case "In" or "NotIn":
                    if (values.Count == 0)
                    {
                        problems.Add($"{at}.values: must not be empty for operator {e.Operator}");
                    }

                    break;
                case "Exists" or "DoesNotExist":
                    if (values.Count != 0)
                    {
                        problems.Add($"{at}.values: must be empty for operator {e.Operator}");
                    }

                    break;
                default:
                    problems.Add($"{at}.operator: \"{e.Operator}\" is not one of In, NotIn, Exists, DoesNotExist");
                    break;
            }

            for (var j = 0; j < values.Count; j++)
            {
                CheckValue(values[j], $"{at}.values[{j}]", problems);
            }

            requirements.Add((e.Key ?? "", e.Operator ?? "", new HashSet<string>(values, StringComparer.Ordinal)));
        }

        return problems.Count == before ? new LabelSelector(requirements) : null;
    }

    private static void CheckKey(string? key, string path, List<string> problems)
    {
        if (string.IsNullOrEmpty(key))
        {
            problems.Add($"{path}: label key must not be empty");
            return;
        }

        var slash = key.LastIndexOf('/');
        var name = slash < 0 ? key : key[(slash + 1)..];
        var prefix = slash < 0 ? null : key[..slash];
        if (prefix is not null && !Names.IsDnsSubdomain(prefix))
        {
            problems.Add($"{path}: label key \"{key}\" has an invalid prefix: it must be a DNS subdomain");
        }

        if (name.Length > 63 || !LabelName().IsMatch(name))
        {
            problems.Add($"{path}: label key \"{key}\" is invalid: the name part must be 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit");
        }
    }

    private static void CheckValue(string? value, string path, List<string> problems)
    {
        if (!string.IsNullOrEmpty(value) && (value.Length > 63 || !LabelName().IsMatch(value)))
        {
            problems.Add($"{path}: label value \"{value}\" is invalid: it must be empty or 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit");
        }
    }

    [GeneratedRegex("^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")]
    private static partial Regex LabelName();
}

/// <summary>Kubernetes name syntax checks.</summary>
public static partial class Names
{
    /// <summary>RFC 1123 subdomain: what metadata.name of most objects must be.</summary>
    public static bool IsDnsSubdomain(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= 253 && DnsSubdomain().IsMatch(name);

    /// <summary>RFC 1123 label: what a namespace name must be.</summary>
    public static bool IsDnsLabel(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= 63 && DnsLabel().IsMatch(name);

    [GeneratedRegex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")]
    private static partial Regex DnsSubdomain();

    [GeneratedRegex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    private static partial Regex DnsLabel();
}

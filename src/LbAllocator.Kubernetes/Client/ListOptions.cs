using System.Text;

namespace LbAllocator.Kubernetes.Client;

/// <summary>
/// The query of a list, as kube-apiserver reads it (v1.28, checked on the real server):
/// <list type="bullet">
/// <item>ResourceVersion "0": any recent state, from the watch cache, which ignores Limit;</item>
/// <item>ResourceVersion V with ResourceVersionMatch "NotOlderThan" and no Limit: the watch cache's state once it has
/// caught up with V (a Limit with a version other than "0" sends the list to etcd); a V the server has not reached
/// is refused after 3 s with 504 (cause ResourceVersionTooLarge); a match without a version is refused (422);</item>
/// <item>no ResourceVersion: the latest, read from etcd, in pages of Limit objects with a Continue token.</item>
/// </list>
/// </summary>
public sealed record ListOptions
{
    public const string NotOlderThan = "NotOlderThan";

    public string? LabelSelector { get; init; }
    public string? FieldSelector { get; init; }
    public string? ResourceVersion { get; init; }
    public string? ResourceVersionMatch { get; init; }
    public int? Limit { get; init; }
    public string? Continue { get; init; }

    /// <summary>"?name=value&amp;..." for the options set, or "" for none.</summary>
    public string Query()
    {
        var query = new StringBuilder();
        void Add(string name, string? value)
        {
            if (value is not null)
            {
                query.Append(query.Length == 0 ? '?' : '&').Append(name).Append('=').Append(Uri.EscapeDataString(value));
            }
        }

        Add("labelSelector", LabelSelector);
        Add("fieldSelector", FieldSelector);
        Add("resourceVersion", ResourceVersion);
        Add("resourceVersionMatch", ResourceVersionMatch);
        Add("limit", Limit?.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Add("continue", Continue);
        return query.ToString();
    }
}

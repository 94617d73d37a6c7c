using k8s;
using k8s.Models;

namespace LbAllocator.TestApiServer;

/// <summary>What RBAC checks for one request: API group, resource (with subresource), verb and namespace.</summary>
public sealed record ApiCall(string Group, string Resource, string Verb, string? Namespace)
{
    public override string ToString() => $"{Verb} {(Group.Length == 0 ? "" : Group + "/")}{Resource}{(Namespace is null ? " (cluster-wide)" : $" in {Namespace}")}";

    /// <summary>
    /// The RBAC attributes of a request, as kube-apiserver derives them: GET on a collection is list (watch with
    /// ?watch=true), on a name is get; POST create, PUT update, PATCH patch, DELETE delete or deletecollection.
    /// </summary>
    public static ApiCall Of(RecordedRequest request)
    {
        var parts = request.Path.Trim('/').Split('/');
        // /api/v1/... or /apis/GROUP/VERSION/...
        var (group, rest) = parts[0] == "api" ? ("", parts[2..]) : (parts[1], parts[3..]);
        string? ns = null;
        if (rest.Length >= 2 && rest[0] == "namespaces" && rest.Length > 2)
        {
            ns = rest[1];
            rest = rest[2..];
        }

        var resource = rest[0];
        var name = rest.Length > 1 ? rest[1] : null;
        if (rest.Length > 2)
        {
            resource += "/" + rest[2];
        }

        var watch = request.Query.Contains("watch=true", StringComparison.Ordinal);
        var verb = request.Method switch
        {
            "GET" when watch => "watch",
            "GET" => name is null ? "list" : "get",
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => name is null ? "deletecollection" : "delete",
            _ => throw new ArgumentException($"unexpected method {request.Method}"),
        };
        return new ApiCall(group, resource, verb, ns);
    }
}

/// <summary>The RBAC rules granted to one ServiceAccount by the install manifests, and the calls they allow.</summary>
public sealed class Grants
{
    private readonly List<V1PolicyRule> _clusterWide = [];
    private readonly List<(string Namespace, V1PolicyRule Rule)> _namespaced = [];

    private Grants()
    {
    }

    /// <summary>Collects the rules bound to ServiceAccount <paramref name="ns"/>/<paramref name="account"/>.</summary>
    public static Grants For(IReadOnlyList<object> manifests, string ns, string account)
    {
        var grants = new Grants();
        bool Binds(IList<Rbacv1Subject>? subjects) => subjects?.Any(s => s.Kind == "ServiceAccount" && s.Name == account && s.NamespaceProperty == ns) == true;
        foreach (var binding in manifests.OfType<V1ClusterRoleBinding>().Where(b => Binds(b.Subjects)))
        {
            var role = manifests.OfType<V1ClusterRole>().Single(r => r.Metadata.Name == binding.RoleRef.Name);
            grants._clusterWide.AddRange(role.Rules);
        }

        foreach (var binding in manifests.OfType<V1RoleBinding>().Where(b => Binds(b.Subjects)))
        {
            var rules = binding.RoleRef.Kind == "ClusterRole"
                ? manifests.OfType<V1ClusterRole>().Single(r => r.Metadata.Name == binding.RoleRef.Name).Rules
                : manifests.OfType<V1Role>().Single(r => r.Metadata.Name == binding.RoleRef.Name && r.Metadata.NamespaceProperty == binding.Metadata.NamespaceProperty).Rules;
            grants._namespaced.AddRange(rules.Select(r => (binding.Metadata.NamespaceProperty, r)));
        }

        return grants;
    }

    public IEnumerable<V1PolicyRule> AllRules => _clusterWide.Concat(_namespaced.Select(n => n.Rule));

    public bool Allows(ApiCall call) =>
        _clusterWide.Any(r => Matches(r, call)) || (call.Namespace is { } ns && _namespaced.Any(n => n.Namespace == ns && Matches(n.Rule, call)));

    /// <summary>Every (group, resource, verb) a rule grants, to find grants no call used.</summary>
    public IEnumerable<(string Group, string Resource, string Verb)> Granted() =>
        from rule in AllRules
        from g in rule.ApiGroups
        from r in rule.Resources
        from v in rule.Verbs
        select (g, r, v);

    private static bool Matches(V1PolicyRule rule, ApiCall call) =>
        rule.ApiGroups.Any(g => g == "*" || g == call.Group)
        && rule.Resources.Any(r => r == "*" || r == call.Resource)
        && rule.Verbs.Any(v => v == "*" || v == call.Verb);
}

using System.Text.Json;

namespace LbAllocator.TestApiServer;

/// <summary>
/// One request as kube-apiserver's audit log records it at Metadata level: who, the RBAC verb, the resource
/// (with subresource) and namespace, and the response code. Non-resource requests (/version, discovery) have
/// an empty resource.
/// </summary>
public sealed record AuditEvent(string AuditId, string User, string Verb, string Group, string Resource, string? Namespace, string? Name, int Code, string Uri)
{
    /// <summary>The request as RBAC judged it.</summary>
    public ApiCall Call => new(Group, Resource, Verb, Namespace);

    public static AuditEvent? TryParse(string line)
    {
        try
        {
            using var json = JsonDocument.Parse(line);
            var root = json.RootElement;
            string? Text(JsonElement element, string name) => element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
            var objectRef = root.TryGetProperty("objectRef", out var o) ? o : default;
            var hasRef = objectRef.ValueKind == JsonValueKind.Object;
            var resource = hasRef ? Text(objectRef, "resource") ?? "" : "";
            if (hasRef && Text(objectRef, "subresource") is { } subresource)
            {
                resource += "/" + subresource;
            }

            var code = root.TryGetProperty("responseStatus", out var status) && status.TryGetProperty("code", out var c) ? c.GetInt32() : 0;
            return new AuditEvent(
                Text(root, "auditID") ?? "",
                Text(root.GetProperty("user"), "username") ?? "",
                Text(root, "verb") ?? "",
                hasRef ? Text(objectRef, "apiGroup") ?? "" : "",
                resource,
                hasRef ? Text(objectRef, "namespace") : null,
                hasRef ? Text(objectRef, "name") : null,
                code,
                Text(root, "requestURI") ?? "");
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
